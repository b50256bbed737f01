"""``stt-corpus plan``: what a build of N hours costs, from figures our benchmarks measured.

Inputs come from the measurements file (``docs/measurements.json``, written by ``bench/*.py``
with date and machine), never from constants typed in here; each printed figure names the
measurement it came from, or says it was given on the command line. A figure the file lacks is
an error that says which benchmark measures it (the GPU labelling speed can be given instead with
``--gpu-rtfx``).

Model of the build: three phases one after another. Ingest and cut + shard run on the CPU pool;
in segment + label the GPUs set the pace and the CPU side (fetch, decode, VAD) must keep up, so
the pool is sized as the GPU speed over the CPU side's per-core speed;
the store holds the kept audio as FLAC in shards of ``shards.max_bytes`` under one prefix per
(split, domain); S3 serves 3,500 PUT and 5,500 GET requests per second per prefix.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import DEFAULT_MODEL, ShardConfig

# S3's documented request rates per partitioned prefix (a service limit, not a measurement of ours)
S3_PUT_PER_PREFIX = 3500
S3_GET_PER_PREFIX = 5500
S3_LIMITS_SOURCE = "AWS S3 documentation: 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD per s per prefix"
# the store's multipart part size (corpus/store.py S3 writer default): requests per shard upload
MULTIPART_PART_BYTES = 16 * 1024**2
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "docs" / "measurements.json"


class PlanError(ValueError):
    """A figure the plan needs is missing; the message says how to measure it."""


@dataclass(frozen=True)
class Figure:
    value: float
    source: str  # where it came from, in words

    def __float__(self) -> float:
        return float(self.value)


def load_measurements(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    if not path.exists():
        raise PlanError(f"measurements file {path} not found: run the benchmarks (bench/stages.py, bench/label.py) "
                        "or give --measurements FILE")
    data = json.loads(path.read_text())
    return data.get("measurements", {})


def measured(measurements: dict, name: str, how: str) -> Figure:
    m = measurements.get(name)
    if m is None:
        raise PlanError(f"no measurement {name!r} in the measurements file: {how}")
    return Figure(float(m["value"]), f"{name} = {m['value']:g} {m['unit']} ({m['date']}, {m['machine']})")


def given(value: float, flag: str) -> Figure:
    return Figure(float(value), f"given on the command line ({flag})")


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError


def make_plan(*, hours: float, gpus: int, model: str, gpu_rtfx: float | None, measurements: dict,
              domains: int, splits: int, recording_minutes: float, train_gpus: int | None,
              shard_bytes: int, compute: str = "float16") -> dict:
    """Every figure of the plan, each with its source (a dict of name → (value, unit, how))."""
    if hours <= 0 or gpus < 1:
        raise PlanError("--hours must be > 0 and --gpus >= 1")
    gpu_name = f"label.cuda.{model}.{compute}.batched.audio_s_per_s"
    if gpu_rtfx is not None:
        rtfx = given(gpu_rtfx, "--gpu-rtfx")
    elif gpu_name in measurements:
        rtfx = measured(measurements, gpu_name, "")
    else:
        raise PlanError(f"no GPU labelling speed for model {model!r}: the measurements file has no {gpu_name!r} "
                        "(run bench/label.py --device cuda on a GPU machine), so give --gpu-rtfx R "
                        "(audio seconds labelled per second by one GPU)")
    cpu = measured(measurements, "stages.build_cpu.audio_s_per_s_per_core", "run bench/stages.py")
    flac = measured(measurements, "build.release.shard_bytes_per_kept_audio_s", "run bench/label.py")
    kept = measured(measurements, "build.release.kept_fraction", "run bench/label.py")
    shard = Figure(shard_bytes, f"build config shards.max_bytes ({shard_bytes:,} bytes)")
    out: dict[str, tuple[float, str, str]] = {}

    audio_s = hours * 3600
    rate = float(rtfx) * gpus  # audio-s labelled per wall second, all GPUs
    cores = rate / float(cpu)
    pool = math.ceil(cores)  # the CPU pool sized to keep the GPUs fed
    # the build's phases run one after another: ingest (fetch, decode, hash + fingerprint) on the
    # CPU pool, segment + label (GPU-bound when the pool is sized as above), cut + shard (fetch,
    # decode, FLAC of the kept audio) on the CPU pool
    per = {n: measured(measurements, f"stages.{n}.audio_s_per_s_per_core", "run bench/stages.py")
           for n in ("fetch", "to_pcm", "ingest", "flac")}
    ingest_core_s = 1 / float(per["fetch"]) + 1 / float(per["to_pcm"]) + 1 / float(per["ingest"])
    cut_core_s = 1 / float(per["fetch"]) + 1 / float(per["to_pcm"]) + float(kept) / float(per["flac"])
    ingest_h = audio_s * ingest_core_s / pool / 3600
    label_h = audio_s / rate / 3600
    cut_h = audio_s * cut_core_s / pool / 3600
    out["wall time: ingest phase"] = (ingest_h, "h", f"{hours:g} h x (1/fetch + 1/to_pcm + 1/ingest) / {pool} cores; "
                                                     + "; ".join(per[n].source for n in ("fetch", "to_pcm", "ingest")))
    out["wall time: segment + label phase (GPU-bound)"] = (label_h, "h", f"{hours:g} h / ({gpus} GPUs x rtfx); "
                                                                          f"rtfx: {rtfx.source}")
    out["wall time: cut + shard phase"] = (cut_h, "h", f"{hours:g} h x (1/fetch + 1/to_pcm + kept/flac) / {pool} cores; "
                                                       f"flac: {per['flac'].source}")
    out["wall time: whole build"] = (ingest_h + label_h + cut_h, "h", "the three phases, one after another")
    out["GPU-hours (GPU nodes only while labelling: autoscaled)"] = (label_h * gpus, "GPU-h", "label phase x GPUs")
    out["GPU-hours (GPU nodes held for the whole build)"] = ((ingest_h + label_h + cut_h) * gpus, "GPU-h",
                                                             "whole build x GPUs")
    out["CPU cores to keep the GPUs fed"] = (pool, "cores", f"{gpus} x rtfx / CPU side per core; per core: {cpu.source}")
    out["CPU cores per GPU"] = (cores / gpus, "cores", "the same, per GPU")

    kept_audio_s = audio_s * float(kept)
    store = kept_audio_s * float(flac)
    out["kept audio"] = (kept_audio_s / 3600, "h", f"{hours:g} h x kept fraction; kept fraction: {kept.source}")
    out["store size (FLAC shards)"] = (store, "bytes", f"kept audio x FLAC bytes per audio-s; {flac.source}")
    n_shards = math.ceil(store / float(shard))
    prefixes = domains * splits
    out["shards"] = (n_shards, "shards", f"store size / {shard.source}")
    out["prefixes (split x domain)"] = (prefixes, "prefixes", f"--domains {domains} x --splits {splits} (given on the "
                                                               "command line or their defaults)")
    out["shards per prefix (mean)"] = (n_shards / prefixes, "shards", "shards / prefixes (train holds most in practice)")

    # build-time requests: shards are written one (split, domain) prefix at a time by the release
    # writer, so the worst case puts the whole PUT rate on one prefix
    write_bps = rate * float(kept) * float(flac)
    put_per_shard = math.ceil(float(shard) / MULTIPART_PART_BYTES) + 2  # parts + create + complete
    puts = write_bps / float(shard) * put_per_shard
    out["build: shard bytes written per s"] = (write_bps, "bytes/s", "GPUs x rtfx x kept fraction x FLAC bytes per audio-s")
    out["build: PUT requests per s (all on one prefix, worst case)"] = (
        puts, "req/s", f"{put_per_shard} requests per {_bytes(float(shard))} shard (16 MiB multipart parts); "
                       f"limit {S3_PUT_PER_PREFIX:,}/prefix: {puts / S3_PUT_PER_PREFIX:.2%} of it")
    recording_s = recording_minutes * 60
    gets = rate / recording_s * 3
    out["build: source GET requests per s"] = (
        gets, "req/s", f"3 reads per recording (ingest, segment, cut) of {recording_minutes:g} min "
                       f"(--recording-minutes, given on the command line or its default); "
                       f"limit {S3_GET_PER_PREFIX:,}/prefix: {gets / S3_GET_PER_PREFIX:.2%} of it")
    # training reads each shard whole once per pass
    out["training: egress for one pass"] = (store, "bytes", "every shard read once: the store size")
    train_name = "train.cuda.amp.samples_per_s"
    if train_name in measurements and train_gpus:
        samples = measured(measurements, train_name, "")
        seconds = measured(measurements, "build.release.mean_kept_segment_s", "run bench/label.py")
        read_bps = float(samples) * train_gpus * float(seconds) * float(flac)
        train_gets = read_bps / float(shard)
        out["training: GET requests per s"] = (
            train_gets, "req/s", f"{train_gpus} GPUs x {samples.source} x mean segment {seconds.source} x FLAC bytes "
                                 f"/ shard size; limit {S3_GET_PER_PREFIX:,}/prefix: "
                                 f"{train_gets / S3_GET_PER_PREFIX:.4%} of it")
        out["training: one pass"] = (kept_audio_s / float(seconds) / (float(samples) * train_gpus) / 3600, "h",
                                     "kept segments / (samples per s x GPUs)")
    else:
        out["training: GET requests per s"] = (
            float("nan"), "req/s", f"not computed: the measurements file has no {train_name!r} "
                                   "(the training benchmark on a GPU writes it; give --train-gpus N)")
    return out


def format_plan(plan: dict, *, hours: float, gpus: int, model: str, path: Path) -> str:
    lines = [f"capacity plan: {hours:,g} hours of raw audio, {gpus} GPUs, model {model}",
             f"measurements: {path}", f"S3 limits: {S3_LIMITS_SOURCE}", ""]
    for name, (value, unit, how) in plan.items():
        if unit == "bytes" or unit == "bytes/s":
            shown = _bytes(value) + ("/s" if unit == "bytes/s" else "")
        elif isinstance(value, float) and math.isnan(value):
            shown = "n/a"
        elif unit in ("shards", "prefixes", "cores") and float(value).is_integer():
            shown = f"{int(value):,} {unit}"
        else:
            shown = f"{value:,.2f} {unit}"
        lines.append(f"{name:<58} {shown:>18}")
        lines.append(f"    from: {how}")
    return "\n".join(lines)


def _run(args) -> int:
    path = Path(args.measurements) if args.measurements else DEFAULT_PATH
    measurements = load_measurements(path)
    plan = make_plan(hours=args.hours, gpus=args.gpus, model=args.model, gpu_rtfx=args.gpu_rtfx,
                     measurements=measurements, domains=args.domains, splits=args.splits,
                     recording_minutes=args.recording_minutes, train_gpus=args.train_gpus,
                     shard_bytes=args.shard_bytes)
    print(format_plan(plan, hours=args.hours, gpus=args.gpus, model=args.model, path=path))
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("plan", help="wall time, cores, store size and S3 rates of a build, from "
                                                "measured figures", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, required=True, help="hours of raw audio to build")
    parser.add_argument("--gpus", type=int, required=True, help="GPUs labelling")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"faster-whisper model (default {DEFAULT_MODEL})")
    parser.add_argument("--gpu-rtfx", type=float, help="audio-s labelled per s by one GPU (default: measured "
                                                       "label.cuda.<model>.float16.batched.audio_s_per_s)")
    parser.add_argument("--measurements", help=f"measurements file (default {DEFAULT_PATH})")
    parser.add_argument("--domains", type=int, default=4, help="domains in the corpus (default 4)")
    parser.add_argument("--splits", type=int, default=3, help="splits (default 3: train, validation, test)")
    parser.add_argument("--recording-minutes", type=float, default=10.0,
                        help="mean length of a source recording, for GET rates (default 10)")
    parser.add_argument("--train-gpus", type=int, default=None, help="GPUs training, for the GET rate of a pass")
    parser.add_argument("--shard-bytes", type=int, default=ShardConfig().max_bytes,
                        help="shards.max_bytes of the build (default the config's)")
    parser.set_defaults(func=_run)
    return parser
