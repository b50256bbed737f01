"""The training loop end to end: real shards (moto S3 and local), real torch, real checkpoints."""
from __future__ import annotations

import argparse
import io
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image

from corpus.release import ReleaseError
from corpus.shards import ShardError, iter_shard_raw
from corpus.store import open_store
from presentation.training_report import write_report
from training import train
from training.cli import add_cli, main as cli_main
from training.config import config_from_dict
from training.rundir import RunDir, RunError, run_store
from training_helpers import (RELEASE, base_config, copy_release, local_store_with_release,
                              s3_store_with_release)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    return local_store_with_release(tmp_path_factory)


def _parser():
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    return parser


def _run(store, name) -> RunDir:
    return RunDir(run_store(store, name))


# --------------------------------------------------------------------------- start-up checks


def test_cli_registers_train_with_a_description():
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train_parser = sub.choices["train"]
    text = train_parser.format_help()
    for words in ("curriculum", "phases", "weights", "filters", "--resume", "metrics.parquet", "report.md",
                  "sha256", "--max-hours"):
        assert words in text
    args = parser.parse_args(["train", "--store", "s", "--release", "r", "--run", "x", "--max-steps", "5",
                              "--device", "cpu"])
    assert args.func.__name__ == "_cmd_train" and args.max_steps == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--store", "s", "--release", "r", "--run", "x", "--max-steps", "5",
                           "--max-hours", "1"])


def test_config_rejects_unknown_keys_and_needs_a_budget(tmp_path):
    with pytest.raises(ValueError, match=r"learning_rate: unknown key"):
        config_from_dict({"store": str(tmp_path), "release": "r", "run": "x", "max_steps": 3, "learning_rate": 1})
    with pytest.raises(ValueError, match=r"model\.depth: unknown key"):
        config_from_dict({"store": str(tmp_path), "release": "r", "run": "x", "max_steps": 3, "model": {"depth": 3}})
    with pytest.raises(ValueError, match="give max_steps or max_hours"):
        config_from_dict({"store": str(tmp_path), "release": "r", "run": "x"})
    with pytest.raises(ValueError, match="neither default nor uniform nor an existing file"):
        config_from_dict({"store": str(tmp_path), "release": "r", "run": "x", "max_steps": 3,
                          "curriculum": str(tmp_path / "missing.yaml")})


def test_a_missing_release_fails_at_start(tmp_path, capsys):
    store_dir = tmp_path / "empty-store"
    with pytest.raises(ReleaseError, match="no release 'nope' at .*RELEASE.json is missing"):
        train(base_config(str(store_dir), "x", release="nope", max_steps=3))
    code = cli_main(["train", "--store", str(store_dir), "--release", "nope", "--run", "x", "--max-steps", "3"])
    assert code == 2 and "no release 'nope'" in capsys.readouterr().err
    assert not (store_dir / "runs").exists()


