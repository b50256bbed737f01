"""Two real ranks (``train --nproc 2``: separate processes, torch.distributed over gloo on 127.0.0.1).

Shards that do not divide evenly among ranks (one shard for two ranks, three uneven ones) must
still give every rank the same number of steps and every sample at most once per pass; a rank
killed with SIGKILL must bring the run down rather than leave its peer waiting, and the run must
resume to the same samples and weights as one never stopped. Every rank runs under a subprocess
timeout and each test under pytest-timeout, so nothing here can hang.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch
import yaml

from corpus.release import Release
from corpus.store import open_store
from reference.releases import build_gen_release
from training.rundir import RunDir, run_store
from training_helpers import RELEASE, TINY_MODEL, gen_audio_dir, s3_store_with_release

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 180  # seconds for one whole 2-rank run
SMALL = {"d_model": 32, "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "subsample_channels": 8, "conv_kernel": 7,
         "dropout": 0.1}
ONE_DOMAIN = {"name": "audiobook-only", "phases": [{"name": "all", "weights": {"audiobook": 1}}]}


def _config_file(tmp_path, **fields) -> Path:
    base = {"model": SMALL, "batch_seconds": 8.0, "shuffle_buffer": 4, "num_workers": 0, "eval_max_samples": 2,
            "log_every": 5, "eval_every": 1000, "checkpoint_every": 1000, "warmup_steps": 5, "threads": 1,
            "eval_splits": ["validation"]}
    base.update(fields)
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def _command(store_uri: str, release: str, run: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "training", "train", "--store", store_uri, "--release", release, "--run", run,
            *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _train(command: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _rows(store, run) -> list[dict]:
    return RunDir(run_store(store, run)).samples()


def _assert_equal_steps_and_once_per_pass(rows: list[dict], steps: int, domain_keys: dict[str, list[str]]) -> dict:
    """Both ranks train every step; within a (domain, epoch) no key twice; full epochs hold every key."""
    by_rank = defaultdict(set)
    for row in rows:
        by_rank[row["rank"]].add(row["step"])
    assert sorted(by_rank) == [0, 1]
    assert by_rank[0] == by_rank[1] == set(range(1, steps + 1))
    passes = defaultdict(list)
    for row in rows:
        passes[(row["domain"], row["epoch"])].append((row["key"], row["rank"]))
    shares = {}
    for (domain, epoch), seen in passes.items():
        counts = Counter(key for key, _ in seen)
        assert max(counts.values()) == 1, (domain, epoch, counts.most_common(3))  # no sample twice in a pass
        assert set(counts) <= set(domain_keys[domain])
        if epoch == 0:
            shares[domain] = Counter(rank for _, rank in seen)
    return shares


def _keys(store, release: str) -> dict[str, list[str]]:
    out = defaultdict(list)
    for r in Release.open(store, release).manifest().to_pylist():
        if r["split"] == "train":
            out[r["domain"]].append(r["segment_id"])
    return out


@pytest.fixture(scope="module")
def uneven_store(tmp_path_factory):
    """Two releases from the shared gen-audio: ``one`` (a single training shard per domain) and
    ``uneven`` (audiobook in three shards of unequal sample counts)."""
    root = tmp_path_factory.getbasetemp() / "ddp-store"
    store = open_store(root)
    audio = gen_audio_dir(tmp_path_factory)
    if not store.exists("releases/one/RELEASE.json"):
        build_gen_release(audio, store, "one", max_shard_bytes=1 << 30, max_shard_samples=10**6)
    n = sum(r["samples"] for r in Release.open(store, "one").index().to_pylist()
            if r["split"] == "train" and r["domain"] == "audiobook")
    cap = math.ceil(n / 2.5)
    if not store.exists("releases/uneven/RELEASE.json"):
        build_gen_release(audio, store, "uneven", max_shard_bytes=1 << 30, max_shard_samples=cap)
    return store


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("release", ["one", "uneven"])
def test_two_ranks_take_equal_steps_and_each_sample_once_per_pass(uneven_store, tmp_path, release):
    index = [r for r in Release.open(uneven_store, release).index().to_pylist()
             if r["split"] == "train" and r["domain"] == "audiobook"]
    sizes = sorted(r["samples"] for r in index)
    if release == "one":
        assert len(sizes) == 1
    else:
        assert len(sizes) == 3 and sizes[0] < sizes[-1]
    keys = _keys(uneven_store, release)
    n = len(keys["audiobook"])
    seconds = sum(r["seconds"] for r in index)
    steps = math.ceil(seconds / 2 / 8.0 * 1.7)  # about 1.5 passes of each rank's half, 8 s batches
    config = _config_file(tmp_path, curriculum=ONE_DOMAIN)
    _train(_command(str(uneven_store.root), release, f"ddp-{release}", "--nproc", "2", "--max-steps", str(steps),
                    "--config", str(config)))
    rows = _rows(uneven_store, f"ddp-{release}")
    epochs = {r["epoch"] for r in rows}
    assert {0, 1} <= epochs  # the run went through whole passes
    shares = _assert_equal_steps_and_once_per_pass(rows, steps, keys)
    # the first pass is complete: every sample once, each rank half of them (within one)
    assert sum(shares["audiobook"].values()) == n
    assert abs(shares["audiobook"][0] - shares["audiobook"][1]) <= 1
    summary = yaml.safe_load(RunDir(run_store(uneven_store, f"ddp-{release}")).store.get_bytes("summary.json"))
    assert summary["steps"] == steps and summary["compute"]["ranks"] == 2


# --------------------------------------------------------------------------- SIGKILL a rank, resume

KILL = {"curriculum": {"name": "two", "phases": [
    {"name": "a", "steps": 6, "weights": {"audiobook": 2, "radio": 1}, "filters": {"max_duration": 5.0}},
    {"name": "b", "weights": "hours"}]}, "checkpoint_every": 4, "model": TINY_MODEL}
KILL_STEPS = 12


def _per_step(store, run):
    steps = defaultdict(list)
    for row in _rows(store, run):
        steps[(row["step"], row["rank"])].append(row["key"])
    return dict(steps)


def _weights(store, run):
    return RunDir(run_store(store, run)).load_checkpoint()["model"]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of the launcher's child with RANK=rank in its environment (Linux /proc)."""
    for child in _children(launcher.pid):
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if f"RANK={rank}".encode() in env:
            return child
    return None


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_rank_killed_brings_the_run_down_and_it_resumes_exactly_from_s3(s3_endpoint, tmp_path_factory, tmp_path):
    store, uri = s3_store_with_release(s3_endpoint, tmp_path_factory)
    config = _config_file(tmp_path, **KILL)
    common = ("--endpoint-url", s3_endpoint, "--config", str(config))
    _train(_command(uri, RELEASE, "ddp-reference", "--nproc", "2", "--max-steps", str(KILL_STEPS), *common))
    reference = _per_step(store, "ddp-reference")
    assert sorted(reference) == [(s, r) for s in range(1, KILL_STEPS + 1) for r in (0, 1)]

    run = RunDir(run_store(store, "ddp-killed"))
    launcher = subprocess.Popen(_command(uri, RELEASE, "ddp-killed", "--nproc", "2", "--max-steps", str(KILL_STEPS),
                                         *common), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not run.store.exists("checkpoints/latest.json"):
            assert launcher.poll() is None, launcher.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        victim, peer = _rank_pid(launcher, 1), _rank_pid(launcher, 0)
        assert victim is not None and peer is not None
        os.kill(victim, signal.SIGKILL)  # as if its machine died: no clean-up, no goodbye to rank 0
        code = launcher.wait(timeout=60)  # rank 0 must not be left waiting in a collective
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    stderr = launcher.stderr.read()
    assert code == 128 + signal.SIGKILL and "rank 1 was killed by SIGKILL" in stderr, stderr[-3000:]
    killed_at = run.get_json("checkpoints/latest.json")["step"]
    assert killed_at < KILL_STEPS and not run.store.exists("report.md")
    assert not Path(f"/proc/{peer}").exists()  # rank 0 was stopped (and reaped), not left waiting

    # another world size: refused, saying why, before anything is written
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--store", uri, "--run", "ddp-killed",
                           "--endpoint-url", s3_endpoint, "--resume"], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 2
    assert "checkpointed at step" in proc.stderr and "2 rank(s)" in proc.stderr and "--nproc 2" in proc.stderr

    _train([sys.executable, "-m", "training", "train", "--store", uri, "--run", "ddp-killed",
            "--endpoint-url", s3_endpoint, "--resume", "--nproc", "2"])
    assert run.store.exists("report.md")
    assert _per_step(store, "ddp-killed") == reference
    _assert_equal_steps_and_once_per_pass(_rows(store, "ddp-killed"), KILL_STEPS, _keys(store, RELEASE))
    weights, ref_weights = _weights(store, "ddp-killed"), _weights(store, "ddp-reference")
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
