"""The GPU path, measured on a lent CUDA machine: labelling with faster-whisper (CUDA float16) and
training steps with automatic mixed precision.

Two steps, because the GPU machine reaches no package registry and no model hub:

    python bench/gpu.py prepare OUT_DIR [--minutes 20]   # here: gen-audio -> 16 kHz mono FLAC +
                                                        # sentence clips with their transcripts
    python bench/gpu.py run DATA_DIR --model MODEL_DIR --json OUT.json   # there, on the GPU

Labelling, on the same in-memory audio, same model (tiny.en), float16, greedy, word timestamps:
  (a) plain loop: ``WhisperModel.transcribe(vad_filter=True)`` per file (the baseline a user writes);
  (b) model-only ceiling: faster-whisper's ``BatchedInferencePipeline`` (its own VAD) per file;
  (c) ours: Silero VAD + our segment packing + ``pipelines.asr.WhisperLabeler`` (the build's label
      stage without Ray), for batch sizes 8, 16 and 32.
Prints audio-s per wall-s of each, the ratios c/a and c/b, and the GPU's busy share during each
(NVML utilisation sampled every 50 ms).

Training: our CTC model (``training.model.CTCModel``, default size) on real speech clips with
their transcripts, features on the GPU; fp32 against bf16 autocast (AMP): steps/s, audio-s/s and
peak GPU memory, same batches in the same order.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLE_RATE = 16000


# --------------------------------------------------------------------------- prepare (no GPU)


def prepare(out: Path, minutes: float, seed: int) -> None:
    import soundfile as sf

    from corpus.audio import decode
    from reference.gen_audio import generate

    raw = out / "raw"
    rows = generate(raw, minutes=minutes, seed=seed)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for f in sorted(p for p in raw.iterdir() if p.name != "truth.jsonl"):
        audio = decode(f)
        sf.write(audio_dir / f"{f.stem}.flac", audio.pcm, SAMPLE_RATE, subtype="PCM_16")
        clips += [{"file": f"{f.stem}.flac", "start": row.start, "end": row.end, "text": row.text}
                  for row in rows if row.file == f.name and 0.5 <= row.end - row.start <= 12]
    (out / "clips.json").write_text(json.dumps(clips))
    for f in raw.iterdir():
        f.unlink()
    raw.rmdir()
    seconds = sum(c["end"] - c["start"] for c in clips)
    print(f"{len(list(audio_dir.iterdir()))} files in {audio_dir}; {len(clips)} sentence clips "
          f"({seconds / 60:.1f} min) with transcripts in {out / 'clips.json'}")


# --------------------------------------------------------------------------- GPU busy share


class GpuSampler:
    """NVML utilisation.gpu sampled every 50 ms on a thread; ``busy`` is the mean share (0-1)."""

    def __init__(self):
        self._samples: list[int] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no NVML (a CPU dry run): busy is reported as nan
            self._nvml = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self._nvml is not None:
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self._samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def busy(self) -> float:
        return float(np.mean(self._samples)) / 100 if self._samples else float("nan")


# --------------------------------------------------------------------------- labelling


def _load_audio(data: Path) -> list[tuple[str, np.ndarray]]:
    import soundfile as sf

    out = []
    for f in sorted((data / "audio").glob("*.flac")):
        pcm, rate = sf.read(f, dtype="float32")
        assert rate == SAMPLE_RATE, f
        out.append((f.name, pcm))
    return out


def _timed(fn, files, repeats: int) -> tuple[float, float]:
    """Best wall time of ``repeats`` passes over all files, and the GPU busy share of that pass."""
    best, busy = float("inf"), float("nan")
    for _ in range(repeats):
        with GpuSampler() as sampler:
            start = time.perf_counter()
            for name, pcm in files:
                fn(pcm)
            took = time.perf_counter() - start
        if took < best:
            best, busy = took, sampler.busy
    return best, busy


def label_bench(data: Path, model_dir: str, repeats: int, device: str = "cuda") -> dict:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from pipelines.asr import WhisperLabeler, default_beam_size, speech_timestamps
    from pipelines.segment import pack_segments

    files = _load_audio(data)
    audio_s = sum(len(p) for _, p in files) / SAMPLE_RATE
    compute = "float16" if device == "cuda" else "int8"
    model = WhisperModel(model_dir, device=device, compute_type=compute)
    # faster-whisper alone decodes as a build (and WhisperLabeler) does by default: the same beam width
    common = dict(language="en", beam_size=default_beam_size(model.model.is_multilingual), temperature=0.0,
                  word_timestamps=True, condition_on_previous_text=False)
    results: dict = {"audio_seconds": audio_s, "files": len(files), "model": Path(model_dir).name,
                     "compute_type": compute}

    def plain(pcm):
        segments, _ = model.transcribe(pcm, vad_filter=True, **common)
        for _ in segments:
            pass

    plain(files[0][1])  # warm-up: CUDA kernels, cuBLAS handles
    took, busy = _timed(plain, files, repeats)
    results["plain_loop"] = {"audio_s_per_s": audio_s / took, "gpu_busy": busy}
    print(f"plain loop: {audio_s / took:8.1f} audio-s/s, GPU busy {busy:.0%}", flush=True)

    # VAD + packing alone (CPU): what our label stage spends before the GPU sees a clip
    start = time.perf_counter()
    packed = []
    for name, pcm in files:
        speech = speech_timestamps(pcm)
        packed.append(pack_segments(speech, len(pcm) / SAMPLE_RATE, min_seconds=2.0, max_seconds=30.0,
                                    max_gap=2.0, pad=0.2))
    vad_s = time.perf_counter() - start
    results["vad_pack_cpu"] = {"audio_s_per_s": audio_s / vad_s}
    print(f"VAD + packing (CPU, one thread of {platform.processor() or 'the host'}): {audio_s / vad_s:8.1f} audio-s/s",
          flush=True)

    pipeline = BatchedInferencePipeline(model)
    for batch in (8, 16, 32):
        def ceiling(pcm, batch=batch):
            segments, _ = pipeline.transcribe(pcm, batch_size=batch, vad_filter=True, without_timestamps=True, **common)
            for _ in segments:
                pass

        labeler = WhisperLabeler(model=model_dir, device=device, compute_type=compute, batch_size=batch)
        clips = {name: c for (name, _), c in zip(files, packed)}

        def ours(pcm, _labeler=labeler):
            name = next(n for n, p in files if p is pcm)
            _labeler.label(pcm, clips[name], language="en")

        def ours_with_vad(pcm, _labeler=labeler):
            speech = speech_timestamps(pcm)
            segs = pack_segments(speech, len(pcm) / SAMPLE_RATE, min_seconds=2.0, max_seconds=30.0, max_gap=2.0,
                                 pad=0.2)
            _labeler.label(pcm, segs, language="en")

        ceiling(files[0][1])
        ours(files[0][1])
        t_b, busy_b = _timed(ceiling, files, repeats)
        t_c, busy_c = _timed(ours_with_vad, files, repeats)
        t_g, busy_g = _timed(ours, files, repeats)
        row = {"ceiling_batched": {"audio_s_per_s": audio_s / t_b, "gpu_busy": busy_b},
               "ours_vad_and_label": {"audio_s_per_s": audio_s / t_c, "gpu_busy": busy_c},
               "ours_label_only": {"audio_s_per_s": audio_s / t_g, "gpu_busy": busy_g}}
        row["c_over_a"] = row["ours_vad_and_label"]["audio_s_per_s"] / results["plain_loop"]["audio_s_per_s"]
        row["c_over_b"] = row["ours_vad_and_label"]["audio_s_per_s"] / row["ceiling_batched"]["audio_s_per_s"]
        results[f"batch_{batch}"] = row
        print(f"batch {batch:>2}: ceiling {audio_s / t_b:8.1f} (busy {busy_b:.0%}); ours VAD+label "
              f"{audio_s / t_c:8.1f} (busy {busy_c:.0%}); ours label only {audio_s / t_g:8.1f} (busy {busy_g:.0%}); "
              f"c/a {row['c_over_a']:.2f}, c/b {row['c_over_b']:.2f}", flush=True)
    return results


# --------------------------------------------------------------------------- several label actors per GPU


def _actor(model_dir: str, device: str, batch: int, files: list[str], ready, go, results) -> None:
    """One label actor (a process, as a Ray actor is): own model, VAD + packing + WhisperLabeler."""
    import soundfile as sf

    from pipelines.asr import WhisperLabeler, speech_timestamps
    from pipelines.segment import pack_segments

    compute = "float16" if device == "cuda" else "int8"
    labeler = WhisperLabeler(model=model_dir, device=device, compute_type=compute, batch_size=batch, cpu_threads=1)
    audio = [sf.read(f, dtype="float32")[0] for f in files]
    labeler.label(audio[0], [(0.0, min(5.0, len(audio[0]) / SAMPLE_RATE))], language="en")  # warm-up
    ready.put(1)
    go.wait()
    start = time.perf_counter()
    for pcm in audio:
        segs = pack_segments(speech_timestamps(pcm), len(pcm) / SAMPLE_RATE, min_seconds=2.0, max_seconds=30.0,
                             max_gap=2.0, pad=0.2)
        labeler.label(pcm, segs, language="en")
    results.put((sum(len(a) for a in audio) / SAMPLE_RATE, time.perf_counter() - start))


def actors_bench(data: Path, model_dir: str, counts: list[int], device: str, batch: int = 8) -> dict:
    """Aggregate audio-s/s of K label actors sharing one GPU, each on every file once."""
    import multiprocessing as mp

    files = [str(f) for f in sorted((data / "audio").glob("*.flac"))]
    ctx = mp.get_context("spawn")
    out = {}
    for k in counts:
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_actor, args=(model_dir, device, batch, files, ready, go, results))
                 for _ in range(k)]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=300)
        with GpuSampler() as sampler:
            go.set()
            got = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
        audio_s, slowest = sum(a for a, _ in got), max(t for _, t in got)
        out[f"actors_{k}"] = {"audio_s_per_s": audio_s / slowest, "gpu_busy": sampler.busy}
        print(f"{k} label actors on one GPU (VAD + label each, batch {batch}): {audio_s / slowest:8.1f} audio-s/s, "
              f"GPU busy {sampler.busy:.0%}", flush=True)
    return out


# --------------------------------------------------------------------------- training


def _model_sizes():
    from training.config import ModelConfig

    return {"default": ModelConfig(),
            "large": ModelConfig(d_model=512, num_layers=12, num_heads=8, ffn_dim=2048, subsample_channels=64)}


MODEL_SIZES: dict = {}


def train_bench(data: Path, steps: int, batch_size: int, device_name: str = "cuda", size: str = "default") -> dict:
    import torch

    from training.features import CharVocab, LogMel, pad_features

    MODEL_SIZES.update(_model_sizes())
    from training.model import CTCModel

    audio = dict(_load_audio(data))
    clips = json.loads((data / "clips.json").read_text())
    waves_all = [audio[c["file"]][round(c["start"] * SAMPLE_RATE):round(c["end"] * SAMPLE_RATE)] for c in clips]
    texts = [c["text"] for c in clips]
    vocab = CharVocab.from_texts(texts)
    device = torch.device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    logmel = LogMel()
    logmel._mel = logmel._mel.to(device)
    order = np.random.default_rng(0).permutation(len(texts))
    batches = []
    for i in range(steps):
        idx = order[(np.arange(batch_size) + i * batch_size) % len(order)]
        waves = [torch.from_numpy(np.ascontiguousarray(waves_all[j])) for j in idx]
        batches.append((waves, [vocab.encode(texts[j]) for j in idx]))
    seconds_per_pass = sum(len(w) for ws, _ in batches for w in ws) / SAMPLE_RATE
    results = {"steps": steps, "batch_size": batch_size, "audio_seconds_per_pass": seconds_per_pass, "size": size,
               "model": MODEL_SIZES[size].model_dump()}
    for name, amp in (("fp32", False), ("bf16_amp", True)):
        torch.manual_seed(0)
        model = CTCModel(MODEL_SIZES[size], len(vocab)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def step(waves, targets):
            feats, lengths = pad_features([logmel(w.to(device, non_blocking=True)) for w in waves])
            flat = torch.tensor([t for tt in targets for t in tt], dtype=torch.long, device=device)
            target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                log_probs, out_lengths = model(feats.to(device), lengths.to(device))
            loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), flat, out_lengths, target_lengths,
                                                zero_infinity=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

        for waves, targets in batches[:5]:  # warm-up
            step(waves, targets)
        sync()
        with GpuSampler() as sampler:
            start = time.perf_counter()
            for waves, targets in batches:
                loss = step(waves, targets)
            sync()
            took = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else float("nan")
        results[name] = {"steps_per_s": steps / took, "audio_s_per_s": seconds_per_pass / took,
                         "peak_gpu_mib": peak, "gpu_busy": sampler.busy, "last_loss": float(loss.detach())}
        print(f"train {size} {name}: {steps / took:7.2f} steps/s, {seconds_per_pass / took:8.1f} audio-s/s, "
              f"peak {peak:.0f} MiB, GPU busy {sampler.busy:.0%}", flush=True)
    results["amp_speedup"] = results["bf16_amp"]["steps_per_s"] / results["fp32"]["steps_per_s"]
    print(f"AMP speed-up ({size} model): {results['amp_speedup']:.2f}x", flush=True)
    return results


def record_measurements(paths: list[Path]) -> None:
    """Merge the figures of ``run`` outputs (JSON files brought back from the GPU machine) into
    docs/measurements.json, stamped with that machine, for ``stt-corpus plan``."""
    from bench.measurements import record

    for path in paths:
        out = json.loads(path.read_text())
        machine = f"{out['host_cpus']} cores (lent machine), {out['device']}"
        command = f"python bench/gpu.py run DATA --model tiny.en ({path.name})"
        label = out.get("label")
        if label:
            for key, name in (("plain_loop", "plain_loop"),):
                record(f"label.cuda.tiny.en.float16.{name}.audio_s_per_s", label[key]["audio_s_per_s"], "audio-s/s",
                       command, "plain WhisperModel.transcribe(vad_filter=True) loop, one process",
                       machine_words=machine)
            record("label.cuda.tiny.en.float16.ceiling_batched.audio_s_per_s",
                   label["batch_8"]["ceiling_batched"]["audio_s_per_s"], "audio-s/s", command,
                   "faster-whisper BatchedInferencePipeline, batch 8, one process", machine_words=machine)
            record("label.cuda.tiny.en.float16.one_actor.audio_s_per_s",
                   label["batch_8"]["ours_vad_and_label"]["audio_s_per_s"], "audio-s/s", command,
                   "our label stage (VAD + packing + WhisperLabeler, batch 8), one process", machine_words=machine)
        actors = out.get("actors")
        if actors:
            best = max(actors, key=lambda k: actors[k]["audio_s_per_s"])
            record("label.cuda.tiny.en.float16.batched.audio_s_per_s", actors[best]["audio_s_per_s"], "audio-s/s",
                   command, f"one GPU, {best.split('_')[1]} label actors sharing it (VAD + packing + WhisperLabeler, "
                   f"batch 8, each its own process), GPU busy {actors[best]['gpu_busy']:.0%}", machine_words=machine)
        train = out.get("train", {})
        train = train.get("default", train)
        if train:
            batch = train["batch_size"]
            for mode, name in (("bf16_amp", "amp"), ("fp32", "fp32")):
                record(f"train.cuda.{name}.samples_per_s", train[mode]["steps_per_s"] * batch, "samples/s", command,
                       f"CTCModel default size, batch {batch} sentence clips (up to 12 s), features on the GPU",
                       machine_words=machine)
        print(f"recorded the figures of {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="generate audio and training clips here (no GPU needed)")
    p.add_argument("out", type=Path)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run", help="run the GPU benchmarks on prepared data")
    r.add_argument("data", type=Path)
    r.add_argument("--model", required=True, help="faster-whisper (CTranslate2) model directory")
    r.add_argument("--json", type=Path, required=True, help="write every figure here")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--train-steps", type=int, default=200)
    r.add_argument("--train-batch", type=int, default=32)
    r.add_argument("--skip", choices=["label", "train", "actors"], action="append", default=[])
    m = sub.add_parser("record", help="merge run outputs (JSON) into docs/measurements.json")
    m.add_argument("json", type=Path, nargs="+")
    r.add_argument("--train-sizes", default="default", help="model sizes to train: default, large (comma-separated)")
    r.add_argument("--actors", default="1,2,4,8", help="label actors sharing the GPU, comma-separated counts")
    r.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script here")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.minutes, args.seed)
        return 0
    if args.command == "record":
        record_measurements(args.json)
        return 0
    import torch

    out = {"date": time.strftime("%Y-%m-%d"),
           "device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu",
           "host_cpus": __import__("os").cpu_count(), "torch": torch.__version__}
    try:
        import ctranslate2

        out["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        pass
    if "label" not in args.skip:
        try:
            out["label"] = label_bench(args.data, args.model, args.repeats, args.device)
        except Exception as err:  # noqa: BLE001 - report and go on to training: one lease, both figures
            out["label_error"] = repr(err)
            print(f"label bench failed: {err!r}", flush=True)
        args.json.write_text(json.dumps(out, indent=2))
    if "actors" not in args.skip:
        out["actors"] = actors_bench(args.data, args.model, [int(k) for k in args.actors.split(",")], args.device)
        args.json.write_text(json.dumps(out, indent=2))
    if "train" not in args.skip:
        out["train"] = {size: train_bench(args.data, args.train_steps, args.train_batch, args.device, size)
                        for size in args.train_sizes.split(",")}
    args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
