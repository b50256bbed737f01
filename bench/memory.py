"""Peak memory of a build: the driver and the largest Ray worker, sampled from the process tree.

Each build runs as a child process (``run_build`` on a local Ray cluster, tiny.en int8 on the
CPU); this script samples the RSS of that process (the driver) and of every process below it
every 50 ms from ``/proc`` (Linux). Ray's workers
(``ray::…`` processes, including the label actor) and the bounded reader processes forked for
each file (ingest) are classed as workers; Ray's own services (raylet, GCS, log monitor, agents)
are reported apart. Reported per build: the driver's peak, the
largest single worker's peak and what that process was, and the largest ingest reader (the
bounded child that decodes, fingerprints and runs VAD on one file; the fork server it is forked
from counts too).

Two comparisons (goals from issue 11):

1. builds of 10 and of 60 minutes of gen-audio (1-minute files): 60-minute peak ≤ 1.2× the
   10-minute peak, for the driver and for the largest worker;
2. one 3-hour recording (the 10 minutes of speech spread over 3 hours with silence between
   the files, so labelling stays short) against one 10-minute recording (the same speech
   back to back): the 3-hour recording's largest-worker peak ≤ 1.3× the 10-minute one's.

    python bench/memory.py                # all of it (~60 minutes of gen-audio to make first)
    python bench/memory.py --minutes 10 30 --hours 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.audio import decode  # noqa: E402
from reference.gen_audio import generate  # noqa: E402

SERVICES = ("raylet", "gcs_server", "log_monitor", "monitor.py", "dashboard", "runtime_env", "agent",
            "ray_client_server")

BUILD = """
import json, sys
from pipelines.build import run_build
from pipelines.config import load_config
raw, store, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = load_config(None, release="mem", store=store,
                     sources=[{"uri": raw, "domain": "mixed", "licence": "CC0-1.0"}],
                     model={"name": "tiny.en", "device": "cpu", "cpu_threads": threads},
                     resources={"num_cpus": 2})
summary = run_build(config, progress=False)
print(json.dumps({"stage_seconds": summary["stage_seconds"], "wall_seconds": summary["wall_seconds"],
                  "recordings": summary["recordings"]}))
"""


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, RSS bytes, command line) of every process, from /proc (Linux), read
    directly: a sampling loop this tight costs less than psutil's per-process objects."""
    out = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/statm", "rb") as f:
                rss = int(f.read().split()[1]) * page
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # ended while read
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        out[int(entry)] = (ppid, rss, cmd or stat[stat.index("(") + 1:stat.rindex(")")])
    return out


