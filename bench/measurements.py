"""The measurements file: figures the benchmarks measured, for commands that plan from them.

``docs/measurements.json`` holds ``{"measurements": {name: {value, unit, date, machine, command,
notes}}}``. Benchmarks call :func:`record` (the date and a description of this machine are
stamped on); ``stt-corpus plan`` reads the file and names, for every figure it prints, the
measurement it came from. Names use dots: ``stages.vad.audio_s_per_s_per_core``,
``label.cpu.tiny.en.int8.audio_s_per_s``, ``label.cuda.tiny.en.float16.batched.audio_s_per_s``,
``train.cuda.amp.samples_per_s``.

The file is merged, not rewritten: a benchmark replaces only the names it measures, under a lock,
through a temporary file and a rename.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "docs" / "measurements.json"


def machine() -> str:
    """Cores, CPU model and GPU (if any) of this machine, in words."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    words = f"{os.cpu_count()} cores, {model}"
    gpu = _gpu_name()
    return f"{words}, {gpu}" if gpu else f"{words}, no GPU"


def _gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    if not names:
        return None
    return f"{len(names)}x {names[0]}" if len(names) > 1 else names[0]


def load(path: str | Path = DEFAULT_PATH) -> dict[str, dict]:
    """The measurements by name ({} when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("measurements"), dict):
        raise ValueError(f"{path}: expected {{\"measurements\": {{...}}}}")
    return data["measurements"]


def record(name: str, value: float, unit: str, command: str, notes: str = "", *,
           path: str | Path = DEFAULT_PATH, machine_words: str | None = None) -> dict:
    """Merge one measurement into the file (today's date, this machine) and return it."""
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"measurement name must be non-empty without spaces, got {name!r}")
    if not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"measurement {name}: value must be a number, got {value!r}")
    entry = {"value": round(float(value), 6), "unit": unit, "date": dt.date.today().isoformat(),
             "machine": machine_words or machine(), "command": command, "notes": notes}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.parent, os.O_RDONLY)  # the folder is the lock: no lock file left behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = load(path)
        current[name] = entry
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"measurements": dict(sorted(current.items()))}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        os.close(lock)
    return entry
