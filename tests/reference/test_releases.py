"""A reference-labelled release from gen-audio output and from the real fixtures, on both stores."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from corpus.audio import decode
from reference.gen_audio import generate
from corpus.release import Release, verify_release
from corpus.store import S3Store
from reference.releases import build_truth_release, read_truth


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    generate(out, minutes=1.0, seed=11)
    return out


def test_release_from_gen_audio(generated, store):
    info = build_truth_release(generated, store, "gold", max_shard_bytes=200_000)
    truth = read_truth(generated)
    assert info["counts"]["kept"] == len(truth) == info["counts"]["segments"]
    assert set(info["hours"]["kept_by_domain_split"]) == {"audiobook", "phone", "street", "radio"}
    assert verify_release(store, "gold") == []
    release = Release.open(store, "gold")
    assert release.info["counts"]["shards"] > 4, "the size cap split shards"
    by_text = {s.meta["text"]: s for s in release.samples()}
    assert set(by_text) == {t["text"] for t in truth}
    for utt in truth:
        sample = by_text[utt["text"]]
        assert sample.meta["domain"] == utt["domain"] and sample.meta["voice"] == utt["voice"]
        assert sample.meta["label_source"] == "reference"
        assert len(sample.audio) / 16000 == pytest.approx(utt["end"] - utt["start"] + 0.3, abs=0.16)
    manifest = release.manifest().to_pandas()
    assert manifest.groupby("recording_id").split.nunique().max() == 1, "a recording never spans two splits"


def test_release_from_real_fixtures(fixtures_dir, tmp_path, store):
    truth = tmp_path / "gold.jsonl"
    with open(fixtures_dir / "MANIFEST.tsv", newline="") as fh, open(truth, "w") as out:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["role"] == "reference"]
        for row in rows:
            duration = decode(fixtures_dir / row["file"]).duration
            out.write(json.dumps({"file": row["file"], "start": 0.0, "end": duration, "text": row["transcript"],
                                  "domain": "phone" if "8k" in row["file"] or "digit" in row["file"] else "read"}) + "\n")
    info = build_truth_release(fixtures_dir, store, "fixtures", truth=truth)
    assert info["counts"]["kept"] == len(rows) > 60
    assert verify_release(store, "fixtures") == []
    jfk = next(s for s in Release.open(store, "fixtures").samples() if s.meta["text"].startswith("And so my fellow"))
    assert jfk.sample_rate == 16000 and jfk.audio.ndim == 1 and len(jfk.audio) == 11 * 16000


def test_cli_release_truth_then_verify(generated, store):
    extra = ["--endpoint-url", store.endpoint_url] if isinstance(store, S3Store) else []
    cli = [sys.executable, "-m", "corpus.cli"]
    made = subprocess.run([*cli, "release-truth", str(generated), "--store", store.uri, "--release", "cli", *extra],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["counts"]["kept"] == len(read_truth(generated))
    again = subprocess.run([*cli, "release-truth", str(generated), "--store", store.uri, "--release", "cli", *extra],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
    ok = subprocess.run([*cli, "verify", "--store", store.uri, "--release", "cli", *extra], capture_output=True, text=True)
    assert ok.returncode == 0 and "verified" in ok.stdout


@pytest.mark.parametrize("command", [[], ["gen-audio"], ["verify"], ["release-truth"]])
def test_every_command_explains_itself(command):
    shown = subprocess.run([sys.executable, "-m", "corpus.cli", *command, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "usage: stt-corpus" in shown.stdout
    assert len(shown.stdout.split()) > 30, "help says what the command does, not only its flags"