def _descendants(root: int, table: dict[int, tuple[int, int, str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def run_sampled(raw: Path, store: Path, threads: int) -> dict:
    """One build in a child process; peak RSS of the driver, the largest worker and the services,
    sampled every 50 ms (a Ray start that misses its 30 s window is retried by the build itself:
    ``pipelines.ray_local.init_local``)."""
    import shutil

    shutil.rmtree(store, ignore_errors=True)  # a fresh store: nothing reused from an earlier run
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(raw), str(store), str(threads)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    peaks = {"driver": 0, "worker": 0, "service": 0, "reader": 0}
    worker_name = [""]
    done = threading.Event()

    def sample():
        while not done.is_set():
            table = _proc_table()
            if proc.pid not in table:
                break
            peaks["driver"] = max(peaks["driver"], table[proc.pid][1])
            for pid in _descendants(proc.pid, table):
                _, rss, cmd = table[pid]
                kind = "service" if any(s in cmd for s in SERVICES) else "worker"
                if "multiprocessing.forkserver" in cmd:  # the fork server and each file's bounded reader
                    peaks["reader"] = max(peaks["reader"], rss)
                if rss > peaks[kind]:
                    peaks[kind] = rss
                    if kind == "worker":
                        worker_name[0] = cmd.split()[0][:40] if cmd.startswith("ray::") else cmd[:40]
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "driver_mb": peaks["driver"] / 2**20, "worker_mb": peaks["worker"] / 2**20,
            "services_mb": peaks["service"] / 2**20, "reader_mb": peaks["reader"] / 2**20,
            "worker_process": worker_name[0]}


def gen_minutes(out: Path, minutes: float, seed: int) -> Path:
    if not out.exists():
        print(f"generating {minutes:g} minutes of gen-audio into {out} ...", flush=True)
        generate(out, minutes=minutes, seed=seed)
    return out


def long_recording(gen: Path, out: Path, hours: float | None) -> Path:
    """The gen-audio files of ``gen`` as one recording (16 kHz mono FLAC): back to back, or spread
    evenly over ``hours`` with silence between them (written in pieces: this script's memory too
    stays small)."""
    import soundfile as sf

    files = sorted(p for p in gen.iterdir() if p.suffix in (".wav", ".flac"))
    speech = [decode(f).pcm for f in files]
    total = sum(map(len, speech))
    gap = 0 if hours is None else max(0, int(hours * 3600 * 16000 - total) // len(speech))
    out.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(out, "w", samplerate=16000, channels=1, format="FLAC", subtype="PCM_16") as f:
        for pcm in speech:
            f.write(pcm)
            silence = np.zeros(16000 * 60, np.float32)
            left = gap
            while left > 0:
                f.write(silence[:min(left, len(silence))])
                left -= min(left, len(silence))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs=2, default=[10, 60], help="the two build sizes (10 60)")
    parser.add_argument("--hours", type=float, default=3.0, help="the long recording's length (3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="folder for audio and stores (default: a new temp folder)")
    parser.add_argument("--skip-builds", action="store_true", help="only the long-recording comparisons")
    parser.add_argument("--dense-minutes", type=float, default=30,
                        help="one recording of this many minutes of back-to-back speech against the one "
                             "short recording: the label actor's peak must not follow the speech (30; 0: skip)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-memory-"))
    small, large = args.minutes
    results = {}
    gen_small = gen_minutes(work / f"gen-{small:g}", small, seed=11)
    if not args.skip_builds:
        gen_large = gen_minutes(work / f"gen-{large:g}", large, seed=12)
        for name, raw in ((f"{small:g} min", gen_small), (f"{large:g} min", gen_large)):
            print(f"build of {name} of gen-audio ...", flush=True)
            results[name] = run_sampled(raw, work / f"store-{name.replace(' ', '')}", args.threads)
            print("  ", json.dumps(results[name]), flush=True)
    one = long_recording(gen_small, work / "one-short" / "short.flac", None)
    spread = long_recording(gen_small, work / "one-long" / "long.flac", args.hours)
    runs = [(f"one {small:g}-min recording", one), (f"one {args.hours:g}-h recording", spread)]
    if args.dense_minutes:
        gen_dense = gen_minutes(work / f"gen-{args.dense_minutes:g}", args.dense_minutes, seed=13)
        runs.append((f"one {args.dense_minutes:g}-min dense recording",
                     long_recording(gen_dense, work / "one-dense" / "dense.flac", None)))
    for name, path in runs:
        print(f"build of {name} ({path.stat().st_size / 2**20:.0f} MB FLAC) ...", flush=True)
        results[name] = run_sampled(path.parent, work / f"store-{path.stem}", args.threads)
        print("  ", json.dumps(results[name]), flush=True)

    print()
    print(f"{'build':<32}{'driver MB':>11}{'worker MB':>11}{'reader MB':>11}{'services MB':>13}  largest worker")
    for name, r in results.items():
        print(f"{name:<32}{r['driver_mb']:>11.0f}{r['worker_mb']:>11.0f}{r['reader_mb']:>11.0f}{r['services_mb']:>13.0f}  "
              f"{r['worker_process']}")
    if not args.skip_builds:
        a, b = results[f"{small:g} min"], results[f"{large:g} min"]
        print(f"{large:g} min / {small:g} min: driver {b['driver_mb'] / a['driver_mb']:.2f}x, "
              f"largest worker {b['worker_mb'] / a['worker_mb']:.2f}x   (goal <= 1.2x)")
    a, b = results[f"one {small:g}-min recording"], results[f"one {args.hours:g}-h recording"]
    print(f"{args.hours:g}-h recording / {small:g}-min recording: largest worker {b['worker_mb'] / a['worker_mb']:.2f}x "
          f"(goal <= 1.3x), ingest reader {b['reader_mb'] / a['reader_mb']:.2f}x, "
          f"driver {b['driver_mb'] / a['driver_mb']:.2f}x")
    if args.dense_minutes:
        dense_name = f"one {args.dense_minutes:g}-min dense recording"
        a, b = results[f"one {small:g}-min recording"], results[dense_name]
        print(f"{args.dense_minutes:g} min of dense speech / {small:g} min: largest worker "
              f"{b['worker_mb'] / a['worker_mb']:.2f}x (the label actor labels a chunk of clips at a time), "
              f"driver {b['driver_mb'] / a['driver_mb']:.2f}x")
    print(f"command: python bench/memory.py --minutes {small:g} {large:g} --hours {args.hours:g} "
          f"--dense-minutes {args.dense_minutes:g}; work in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
