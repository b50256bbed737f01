"""CPU stages, per core: can they keep a GPU fed?

For each CPU stage of the build, audio seconds processed per CPU second of this process (one
thread: ``OMP_NUM_THREADS=1``, ONNX Runtime with one thread), so the figure is per core and holds
on a loaded machine (CPU time, not wall time). Each stage calls the module the build calls, on
generated 4-domain speech (FLAC 22/16 kHz, u-law 8 kHz WAV, 16 kHz WAV, 44.1 kHz stereo WAV) plus
the same audio as MP3 and Opus:

  fetch       ``pipelines.recording.fetch_source``: the capped copy of an S3 object to local disk,
              from a moto server in another process (client CPU only)
  decode      PyAV demux + decode at the file's own rate and channels (a part of to_pcm, shown alone)
  resample    FFmpeg's resampler to 16 kHz mono s16 (PyAV), on the decoded frames (likewise)
  to_pcm      ``pipelines.recording.decode_to_spool``: the build's one decode of a file (streamed
              decode + resample into a local int16 spool, sha256 of the PCM = the recording id)
  ingest      what ingest measures on the spool: ``spool_rms_dbfs`` and the spectral-peak
              fingerprint for near-duplicates (``pipelines.fingerprint.fingerprint_spans``)
  vad         ``pipelines.recording.segment_spool``: windowed Silero VAD + packing into segments
  clips       ``pipelines.recording.write_clips``: the segments as exact int16 FLAC in one parquet
              work part (into a local store)
  clips_read  ``pipelines.recording.iter_clips``: the clips part read back, one clip at a time
              (a label actor does it, and a cut task again)
  flac        the cut task's FLAC of each clip as the release stores it (``corpus.shards.encode_flac``)
  shard       tar + sha256 of the FLAC samples (``ShardWriter`` into a local folder)
  features    faster-whisper's log-mel features of each clip: CPU work on the GPU (label) node,
              done by the batched pipeline before the model sees a clip

Baseline, measured in the same run: a plain full-file decode, ``ffmpeg -i FILE -ac 1 -ar 16000
-f s16le -`` (the CPU time of the ffmpeg child); every stage is printed with its speed as a ratio
to it ("x ffmpeg": above 1, cheaper than decoding the file once). Then: the build's CPU cost per
audio second (each stage counted as often as the build runs it, ``BUILD_PASSES``: a file is
fetched and decoded once, by ingest; the clips part is written once and read twice), the cores
one GPU needs at a labelling speed (``--gpu-rtfx``), and whether 16 cores keep a GPU at 300x fed.

Writes ``stages.*`` figures into docs/measurements.json (``--no-record`` to skip).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from corpus.schema import SAMPLE_RATE  # noqa: E402

COMMAND = "python bench/stages.py"


def cpu_seconds() -> float:
    """CPU time of this process (all threads), user + system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Timer:
    def __init__(self):
        self.cpu = 0.0
        self.wall = 0.0

    def __enter__(self):
        self._c, self._w = cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu += cpu_seconds() - self._c
        self.wall += time.perf_counter() - self._w


def make_audio(work: Path, minutes: float, seed: int) -> list[Path]:
    from reference.gen_audio import generate

    raw = work / "raw"
    generate(raw, minutes=minutes, seed=seed)
    files = sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac"))
    if shutil.which("ffmpeg"):  # the same audio compressed, as podcasts and web audio come
        for src, ext, codec in ((files[0], "mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
                                (files[-1], "opus", ["-c:a", "libopus", "-b:a", "32k"])):
            out = raw / f"{src.stem}-lossy.{ext}"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *codec, str(out)], check=True)
            files.append(out)
    return files