def test_a_curriculum_naming_an_empty_domain_fails_at_start(local_store, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("phases:\n  - name: a\n    weights: {audiobook: 1, podcast: 2}\n")
    code = cli_main(["train", "--store", str(local_store.root), "--release", RELEASE, "--run", "bad-domain",
                     "--max-steps", "3", "--curriculum", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "['podcast'] have no training data in release 'gen8'" in err
    bad.write_text("phases:\n  - name: a\n    weights: {audiobook: -1}\n")
    code = cli_main(["train", "--store", str(local_store.root), "--release", RELEASE, "--run", "bad-domain",
                     "--max-steps", "3", "--curriculum", str(bad)])
    assert code == 2 and "weights must be finite and >= 0" in capsys.readouterr().err
    assert not _run(local_store, "bad-domain").started()


# --------------------------------------------------------------------------- a real run from S3

PHASE_A = {"audiobook": 5, "phone": 3, "street": 2}  # radio left out: weight 0
CURRICULUM = {"name": "two-phase", "phases": [
    {"name": "a", "steps": 150, "weights": PHASE_A, "filters": {"max_duration": 6.0}},
    {"name": "b", "weights": "equal"},
]}


@pytest.mark.s3
@pytest.mark.slow
def test_training_streamed_from_s3(s3_endpoint, tmp_path_factory):
    store, uri = s3_store_with_release(s3_endpoint, tmp_path_factory)
    steps = 300
    result = train(base_config(uri, "s3-run", endpoint_url=s3_endpoint, max_steps=steps, curriculum=CURRICULUM,
                               num_workers=1, eval_every=100, checkpoint_every=100))
    run = _run(store, "s3-run")
    assert result.steps == steps and result.run_url == run.store.uri

    metrics = pq.read_table(io.BytesIO(run.store.get_bytes("metrics.parquet"))).to_pylist()
    train_rows = sorted((r for r in metrics if r["kind"] == "train" and r["domain"] == "all"), key=lambda r: r["step"])
    assert [r["step"] for r in train_rows] == list(range(5, steps + 1, 5))
    early = np.mean([r["loss"] for r in train_rows[:3]])
    middle = np.mean([r["loss"] for r in train_rows[27:33]])
    late = np.mean([r["loss"] for r in train_rows[-6:]])
    assert late < middle < early and late < 0.8 * early, (early, middle, late)
    evals = [r for r in metrics if r["kind"] == "eval"]
    assert {(r["step"], r["domain"], r["split"]) for r in evals} == {
        (s, d, sp) for s in (100, 200, 300) for d in ("audiobook", "phone", "radio", "street")
        for sp in ("validation", "test")}
    assert all(0 <= r["cer"] <= 1.5 and r["samples"] > 0 and math.isfinite(r["loss"]) for r in evals)
    assert all(r["cer"] is not None and r["wer"] is not None for r in evals)
    mean_cer = {s: np.mean([r["cer"] for r in evals if r["step"] == s]) for s in (100, 300)}
    assert mean_cer[300] < mean_cer[100] - 0.05, mean_cer  # it learns more than blanks

    # the realised mix follows the schedule within sampling error
    samples = run.samples()
    assert len(samples) == sum(v["samples"] for by in result.realised.values() for v in by.values())
    by_phase = defaultdict(Counter)
    for row in samples:
        by_phase[row["phase"]][row["domain"]] += 1
        assert row["phase"] == ("a" if row["step"] <= 150 else "b")
    for phase, weights in (("a", PHASE_A), ("b", {d: 1 for d in ("audiobook", "phone", "radio", "street")})):
        counts, total_w = by_phase[phase], sum(weights.values())
        n = sum(counts.values())
        assert n > 300
        assert counts["radio"] == (0 if phase == "a" else counts["radio"])
        for domain, w in weights.items():
            p = w / total_w
            assert abs(counts[domain] - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1, (phase, dict(counts))
    assert all(row["seconds"] <= 6.0 for row in samples if row["step"] <= 149)  # phase a's filter

    # the report and its plots, written after the run from its files (as `stt-corpus train` does)
    assert not run.store.exists("report.md"), "the loop writes metrics and summary.json; its caller the report"
    write_report(run.store)
    report = run.store.get_bytes("report.md").decode()
    for words in ("Error rates", "Compute", "device-hours", "audio hours processed", "throughput",
                  "Curriculum as realised", "| a |", "| b |", "loss.png", "cer.png", "curriculum.png"):
        assert words in report
    for name in ("loss.png", "cer.png", "curriculum.png"):
        data = run.store.get_bytes(name)
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.format == "PNG" and image.size[0] >= 500 and image.size[1] >= 300
        pixels = np.asarray(image.convert("L"))
        assert len(np.unique(pixels)) > 20 and pixels.std() > 5  # drawn on, not blank
    summary = yaml.safe_load(run.store.get_bytes("summary.json"))
    assert summary["compute"]["audio_hours"] == pytest.approx(result.audio_hours)
    assert summary["compute"]["device_seconds"] > 0 and summary["data"]["corrupt_shards"] == {}


# --------------------------------------------------------------------------- resume


RESUME = {"max_steps": 24, "num_workers": 2, "checkpoint_every": 5, "shuffle_buffer": 6, "batch_seconds": 8.0,
          "curriculum": {"name": "resume", "phases": [
              {"name": "a", "steps": 9, "weights": {"audiobook": 2, "radio": 1}, "filters": {"max_duration": 5.0}},
              {"name": "b", "weights": "hours"}]}}


def _weights(store, run):
    return _run(store, run).load_checkpoint()["model"]


def _per_step(store, run):
    steps = defaultdict(list)
    for row in _run(store, run).samples():
        steps[row["step"]].append(row["key"])
    return dict(steps)


@pytest.fixture(scope="module")
def reference_run(local_store):
    """An uninterrupted 24-step run (2 DataLoader workers) to compare resumed runs with."""
    result = train(base_config(str(local_store.root), "reference", **RESUME))
    assert result.steps == 24
    return _per_step(local_store, "reference"), _weights(local_store, "reference")


def _assert_same_as_reference(store, run, reference_run):
    ref_steps, ref_weights = reference_run
    steps = _per_step(store, run)
    assert sorted(steps) == list(range(1, 25))
    assert steps == ref_steps
    weights = _weights(store, run)
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)


def test_stop_and_resume_trains_on_the_same_samples_to_the_same_weights(local_store, reference_run):
    uri = str(local_store.root)
    first = train(base_config(uri, "stopped", **{**RESUME, "max_steps": 7}))  # stops after an odd step
    assert first.steps == 7
    with pytest.raises(RunError, match="already exists"):
        train(base_config(uri, "stopped", **RESUME))
    with pytest.raises(RunError, match=r"other settings for \['seed'\]"):
        train(base_config(uri, "stopped", **RESUME, seed=1, resume=True))
    resumed = train(base_config(uri, "stopped", **RESUME, resume=True))
    assert resumed.steps == 24
    _assert_same_as_reference(local_store, "stopped", reference_run)
    # training-loss rows: the stopped run also logged its last step (7), so its next interval is 8-10;
    # from the interval after that on, the rows are the same
    def train_losses(run):
        return {(r["step"], r["domain"]): r["loss"] for r in _run(local_store, run).get_rows("metrics.parquet")
                if r["kind"] == "train" and r["step"] > 10}

    assert train_losses("stopped") == train_losses("reference") != {}


@pytest.mark.s3
@pytest.mark.slow
def test_sigkill_then_resume_from_s3_matches_an_uninterrupted_run(s3_endpoint, tmp_path_factory, tmp_path,
                                                                 reference_run):
    store, uri = s3_store_with_release(s3_endpoint, tmp_path_factory)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in base_config(uri, "killed", **RESUME).items()
                                      if k not in ("store", "run", "release", "max_steps", "num_workers")}))
    command = [sys.executable, "-m", "training.cli", "train", "--store", uri, "--release", RELEASE, "--run", "killed",
               "--endpoint-url", s3_endpoint, "--max-steps", "24", "--num-workers", "2", "--config", str(config)]
    run = _run(store, "killed")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not run.store.exists("checkpoints/latest.json"):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = run.get_json("checkpoints/latest.json")["step"]
    assert killed_at < 24 and not run.store.exists("report.md")

    code = cli_main(["train", "--store", uri, "--run", "killed", "--endpoint-url", s3_endpoint, "--resume"])
    assert code == 0
    assert run.store.exists("report.md")
    _assert_same_as_reference(store, "killed", reference_run)


