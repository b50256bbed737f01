"""The corpus build end to end: real Ray (local cluster), the real tiny.en model, real audio,
a local store and the moto S3 endpoint; bad input; kill and resume; incremental builds."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
import yaml

from bad_audio import EXPECTED, make_bad_audio_folder
from conftest import make_bucket
from reference.gen_audio import generate
from corpus.release import Release, verify_release
from corpus.store import open_store
from corpus.text import word_error_rate
from reference.releases import read_truth
from pipelines.build import run_build
from pipelines.calibrate import FIELD_DEFAULTS, calibrate, format_report, save, thresholds_fragment
from pipelines.filter import decide
from pipelines.config import load_config

pytestmark = pytest.mark.slow
DOMAINS = ("audiobook", "phone", "street", "radio")
# stricter than the default -1.0: tiny.en on espeak voices is confident enough that the default keeps all
THRESHOLDS = {"min_avg_logprob": -0.5}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    from pipelines.ray_local import init_local, loopback_only

    with loopback_only():  # a new cluster (never one someone else started here), on 127.0.0.1 only
        init_local(ray, num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """4 minutes of generated speech, one folder per domain, and its truth."""
    out = tmp_path_factory.mktemp("gen")
    generate(out / "all", minutes=4.0, seed=21)
    for domain in DOMAINS:
        (out / domain).mkdir()
        for f in (out / "all").glob(f"{domain}-*"):
            shutil.copy(f, out / domain / f.name)
    return out


def _config_dict(raw: Path, store: str, release: str, endpoint=None, uris=None) -> dict:
    uris = uris or {d: str(raw / d) for d in DOMAINS}
    return {"release": release, "store": store, "endpoint_url": endpoint, "filter": THRESHOLDS,
            "sources": [{"uri": uris[d], "domain": d, "licence": "CC0-1.0"} for d in DOMAINS],
            "resources": {"num_cpus": 2}, "model": {"name": "tiny.en"}}


@pytest.fixture(scope="module")
def local_build(ray_cluster, raw, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    summary = run_build(load_config(None, **_config_dict(raw, str(store), "r1")), progress=False)
    return store, summary


def _manifest(store, release, endpoint=None) -> pd.DataFrame:
    return Release.open(open_store(str(store), endpoint_url=endpoint), release).manifest().to_pandas()


def _segment_wer(manifest: pd.DataFrame, truth: list[dict]) -> pd.Series:
    def one(row):
        name = row.source_uri.rsplit("/", 1)[-1]
        ref = " ".join(t["text"] for t in truth if t["file"] == name and row.start <= (t["start"] + t["end"]) / 2 < row.end)
        return word_error_rate(ref, row.text)
    return manifest.apply(one, axis=1)


def test_build_on_generated_audio_writes_a_verified_release(local_build, raw):
    store, summary = local_build
    assert verify_release(open_store(store), "r1") == []
    assert set(summary["domains"]) == set(DOMAINS)
    assert all(d["segments"] > 0 for d in summary["domains"].values())
    assert summary["recordings_labelled_now"] == 4 and summary["label_throughput_audio_s_per_s"] > 1
    manifest = _manifest(store, "r1")
    assert manifest.groupby("recording_id").split.nunique().max() == 1
    release = Release.open(open_store(store), "r1")
    sample = next(release.samples())
    assert {"avg_logprob", "no_speech_prob", "compression_ratio", "temperature", "words", "model_id",
            "decode_params", "language", "licence"} <= set(sample.meta)
    assert sample.meta["licence"] == "CC0-1.0"


def test_kept_segments_have_lower_wer_than_rejected(local_build, raw):
    store, _ = local_build
    manifest = _manifest(store, "r1")
    manifest["wer"] = _segment_wer(manifest, read_truth(raw / "all"))
    kept, rejected = manifest[manifest.decision == "keep"], manifest[manifest.decision == "reject"]
    assert len(kept) and len(rejected), "the test thresholds must split the segments"
    assert set(r for rs in rejected.reasons for r in rs) <= {"low_avg_logprob", "high_no_speech_prob",
                                                           "high_compression_ratio", "chars_per_second_low",
                                                           "chars_per_second_high", "too_short", "repetition",
                                                           # trimming's cut-out pieces and the word-level rules
                                                           "low_word_prob", "low_word_prob_run", "unlabelled_gap",
                                                           "empty_text", "low_unique_word_ratio", "long_word",
                                                           "phantom_phrase",
                                                           # the shipped combined confidence
                                                           "low_confidence"}
    kept_wer = np.average(kept.wer, weights=kept.end - kept.start)
    rejected_wer = np.average(rejected.wer, weights=rejected.end - rejected.start)
    print(f"\nWER of kept segments {kept_wer:.3f} ({len(kept)}), of rejected {rejected_wer:.3f} ({len(rejected)})")
    assert kept_wer < rejected_wer


@pytest.mark.s3
def test_build_from_s3_to_s3_matches_the_local_build(local_build, raw, s3_endpoint):
    bucket = make_bucket(s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for domain in DOMAINS:
        for f in (raw / domain).iterdir():
            client.upload_file(str(f), bucket, f"raw/{domain}/{f.name}")
    uris = {d: f"s3://{bucket}/raw/{d}" for d in DOMAINS}
    config = load_config(None, **_config_dict(raw, f"s3://{bucket}/corpus", "r1", s3_endpoint, uris))
    run_build(config, progress=False)
    assert verify_release(open_store(f"s3://{bucket}/corpus", endpoint_url=s3_endpoint), "r1") == []
    s3_manifest = _manifest(f"s3://{bucket}/corpus", "r1", s3_endpoint)
    local = _manifest(local_build[0], "r1")
    cols = ["segment_id", "decision", "text", "split"]
    assert s3_manifest[cols].equals(local[cols])


def test_build_on_the_real_fixtures(ray_cluster, fixtures_dir, tmp_path):
    # spoken digits: one speaker per file-name group, so a speaker never spans two splits
    config = load_config(None, release="fixtures", store=str(tmp_path / "store"),
                         sources=[{"uri": str(fixtures_dir), "domain": "mixed",
                                   "group_pattern": r"recordings/\d+_(?P<group>[a-z]+)_\d+\.wav$"}],
                         resources={"num_cpus": 2}, model={"name": "tiny.en"})
    summary = run_build(config, progress=False)
    store = open_store(tmp_path / "store")
    assert verify_release(store, "fixtures") == []
    manifest = _manifest(tmp_path / "store", "fixtures")
    jfk = manifest[manifest.source_uri.str.endswith("jfk.flac")]
    assert "ask not what your country can do for you" in " ".join(jfk.text).lower()
    assert summary["quarantine_by_reason"].get("too_short", 0) > 10, "most spoken digits are under 0.5 s"
    assert summary["ignored_files"] >= 3  # MANIFEST.tsv, README.md, LICENSE files
    digits = manifest[manifest.source_uri.str.contains("free-spoken-digit")]
    assert digits.group.str.contains("#").all() and digits.groupby("group").split.nunique().max() == 1
    assert manifest.groupby("recording_id").split.nunique().max() == 1

    # language check with an English-only model: speech in other languages comes out as English
    spoken = {"DeepSpeech/ru.wav", "leopard/test_es.wav", "leopard/test_de.wav", "leopard/test_fr.wav",
              "pisets/test_sound_ru.wav", "silero-vad/ru.wav"}
    foreign = manifest[manifest.source_uri.map(lambda u: u.split("/fixtures/audio/")[-1] in spoken)]
    through_defaults = sum(decide(r, FIELD_DEFAULTS)[0] == "keep" for r in foreign.to_dict("records"))
    print(f"\nnon-English segments: {len(foreign)}; kept by the field's default thresholds: {through_defaults}; "
          f"kept with the word-probability check: {(foreign.decision == 'keep').sum()}")
    assert len(foreign) >= 6 and (foreign.decision == "keep").sum() == 0
    assert set(foreign.reasons.explode()) & {"low_word_prob", "low_avg_logprob"}

    # calibration against the fixtures' transcripts: the wrong-reference ones are flagged, never truth
    result = calibrate(Release.open(store, "fixtures"), _fixture_gold(fixtures_dir))
    flagged = {f for d in result["disagreements"] for f in d["files"]}
    roles = _fixture_roles(fixtures_dir)
    assert {f for f, r in roles.items() if r == "wrong-reference"} <= flagged
    assert not {f for f, r in roles.items() if r == "reference"} & flagged


def test_bad_input_is_quarantined_and_good_input_labelled(ray_cluster, fixtures_dir, tmp_path):
    folder = make_bad_audio_folder(tmp_path / "raw", fixtures_dir)
    config = load_config(None, release="mixed", store=str(tmp_path / "store"),
                         sources=[{"uri": str(folder), "domain": "mixed"}], resources={"num_cpus": 2},
                         model={"name": "tiny.en"})
    summary = run_build(config, progress=False)
    store = open_store(tmp_path / "store")
    assert verify_release(store, "mixed") == []
    release = Release.open(store, "mixed")
    quarantine = pd.read_parquet(release.store.url("quarantine.parquet").removeprefix("file://"))
    reasons = {u.rsplit("/", 1)[-1]: r for u, r in zip(quarantine.uri, quarantine.reason)}
    assert reasons == {name: reason for name, reason in EXPECTED.items() if reason}
    manifest = release.manifest().to_pandas()
    labelled = {u.rsplit("/", 1)[-1] for u in manifest.source_uri}
    assert labelled == {name for name, reason in EXPECTED.items() if reason is None}
    assert summary["files"] == len(EXPECTED) and summary["ignored_files"] == 1


def test_killed_build_resumes_to_the_same_release(local_build, raw, tmp_path):
    store = tmp_path / "store"
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump(_config_dict(raw, str(store), "r1")))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "corpus.cli", "build", "--config", str(config), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    labels = store / "work" / "labels"
    try:
        deadline = time.time() + 600  # a hang guard only: a loaded machine is slow, not wrong
        while time.time() < deadline and proc.poll() is None:
            if labels.exists() and len(list(labels.rglob("*.parquet"))) >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the build finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray processes the driver started, if any outlived it
        except ProcessLookupError:
            pass
    # Counted once the driver is dead (it alone writes label parts): a part written between the
    # check above and the kill is counted too, so the rerun's figure below holds whatever the timing.
    done_before = len(list(labels.rglob("*.parquet")))
    assert 1 <= done_before < 4 and not (store / "releases" / "r1" / "RELEASE.json").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"labelled now: {4 - done_before} recordings" in rerun.stdout
    assert verify_release(open_store(store), "r1") == []
    resumed, uninterrupted = _manifest(store, "r1"), _manifest(local_build[0], "r1")
    assert list(resumed.segment_id) == list(uninterrupted.segment_id)
    assert set(resumed[resumed.decision == "keep"].segment_id) == set(
        uninterrupted[uninterrupted.decision == "keep"].segment_id)


def test_second_build_processes_only_new_files(local_build, raw, tmp_path):
    store, _ = local_build
    extra = tmp_path / "extra"
    generate(extra, minutes=0.3, seed=99, domains=("phone",))
    shutil.copy(next(extra.glob("phone-*.wav")), raw / "phone" / "phone-new.wav")
    # one recording's clips part is gone (as after a change of segmentation): that file is read again
    clips = {p.stem: p for p in (Path(store) / "work" / "clips").glob("*/*.parquet")}
    assert len(clips) == 4
    gone = sorted({s.key[:20] for s in Release.open(open_store(store), "r1").samples()})[0]
    clips[gone].unlink()
    try:
        summary = run_build(load_config(None, **_config_dict(raw, str(store), "r2")), progress=False)
    finally:
        (raw / "phone" / "phone-new.wav").unlink()
    assert summary["ingested_now"] == 2 and summary["recordings_labelled_now"] == 1
    assert summary["recordings"] == 5 and clips[gone].exists()
    assert verify_release(open_store(store), "r2") == []

    def kept_audio(name):
        return {s.key: s.audio.tobytes() for s in Release.open(open_store(store), name).samples()
                if s.key.startswith(gone)}
    assert kept_audio("r2") == kept_audio("r1") != {}, "the re-read recording gives the same audio"


def _fixture_roles(fixtures_dir) -> dict[str, str]:
    import csv

    with open(fixtures_dir / "MANIFEST.tsv", newline="") as fh:
        return {r["file"]: r["role"] for r in csv.DictReader(fh, delimiter="\t")}


def _fixture_gold(fixtures_dir) -> list[dict]:
    """Every fixture with a transcript, whole file as one utterance (wrong-reference ones included)."""
    import csv

    from corpus.audio import decode

    with open(fixtures_dir / "MANIFEST.tsv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["role"] in ("reference", "wrong-reference")]
    return [{"file": r["file"], "start": 0.0, "end": decode(fixtures_dir / r["file"]).duration,
             "text": r["transcript"]} for r in rows]


def test_calibration_on_generated_gold_and_refilter_with_its_thresholds(local_build, raw, tmp_path):
    store, _ = local_build
    release = Release.open(open_store(store), "r1")
    result = calibrate(release, read_truth(raw / "all"), target_share_bad=0.02)
    assert set(result["domains"]) == set(DOMAINS) and not result["disagreements"]
    for domain, r in result["domains"].items():
        hours = [p["hours_kept"] for p in r["curve"]]
        assert hours == sorted(hours, reverse=True), "a higher confidence threshold never keeps more"
        assert r["chosen"] is None or r["chosen"]["share_bad"] <= 0.02
        assert {"min_avg_logprob", "max_no_speech_prob", "max_compression_ratio"} <= set(r["signals"])
        assert r["default_thresholds"]["segments"] == r["all"]["segments"] > 0
    print("\n" + format_report(result))
    save(release, result)
    assert json.loads(release.store.get_bytes("calibration.json"))["target"]["share_bad_max"] == 0.02
    fragment = thresholds_fragment(result)
    path = tmp_path / "thresholds.yaml"
    path.write_text(yaml.safe_dump(fragment))
    from pipelines.cli import read_thresholds
    from pipelines.refilter import refilter_release

    flat, per_domain = read_thresholds(str(path))
    summary = refilter_release(open_store(store), "r1", "r1-calibrated", thresholds=flat, domain_thresholds=per_domain)
    assert verify_release(open_store(store), "r1-calibrated") == []
    assert summary["rejects_by_reason"].get("low_confidence", 0) > 0
    new = _manifest(store, "r1-calibrated")
    new["wer"] = _segment_wer(new, read_truth(raw / "all"))
    kept = new[new.decision == "keep"]
    assert len(kept) == 0 or (kept.wer > 0.3).mean() <= (new.wer > 0.3).mean()


def test_missing_source_fails_before_any_work(tmp_path):
    config = load_config(None, release="x", store=str(tmp_path / "s"),
                         sources=[{"uri": str(tmp_path / "nowhere"), "domain": "phone"}])
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        run_build(config, progress=False)
    assert not (tmp_path / "s").exists()
