"""`stt-corpus plan` and the measurements file it reads (bench/measurements.py writes it)."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from measurements import load, record  # noqa: E402

from pipelines.plan import PlanError, make_plan  # noqa: E402

FIGURES = {  # name: (value, unit)
    "stages.fetch.audio_s_per_s_per_core": (10000.0, "audio-s per CPU-s"),
    "stages.to_pcm.audio_s_per_s_per_core": (1000.0, "audio-s per CPU-s"),
    "stages.ingest.audio_s_per_s_per_core": (2000.0, "audio-s per CPU-s"),
    "stages.flac.audio_s_per_s_per_core": (5000.0, "audio-s per CPU-s"),
    "stages.build_cpu.audio_s_per_s_per_core": (200.0, "audio-s per CPU-s"),
    "build.release.shard_bytes_per_kept_audio_s": (20000.0, "bytes per audio-s"),
    "build.release.kept_fraction": (0.5, "kept audio-s per input audio-s"),
    "build.release.mean_kept_segment_s": (10.0, "s"),
}


@pytest.fixture
def measurements(tmp_path) -> Path:
    path = tmp_path / "measurements.json"
    for name, (value, unit) in FIGURES.items():
        record(name, value, unit, "python bench/x.py", path=path, machine_words="test machine")
    return path


def test_record_merges_and_stamps_date_and_machine(tmp_path):
    path = tmp_path / "m.json"
    record("a.b", 1.5, "x", "cmd a", path=path)
    record("c.d", 2, "y", "cmd c", notes="n", path=path, machine_words="box")
    record("a.b", 3, "x", "cmd a2", path=path)
    got = load(path)
    assert set(got) == {"a.b", "c.d"} and got["a.b"]["value"] == 3 and got["a.b"]["command"] == "cmd a2"
    assert got["a.b"]["date"] == dt.date.today().isoformat() and "cores" in got["a.b"]["machine"]
    assert got["c.d"] == {"value": 2.0, "unit": "y", "date": dt.date.today().isoformat(), "machine": "box",
                          "command": "cmd c", "notes": "n"}
    with pytest.raises(ValueError):
        record("bad name", 1, "x", "c", path=path)
    assert list(tmp_path.iterdir()) == [path]  # no temporary or lock file left


def test_plan_figures_follow_from_the_measurements(measurements):
    plan = make_plan(hours=20000, gpus=8, model="tiny.en", gpu_rtfx=400, measurements=load(measurements),
                     domains=4, splits=3, recording_minutes=10, train_gpus=None, shard_bytes=256 * 1024**2)
    label_h = 20000 * 3600 / (8 * 400) / 3600
    ingest_h = 20000 * 3600 * (1 / 10000 + 1 / 1000 + 1 / 2000) / 16 / 3600
    cut_h = 20000 * 3600 * (1 / 10000 + 1 / 1000 + 0.5 / 5000) / 16 / 3600
    assert plan["wall time: segment + label phase (GPU-bound)"][0] == pytest.approx(label_h)
    assert plan["wall time: ingest phase"][0] == pytest.approx(ingest_h)
    assert plan["wall time: whole build"][0] == pytest.approx(ingest_h + label_h + cut_h)
    assert plan["GPU-hours (GPU nodes only while labelling: autoscaled)"][0] == pytest.approx(label_h * 8)
    assert plan["CPU cores to keep the GPUs fed"][0] == 16  # 8 x 400 / 200
    store = 20000 * 3600 * 0.5 * 20000
    assert plan["store size (FLAC shards)"][0] == pytest.approx(store)
    assert plan["shards"][0] == -(-store // (256 * 1024**2))
    assert plan["build: PUT requests per s (all on one prefix, worst case)"][0] < 3500
    assert "given on the command line" in plan["wall time: segment + label phase (GPU-bound)"][2]
    assert "stages.to_pcm.audio_s_per_s_per_core = 1000" in plan["wall time: ingest phase"][2]
    assert "stages.build_cpu.audio_s_per_s_per_core = 200" in plan["CPU cores to keep the GPUs fed"][2]


def test_plan_reads_the_gpu_figure_or_demands_it(measurements):
    figures = load(measurements)
    with pytest.raises(PlanError, match="--gpu-rtfx"):
        make_plan(hours=100, gpus=2, model="tiny.en", gpu_rtfx=None, measurements=figures, domains=4, splits=3,
                  recording_minutes=10, train_gpus=None, shard_bytes=2**28)
    record("label.cuda.tiny.en.float16.batched.audio_s_per_s", 1000, "audio-s per wall-s", "python bench/label.py",
           path=measurements, machine_words="1x GPU box")
    plan = make_plan(hours=100, gpus=2, model="tiny.en", gpu_rtfx=None, measurements=load(measurements), domains=4,
                     splits=3, recording_minutes=10, train_gpus=None, shard_bytes=2**28)
    assert "label.cuda.tiny.en.float16.batched.audio_s_per_s = 1000" in plan["wall time: segment + label phase (GPU-bound)"][2]
    assert "1x GPU box" in plan["wall time: segment + label phase (GPU-bound)"][2]
    del figures["build.release.kept_fraction"]
    with pytest.raises(PlanError, match="bench/label.py"):
        make_plan(hours=100, gpus=2, model="tiny.en", gpu_rtfx=300, measurements=figures, domains=4, splits=3,
                  recording_minutes=10, train_gpus=None, shard_bytes=2**28)


def test_plan_command_names_a_source_for_every_figure(measurements):
    out = subprocess.run([sys.executable, "-m", "corpus.cli", "plan", "--hours", "20000", "--gpus", "8",
                          "--gpu-rtfx", "300", "--measurements", str(measurements)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    figures = [i for i, line in enumerate(lines) if line and not line.startswith((" ", "capacity", "measurements",
                                                                                   "S3 limits"))]
    assert len(figures) >= 12
    for i in figures:
        assert lines[i + 1].startswith("    from: "), lines[i]
    assert "test machine" in out.stdout and str(dt.date.today()) in out.stdout
    missing = subprocess.run([sys.executable, "-m", "corpus.cli", "plan", "--hours", "20000", "--gpus", "8",
                              "--measurements", str(measurements)], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--gpu-rtfx" in missing.stderr


def test_the_committed_measurements_file_is_complete_for_a_plan():
    figures = load(ROOT / "docs" / "measurements.json")
    assert set(FIGURES) <= set(figures)
    for name, m in figures.items():
        assert set(m) == {"value", "unit", "date", "machine", "command", "notes"}, name
        dt.date.fromisoformat(m["date"])
        assert m["command"].strip() and m["machine"].strip(), name  # how to measure it again, and where
    json.loads((ROOT / "docs" / "measurements.json").read_text())