# --------------------------------------------------------------------------- corrupt shards in a run


@pytest.fixture
def corrupt_store(local_store, tmp_path):
    store = open_store(tmp_path / "corrupt")
    release = copy_release(local_store, store)
    row = next(r for r in release.shards(split="train", domain="street"))
    data = bytearray(release.store.get_bytes(row["url"]))
    data[-2000] ^= 0x55  # inside the last member or the tar padding: still a valid tar
    release.store.put_bytes(row["url"], bytes(data))
    return store, row["url"]


def test_a_corrupt_shard_is_skipped_and_reported(corrupt_store):
    store, url = corrupt_store
    result = train(base_config(str(store.root), "skips", max_steps=40, curriculum="uniform", shuffle_buffer=2,
                               batch_seconds=12.0))
    assert result.corrupt_shards.get(url, 0) >= 1
    bad = {key for key, _ in iter_shard_raw(store.at(f"releases/{RELEASE}"), url)}
    trained = {row["key"] for row in _run(store, "skips").samples()}
    assert trained and not trained & bad
    write_report(_run(store, "skips").store)
    report = _run(store, "skips").store.get_bytes("report.md").decode()
    assert "failed its sha256" in report and url in report


def test_a_corrupt_shard_stops_the_run_with_the_flag(corrupt_store):
    store, url = corrupt_store
    with pytest.raises(ShardError, match="fails its checksum"):
        train(base_config(str(store.root), "fatal", max_steps=40, curriculum="uniform", shuffle_buffer=2,
                          batch_seconds=12.0, fail_on_corrupt_shard=True))


# --------------------------------------------------------------------------- budget in hours, default curriculum


def test_max_hours_stops_after_that_much_audio_with_the_default_curriculum(local_store):
    result = train(base_config(str(local_store.root), "hours", max_hours=0.02, curriculum="default",
                               batch_seconds=12.0))
    assert 0.02 <= result.audio_hours < 0.02 + 12.0 / 3600
    run = _run(local_store, "hours")
    summary = yaml.safe_load(run.store.get_bytes("summary.json"))
    assert summary["curriculum"]["unit"] == "hours"
    assert [p["name"] for p in summary["curriculum"]["phases"]] == ["clean-short", "widen", "all"]
    first = [row for row in run.samples() if row["phase"] == "clean-short"]
    assert first and {row["domain"] for row in first} == {"audiobook"}  # chosen by name: reference labels
    assert "clean-short" in run.store.get_bytes("curriculum.yaml").decode()


# --------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_with_amp(local_store):
    result = train(base_config(str(local_store.root), "cuda", max_steps=30, device="cuda", amp=True,
                               curriculum="uniform"))
    assert result.device.startswith("cuda") and result.steps == 30
    assert all(math.isfinite(r["loss"]) for r in result.final_eval)


def test_resume_before_the_first_checkpoint_starts_over(local_store):
    uri = str(local_store.root)
    with pytest.raises(RunError, match="nothing to resume: no run 'early'"):
        train(base_config(uri, "early", max_steps=6, resume=True))
    train(base_config(uri, "early", max_steps=6))
    run = _run(local_store, "early")
    first = _per_step(local_store, "early")
    for key in run.store.list():  # as if killed before its first checkpoint: only the start-up files remain
        if key not in ("config.json", "curriculum.yaml", "vocab.json"):
            run.store.delete(key)
    result = train(base_config(uri, "early", max_steps=6, resume=True))
    assert result.steps == 6 and _per_step(local_store, "early") == first
