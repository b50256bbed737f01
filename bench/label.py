"""Labelling speed: the Ray build against a plain faster-whisper loop over the same files.

Baseline (what a user would otherwise write): for each file, decode it and run
``WhisperModel.transcribe(audio, vad_filter=True, word_timestamps=True)`` with the same model,
threads and decoding options, consuming every segment.

Ours: ``stt-corpus build`` on the same files into a fresh store: ingest, VAD + packing,
batched decoding in a Ray actor pool, filter, shards, release. Reported end to end (Ray start
and sharding included) and for the segment+label stage alone.

Prints audio seconds per wall second for each and the ratios ours / plain loop.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.audio import decode  # noqa: E402
from corpus.gen_audio import DOMAINS, generate  # noqa: E402


def plain_loop(files: list[Path], threads: int, device: str) -> tuple[float, float]:
    from faster_whisper import WhisperModel

    from pipelines.asr import choose_device, resolve_model

    device, compute = choose_device(device, "auto")
    model = WhisperModel(resolve_model("tiny.en"), device=device, compute_type=compute, cpu_threads=threads)
    audio_seconds = 0.0
    start = time.perf_counter()
    for f in files:
        audio = decode(f)
        segments, _ = model.transcribe(audio.pcm, language="en", beam_size=1, temperature=0.0, vad_filter=True,
                                       word_timestamps=True, condition_on_previous_text=False)
        for _ in segments:
            pass
        audio_seconds += audio.duration
    return audio_seconds, time.perf_counter() - start


def ours(raw: Path, store: Path, threads: int, device: str) -> dict:
    from pipelines.build import run_build
    from pipelines.config import load_config

    config = load_config(None, release="bench", store=str(store), device=device,
                         sources=[{"uri": str(raw), "include": f"{d}-*", "domain": d} for d in DOMAINS],
                         model={"name": "tiny.en", "device": device, "cpu_threads": threads},
                         resources={"num_cpus": os.cpu_count()})
    start = time.perf_counter()
    summary = run_build(config, progress=False)
    summary["end_to_end_seconds"] = time.perf_counter() - start
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="minutes of generated audio (default 8)")
    parser.add_argument("--audio-dir", help="use these gen-audio files instead of generating")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CTranslate2 threads for both")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-label-"))
    raw = Path(args.audio_dir) if args.audio_dir else work / "raw"
    if not args.audio_dir:
        print(f"generating {args.minutes:g} minutes of 4-domain speech ...", flush=True)
        generate(raw, minutes=args.minutes, seed=1)
    files = sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac"))

    print("plain faster-whisper loop ...", flush=True)
    audio_s, loop_s = plain_loop(files, args.threads, args.device)
    print("stt-corpus build (Ray) ...", flush=True)
    summary = ours(raw, work / "store", args.threads, args.device)
    end_to_end = audio_s / summary["end_to_end_seconds"]
    label_only = summary["label_throughput_audio_s_per_s"]
    baseline = audio_s / loop_s
    print()
    print(f"audio: {audio_s / 60:.1f} min in {len(files)} files; {os.cpu_count()} CPUs; device {args.device}")
    print(f"{'':<48}{'audio-s / wall-s':>18}")
    print(f"{'plain loop: transcribe(vad_filter=True)':<48}{baseline:>18.2f}")
    print(f"{'ours, segment+label stage':<48}{label_only:>18.2f}")
    print(f"{'ours, whole build (Ray start, ingest, shards)':<48}{end_to_end:>18.2f}")
    print(f"ratio ours / plain loop: label stage {label_only / baseline:.2f}, whole build {end_to_end / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
