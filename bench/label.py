"""Labelling speed: the whole Ray build against faster-whisper alone, on the same files, in one run.

(a) **plain loop** (what a user would otherwise write): for each file, decode it and run
    ``WhisperModel.transcribe(audio, vad_filter=True)``, consuming every segment;
(b) **model-only ceiling**: faster-whisper's ``BatchedInferencePipeline`` over the same files in
    this process (decode, its own Silero VAD, batched decoding of the speech, batch 8);
(c) **ours**: ``run_build`` on the same files into a fresh store, end to end: Ray start, ingest
    (decode once, hash, fingerprint, VAD, clips), labelling in a Ray actor, filter, shards, release
    and datasheet.

All three use the same model (tiny.en), compute type, CTranslate2 threads and decoding options
(greedy, temperature 0, word timestamps, no timestamp tokens, no conditioning on previous text).
Prints audio seconds per wall second for each, the ratios c/a and c/b, and where the build's wall
time goes per stage (``summary["stage_seconds"]``), so the next person sees the bottleneck.

Records into docs/measurements.json (``--no-record`` to skip): the label stage's speed as
``label.<device>.<model>.<compute>.batched.audio_s_per_s`` and, from the release the build wrote,
``build.release.shard_bytes_per_kept_audio_s``, ``build.release.kept_fraction`` and
``build.release.mean_kept_segment_s`` (what ``stt-corpus plan`` sizes a store from).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus.audio import decode  # noqa: E402
from pipelines.asr import default_beam_size  # noqa: E402
from reference.gen_audio import DOMAINS, generate  # noqa: E402


# faster-whisper alone decodes as a build with tiny.en (English-only) does by default: the same beam width
DECODE = dict(language="en", beam_size=default_beam_size(multilingual=False), temperature=0.0,
              word_timestamps=True, without_timestamps=True, condition_on_previous_text=False)


def _model(threads: int, device: str):
    from faster_whisper import WhisperModel

    from pipelines.asr import choose_device, resolve_model

    device, compute = choose_device(device, "auto")
    return WhisperModel(resolve_model("tiny.en"), device=device, compute_type=compute, cpu_threads=threads)


def plain_loop(files: list[Path], threads: int, device: str) -> tuple[float, float]:
    """(a) audio seconds, wall seconds (model load excluded, decoding of the files included)."""
    model = _model(threads, device)
    audio_seconds = 0.0
    start = time.perf_counter()
    for f in files:
        audio = decode(f)
        segments, _ = model.transcribe(audio.pcm, vad_filter=True, **DECODE)
        for _ in segments:
            pass
        audio_seconds += audio.duration
    return audio_seconds, time.perf_counter() - start


def batched_ceiling(files: list[Path], threads: int, device: str, batch_size: int = 8) -> tuple[float, float]:
    """(b) the same files through ``BatchedInferencePipeline`` (its own VAD), one process."""
    from faster_whisper import BatchedInferencePipeline

    pipeline = BatchedInferencePipeline(_model(threads, device))
    audio_seconds = 0.0
    start = time.perf_counter()
    for f in files:
        audio = decode(f)
        segments, _ = pipeline.transcribe(audio.pcm, vad_filter=True, batch_size=batch_size, log_progress=False,
                                          **DECODE)
        for _ in segments:
            pass
        audio_seconds += audio.duration
    return audio_seconds, time.perf_counter() - start


def ours(raw: Path, store: Path, threads: int, device: str, decode_workers: int = 1) -> dict:
    """(c) the whole build; ``end_to_end_seconds`` from the call to its return."""
    from corpus.store import open_store
    from pipelines.build import run_build
    from pipelines.config import load_config
    from presentation.datasheet import write_build_datasheet

    config = load_config(None, release="bench", store=str(store), device=device,
                         sources=[{"uri": str(raw), "include": f"{d}-*", "domain": d} for d in DOMAINS],
                         model={"name": "tiny.en", "device": device, "cpu_threads": threads},
                         resources={"num_cpus": os.cpu_count(), "decode_workers": decode_workers})
    start = time.perf_counter()
    summary = run_build(config, progress=False)
    write_build_datasheet(open_store(config.store), summary)  # as `stt-corpus build` does after the build
    summary["end_to_end_seconds"] = time.perf_counter() - start
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="minutes of generated audio (default 20)")
    parser.add_argument("--audio-dir", help="use these gen-audio files instead of generating")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CTranslate2 threads for both")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--decode-workers", type=int, default=None,
                        help="ingest tasks (decode, hash, fingerprint, VAD, clips) at once; default: all CPUs")
    parser.add_argument("--no-record", action="store_true", help="do not write docs/measurements.json")
    parser.add_argument("--measurements", default=None, help="measurements file (default docs/measurements.json)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-label-"))
    raw = Path(args.audio_dir) if args.audio_dir else work / "raw"
    if not args.audio_dir:
        print(f"generating {args.minutes:g} minutes of 4-domain speech ...", flush=True)
        generate(raw, minutes=args.minutes, seed=1)
    files = sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac"))

    from pipelines.asr import choose_device

    if args.decode_workers is None:
        args.decode_workers = max(1, os.cpu_count() or 1)
    print("(a) plain faster-whisper loop ...", flush=True)
    audio_s, loop_s = plain_loop(files, args.threads, args.device)
    print("(b) BatchedInferencePipeline (model-only ceiling) ...", flush=True)
    _, ceiling_s = batched_ceiling(files, args.threads, args.device)
    print("(c) stt-corpus build (Ray, end to end) ...", flush=True)
    summary = ours(raw, work / "store", args.threads, args.device, args.decode_workers)
    baseline, ceiling = audio_s / loop_s, audio_s / ceiling_s
    end_to_end = audio_s / summary["end_to_end_seconds"]
    label_only = summary["label_throughput_audio_s_per_s"]
    device, compute = choose_device(args.device, "auto")
    print()
    print(f"audio: {audio_s / 60:.1f} min in {len(files)} files; {os.cpu_count()} CPUs; {device} {compute}; "
          f"{args.threads} threads; {args.decode_workers} ingest workers")
    print(f"{'':<52}{'audio-s / wall-s':>18}")
    print(f"{'(a) plain loop: transcribe(vad_filter=True)':<52}{baseline:>18.2f}")
    print(f"{'(b) BatchedInferencePipeline, batch 8 (ceiling)':<52}{ceiling:>18.2f}")
    print(f"{'(c) ours, whole build (Ray start ... datasheet)':<52}{end_to_end:>18.2f}")
    print(f"{'    ours, label stage alone':<52}{label_only:>18.2f}")
    print(f"c/a = {end_to_end / baseline:.2f}   c/b = {end_to_end / ceiling:.2f}   (goal c/b >= 0.9)   "
          f"label stage / b = {label_only / ceiling:.2f}")
    wall = summary["end_to_end_seconds"]
    print(f"where the build's {wall:.1f} s go:")
    for stage, seconds in summary["stage_seconds"].items():
        print(f"  {stage:<16}{seconds:>8.1f} s  {seconds / wall:>6.1%}")
    rest = wall - sum(summary["stage_seconds"].values())
    print(f"  {'(rest)':<16}{rest:>8.1f} s  {rest / wall:>6.1%}")
    release = release_figures(work / "store", audio_s)
    print(f"release: {release['kept_fraction']:.3f} of the input audio kept, "
          f"{release['shard_bytes_per_kept_audio_s']:,.0f} shard bytes per kept audio-s, "
          f"mean kept segment {release['mean_kept_segment_s']:.2f} s")
    if not args.no_record:
        record_figures(args, label_only, baseline, release, audio_s)
    return 0


def release_figures(store: Path, audio_s: float) -> dict:
    """Store-sizing figures from the release the build wrote: shard bytes, kept share, segment length."""
    from corpus.release import Release
    from corpus.store import open_store

    release = Release.open(open_store(store), "bench")
    index = release.index().to_pylist()
    kept_s = sum(r["seconds"] for r in index)
    samples = sum(r["samples"] for r in index)
    return {"shard_bytes_per_kept_audio_s": sum(r["bytes"] for r in index) / kept_s,
            "kept_fraction": kept_s / audio_s, "mean_kept_segment_s": kept_s / samples}


def record_figures(args, label_only: float, baseline: float, release: dict, audio_s: float) -> None:
    from measurements import DEFAULT_PATH, record

    from pipelines.asr import choose_device

    device, compute = choose_device(args.device, "auto")
    path = args.measurements or DEFAULT_PATH
    audio = f"--audio-dir {args.audio_dir}" if args.audio_dir else f"--minutes {args.minutes:g}"
    cmd = f"python bench/label.py {audio} --threads {args.threads} --device {args.device} --decode-workers {args.decode_workers}"
    note = f"{audio_s / 60:.1f} min of gen-audio, 4 domains; {args.threads} CTranslate2 threads"
    record(f"label.{device}.tiny.en.{compute}.batched.audio_s_per_s", label_only, "audio-s per wall-s", cmd,
           note + f"; label stage of the build (one label actor; clips decoded once at ingest by {args.decode_workers} workers); "
           f"plain faster-whisper loop {baseline:.2f}",
           path=path)
    record("build.release.shard_bytes_per_kept_audio_s", release["shard_bytes_per_kept_audio_s"], "bytes per audio-s",
           cmd, note + "; shard bytes (16-bit FLAC + JSON + tar) / kept seconds, from the release's index", path=path)
    record("build.release.kept_fraction", release["kept_fraction"], "kept audio-s per input audio-s", cmd,
           note + "; default filter thresholds; synthetic speech: real corpora keep less", path=path)
    record("build.release.mean_kept_segment_s", release["mean_kept_segment_s"], "s", cmd, note, path=path)


if __name__ == "__main__":
    sys.exit(main())