def start_moto(work: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto server did not start")


def decode_native(data: bytes):
    """PyAV decode only: frames at the file's own rate and layout (what resampling starts from)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return list(container.decode(stream))


def resample(frames) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks = [out.to_ndarray().reshape(-1) for f in frames for out in resampler.resample(f)]
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks)


def ffmpeg_decode(path: Path) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(SAMPLE_RATE),
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype=np.int16)


def measure(files: list[Path], endpoint: str, repeats: int) -> dict:
    import boto3

    from corpus.shards import ShardWriter, encode_flac
    from corpus.store import open_store
    from faster_whisper.feature_extractor import FeatureExtractor
    from pipelines.config import SegmentConfig
    from pipelines.fingerprint import fingerprint_spans
    from pipelines.recording import (clip_to_float, decode_to_spool, fetch_source, iter_clips, segment_spool,
                                     spool_rms_dbfs, write_clips)
    from pipelines.vad import speech_regions

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    for f in files:
        client.upload_file(str(f), "bench", f"raw/{f.name}")
    # load the VAD model outside the timings
    speech_regions(lambda a, b: np.zeros(b - a, dtype=np.float32), SAMPLE_RATE)
    features = FeatureExtractor()
    segment = SegmentConfig().model_dump()

    work = Path(tempfile.mkdtemp(prefix="bench-stages-work-"))
    local = open_store(work / "store")
    by_format: dict[str, list[float]] = {}

    def one_file(f: Path, t: dict[str, Timer]) -> tuple[float, float]:
        """Every stage on one file; returns its audio seconds and the ffmpeg child's CPU seconds."""
        listed = {"source_uri": "s3://bench/raw", "key": f.name, "size": f.stat().st_size, "uri": str(f)}
        with t["fetch"]:
            path = fetch_source(listed, endpoint, work / "source")
        data = path.read_bytes()
        with t["decode"]:
            frames = decode_native(data)
        with t["resample"]:
            resample(frames)
        del frames, data
        c0 = time.perf_counter()
        with t["to_pcm"]:
            decoded = decode_to_spool(path, work / "pcm", name=f.name, max_seconds=None)
        spool = decoded.spool
        fmt = f.suffix.lstrip(".")
        by_format.setdefault(fmt, [0.0, 0.0])
        by_format[fmt][0] += spool.duration
        by_format[fmt][1] += time.perf_counter() - c0
        try:
            with t["ingest"]:
                spool_rms_dbfs(spool), fingerprint_spans(spool.load, spool.samples).to_bytes()
            with t["vad"]:
                segments = segment_spool(spool, segment)
            with t["clips"]:
                write_clips(local, "clips.parquet", spool, segments, str(work))
            duration = spool.duration
        finally:
            spool.close()
        with t["clips_read"]:
            clips = list(iter_clips(local, "clips.parquet"))
        with t["flac"]:
            flacs = [encode_flac(clip_to_float(pcm)) for _, _, pcm in clips]
        with t["shard"]:
            writer = ShardWriter(open_store(work / "shards"), max_bytes=256 * 1024**2, max_samples=10_000)
            for i, ((start, end, _), flac) in enumerate(zip(clips, flacs)):
                writer.write("train", "bench", f"{f.stem}-{i:06d}", flac, {"text": ""}, end - start)
            writer.close()
        with t["features"]:
            for _, _, pcm in clips:
                features(clip_to_float(pcm))
        c0 = child_cpu_seconds()
        with t["ffmpeg"]:
            ffmpeg_decode(f)
        return duration, child_cpu_seconds() - c0

    t = {name: Timer() for name in STAGES + ("ffmpeg",)}
    ffmpeg_child = audio_s = 0.0
    try:
        one_file(files[0], {name: Timer() for name in t})  # imports and first calls, untimed
        by_format.clear()
        for _ in range(repeats):
            for f in files:
                seconds, child = one_file(f, t)
                audio_s += seconds
                ffmpeg_child += child
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stages = {name: {"audio_s_per_cpu_s": audio_s / timer.cpu if timer.cpu else float("inf"),
                     "audio_s_per_wall_s": audio_s / timer.wall} for name, timer in t.items() if name != "ffmpeg"}
    # the baseline's CPU is the ffmpeg child's; the parent only waits on the pipe
    stages["ffmpeg"] = {"audio_s_per_cpu_s": audio_s / ffmpeg_child if ffmpeg_child else float("inf"),
                        "audio_s_per_wall_s": audio_s / t["ffmpeg"].wall}
    return {"audio_s": audio_s, "stages": stages,
            "to_pcm_by_format_wall": {k: a / w for k, (a, w) in sorted(by_format.items())}}


STAGES = ("fetch", "decode", "resample", "to_pcm", "ingest", "vad", "clips", "clips_read", "flac", "shard",
          "features")
# how many times the build runs each stage per recording (pipelines/build.py, pipelines/ingest.py):
# ingest fetches and decodes the file once, measures and fingerprints it, runs VAD and writes its
# clips part; a label actor reads the clips part, and so does the cut task, which FLAC-encodes the
# segments as released; the release writer shards them. decode and resample are parts of to_pcm.
# (features run on the GPU node and are reported apart.)
BUILD_PASSES = {"fetch": 1, "to_pcm": 1, "ingest": 1, "vad": 1, "clips": 1, "clips_read": 2, "flac": 1, "shard": 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="minutes of generated audio (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the files (default 2)")
    parser.add_argument("--gpu-rtfx", type=float, default=300.0,
                        help="labelling speed of one GPU in audio-s per s, for cores per GPU (default 300)")
    parser.add_argument("--cores", type=int, default=16, help="CPU cores beside one GPU (default 16)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not write docs/measurements.json")
    parser.add_argument("--measurements", default=None, help="measurements file (default docs/measurements.json)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    moto = None
    try:
        print(f"generating {args.minutes:g} minutes of 4-domain speech ...", flush=True)
        files = make_audio(work, args.minutes, args.seed)
        moto, endpoint = start_moto(work)
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_EC2_METADATA_DISABLED": "true"})
        result = measure(files, endpoint, args.repeats)
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    report(result, files, args)
    return 0


def report(result: dict, files: list[Path], args) -> None:
    st = result["stages"]
    print()
    print(f"audio: {result['audio_s'] / 60:.1f} min over {args.repeats} passes of {len(files)} files "
          f"({', '.join(sorted({f.suffix.lstrip('.') for f in files}))}); per core = audio-s per CPU-s of one thread")
    base = st["ffmpeg"]["audio_s_per_cpu_s"]
    print(f"{'stage':<12}{'audio-s/CPU-s':>15}{'audio-s/wall-s':>16}{'x ffmpeg':>10}")
    for name in STAGES + ("ffmpeg",):
        label = name if name != "ffmpeg" else "ffmpeg CLI"
        speed = st[name]["audio_s_per_cpu_s"]
        print(f"{label:<12}{speed:>15.1f}{st[name]['audio_s_per_wall_s']:>16.1f}{speed / base:>10.2f}")
    ratio = st["to_pcm"]["audio_s_per_cpu_s"] / st["ffmpeg"]["audio_s_per_cpu_s"]
    print(f"ratio our decode (to_pcm) / plain ffmpeg full-file decode, per CPU-s: {ratio:.2f}")
    cost = {name: passes / st[name]["audio_s_per_cpu_s"] for name, passes in BUILD_PASSES.items()}
    total = sum(cost.values())
    per_core = 1 / total
    slowest = max(cost, key=cost.get)
    cores_per_gpu = args.gpu_rtfx * total
    print(f"build CPU cost per audio-s: {total * 1000:.2f} ms ("
          + ", ".join(f"{k} {v * 1000:.2f}" for k, v in cost.items()) + f"); largest share: {slowest}; "
          f"{total * base:.2f}x the CPU of one plain ffmpeg decode")
    print(f"CPU side per core: {per_core:.1f} audio-s/s; one GPU at {args.gpu_rtfx:g}x needs "
          f"{cores_per_gpu:.1f} cores of the CPU pool; {args.cores} cores feed {args.cores * per_core:.0f} audio-s/s "
          f"({'enough' if args.cores * per_core >= args.gpu_rtfx else 'NOT enough'} for {args.gpu_rtfx:g}x)")
    feat = st["features"]["audio_s_per_cpu_s"]
    print(f"on the GPU node: log-mel features at {feat:.0f} audio-s per CPU-s: {args.gpu_rtfx / feat:.2f} cores "
          f"per GPU at {args.gpu_rtfx:g}x (its label actor's cpus_per_label_actor must cover them)")
    if args.no_record:
        return
    from measurements import DEFAULT_PATH, record

    path = args.measurements or DEFAULT_PATH
    cmd = f"{COMMAND} --minutes {args.minutes:g} --repeats {args.repeats}"
    note = f"{result['audio_s'] / 60:.1f} min of gen-audio (+ mp3, opus copies), one thread, CPU time"
    for name in STAGES:
        record(f"stages.{name}.audio_s_per_s_per_core", st[name]["audio_s_per_cpu_s"], "audio-s per CPU-s", cmd,
               note + (" (S3 GET from moto on 127.0.0.1: client side only)" if name == "fetch" else ""), path=path)
    record("stages.baseline_ffmpeg_decode.audio_s_per_s_per_core", st["ffmpeg"]["audio_s_per_cpu_s"],
           "audio-s per CPU-s", cmd, note + "; ffmpeg -ac 1 -ar 16000 -f s16le, CPU of the child", path=path)
    record("stages.build_cpu.audio_s_per_s_per_core", per_core, "audio-s per CPU-s", cmd,
           note + "; the build's whole CPU side: " + json.dumps(BUILD_PASSES) + " passes per stage", path=path)
if __name__ == "__main__":
    sys.exit(main())
