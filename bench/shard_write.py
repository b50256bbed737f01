"""Shard writing speed: our ShardWriter against `tar cf` over the same FLAC + JSON files.

Makes N samples of 16 kHz FLAC (speech-like noise bursts, so FLAC cannot shrink them to
nothing) plus their JSON, writes them to a folder, then alternates, for --repeats rounds:

  baseline  `tar cf out.tar --sort=name -C samples .`  (what a user would otherwise run)
  ours      read each sample's files, ShardWriter -> a local store (capped shards, sha256 of
            every shard, index rows)

Both read the same files from the page cache and write to the same disk. Prints MB/s (of
sample bytes) of each, median over the rounds, and the ratio ours / tar (goal >= 0.8).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.shards import ShardWriter, encode_flac  # noqa: E402
from corpus.store import LocalStore  # noqa: E402


def make_samples(folder: Path, count: int, seconds: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    keys = []
    n = int(16000 * seconds)
    for i in range(count):
        envelope = np.repeat(rng.uniform(0.05, 0.5, size=n // 1600 + 1), 1600)[:n]
        pcm = (rng.standard_normal(n) * envelope * 0.3).astype(np.float32)
        key = f"{i:020x}-{0:09d}-{int(seconds * 1000):09d}"
        (folder / f"{key}.flac").write_bytes(encode_flac(pcm))
        (folder / f"{key}.json").write_text(json.dumps({"segment_id": key, "text": "a sample " * 8,
                                                        "avg_logprob": -0.2, "duration": seconds}))
        keys.append(key)
    return keys


def run_tar(samples: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["tar", "cf", str(out), "--sort=name", "-C", str(samples), "."], check=True)
    return time.perf_counter() - start


def run_ours(samples: Path, keys: list[str], out: Path, max_bytes: int) -> float:
    start = time.perf_counter()
    with ShardWriter(LocalStore(out), max_bytes=max_bytes) as writer:
        for key in keys:
            flac = (samples / f"{key}.flac").read_bytes()
            meta = json.loads((samples / f"{key}.json").read_bytes())
            writer.write("train", "bench", key, flac, meta, meta["duration"])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=400, help="number of samples (default 400)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per sample (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds; medians are reported")
    parser.add_argument("--max-shard-mb", type=int, default=256, help="shard size cap of our writer")
    parser.add_argument("--workdir", default=None, help="where to put the files (default: a temp dir)")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-shard-"))
    samples = work / "samples"
    shutil.rmtree(work / "samples", ignore_errors=True)
    samples.mkdir(parents=True)
    print(f"making {args.samples} samples of {args.seconds:g} s ...", flush=True)
    keys = make_samples(samples, args.samples, args.seconds, seed=0)
    total = sum(p.stat().st_size for p in samples.iterdir())
    print(f"{total / 1e6:.1f} MB in {2 * len(keys)} files under {samples}")

    tar_times, our_times = [], []
    for round_ in range(args.repeats):
        runs = [("tar", tar_times, lambda out: run_tar(samples, out / "out.tar")),
                ("ours", our_times, lambda out: run_ours(samples, keys, out, args.max_shard_mb << 20))]
        for name, times, fn in runs if round_ % 2 == 0 else runs[::-1]:  # alternate who goes first
            out = work / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            os.sync()  # start each timed run with no dirty pages from the one before
            times.append(fn(out))
        print(f"round {round_ + 1}: tar {total / tar_times[-1] / 1e6:7.1f} MB/s   ours {total / our_times[-1] / 1e6:7.1f} MB/s",
              flush=True)
    tar_rate = total / statistics.median(tar_times) / 1e6
    our_rate = total / statistics.median(our_times) / 1e6
    print()
    print(f"{'writer':<44} {'MB/s':>8}")
    print(f"{'tar cf (baseline)':<44} {tar_rate:8.1f}")
    print(f"{'stt-corpus ShardWriter (+sha256, index)':<44} {our_rate:8.1f}")
    print(f"ratio ours / tar: {our_rate / tar_rate:.2f}  (goal >= 0.80)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
