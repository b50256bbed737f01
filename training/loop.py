"""``train(config)``: stream a release, follow the curriculum, train the CTC model, evaluate, report.

Called by ``stt-corpus train`` and by flows. Everything a resume needs is in the latest
checkpoint: model, optimiser (and AMP scaler), step, audio seen, the resolved curriculum, the
vocabulary and each DataLoader worker's stream position. Randomness of a step (SpecAugment,
dropout) comes from a generator seeded by ``(seed, step)`` and the learning rate is a function
of the step alone, so a run resumed from a checkpoint trains on the same samples in the same
order and ends with the same weights as one that never stopped (same device and workers).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import random
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
import yaml
from torch.utils.data import DataLoader

from corpus.release import Release
from corpus.store import open_store
from training import report as report_mod
from training.config import RESUMABLE_CHANGES, TrainConfig, config_from_dict
from training.curriculum import (CurriculumSpec, Schedule, curriculum_yaml, default_curriculum, domain_stats,
                                 resolve, uniform_curriculum)
from training.dataset import EvalSet, StreamingDataset
from training.evaluate import ctc_losses, evaluate
from training.features import CharVocab, LogMel, SpecAugment
from training.model import CTCModel, parameter_count
from training.rundir import RunDir, RunError, run_store

log = logging.getLogger(__name__)

METRICS = pa.schema([
    pa.field("step", pa.int64()), pa.field("kind", pa.string()),  # "train" (interval means) or "eval"
    pa.field("split", pa.string()), pa.field("domain", pa.string()),  # domain "all": the whole batch
    pa.field("phase", pa.string()), pa.field("samples", pa.int64()), pa.field("seconds", pa.float64()),
    pa.field("loss", pa.float64()), pa.field("cer", pa.float64()), pa.field("wer", pa.float64()),
    pa.field("lr", pa.float64()), pa.field("audio_hours", pa.float64()),
    pa.field("wall_seconds", pa.float64()), pa.field("device_seconds", pa.float64()),
])
SAMPLES = pa.schema([pa.field("step", pa.int64()), pa.field("key", pa.string()), pa.field("domain", pa.string()),
                     pa.field("phase", pa.string()), pa.field("seconds", pa.float64())])


@dataclass
class TrainResult:
    run: str
    run_url: str
    steps: int
    audio_hours: float
    wall_seconds: float
    device_seconds: float
    device: str
    final_eval: list[dict]
    realised: dict
    corrupt_shards: dict[str, int]
    checkpoint_url: str | None
    report_url: str
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def lr_at(step: int, *, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then inverse square-root decay."""
    n = step + 1
    return peak * min(n / warmup, (warmup / n) ** 0.5)


def step_seed(seed: int, step: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:step:{step}".encode(), digest_size=8).digest(), "big") >> 1


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} torch threads)"


def _curriculum(config: TrainConfig, stats) -> tuple[CurriculumSpec, str]:
    spec = config.curriculum_spec()
    if spec == "default":
        return default_curriculum(stats, config.clean_domains)
    if spec == "uniform":
        return uniform_curriculum(), ""
    return spec, ""


def _identity(config: TrainConfig) -> dict:
    return config.model_dump(mode="json", exclude=set(RESUMABLE_CHANGES))


class _Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        store = open_store(config.store, endpoint_url=config.endpoint_url)
        self.store = store
        self.release = Release.open(store, config.release)
        self.index = self.release.index().to_pylist()
        manifest = self.release.manifest().to_pylist()
        self.stats = domain_stats(manifest)
        self.run = RunDir(run_store(store, config.run))
        self.device = _device(config.device)
        self.checkpoint = None
        spec, self.curriculum_note = _curriculum(config, self.stats)
        config = self.config = config.model_copy(update={"curriculum": spec})  # saved and compared inline
        if config.resume:
            self.checkpoint = self.run.load_checkpoint()
            if self.checkpoint is None:
                raise RunError(f"nothing to resume: no checkpoint under {self.run.store.uri}")
            saved = _identity(config_from_dict(self.checkpoint["config"], source="the run's saved config"))
            changed = sorted(k for k, v in _identity(config).items() if saved.get(k) != v)
            if changed:
                raise RunError(f"run {config.run!r} was started with other settings for {changed}; a resumed run "
                               f"may change only {sorted(RESUMABLE_CHANGES)}")
            self.schedule = Schedule.from_dict(self.checkpoint["schedule"])
            self.vocab = CharVocab.from_json(self.checkpoint["vocab"])
        else:
            if self.run.started():
                raise RunError(f"run {config.run!r} already exists at {self.run.store.uri}; pass --resume to continue "
                               "it, or choose another run name")
            self.schedule = resolve(spec, self.stats, release=config.release, max_steps=config.max_steps,
                                    max_hours=config.max_hours)
            texts = [r["text"] for r in manifest if r["decision"] == "keep" and r["split"] == "train"]
            self.vocab = CharVocab.from_texts(texts)
            self.run.put_json("config.json", config.model_dump(mode="json"))
            note = f": {self.curriculum_note}" if self.curriculum_note else ""
            self.run.store.put_bytes("curriculum.yaml", (
                f"# curriculum {spec.name!r} as given{note}\n" + curriculum_yaml(spec)
                + "# resolved against the release and the run's budget:\n"
                + yaml.safe_dump({"schedule": self.schedule.to_dict()}, sort_keys=False)).encode())
            self.run.store.put_bytes("vocab.json", self.vocab.to_json().encode())
        self.train_shards = [r for r in self.index if r["split"] == "train" and r["domain"] in self.schedule.domains]

    # ------------------------------------------------------------------ set-up

    def _model(self):
        torch.manual_seed(self.config.seed)
        random.seed(self.config.seed)
        np.random.seed(self.config.seed % 2**32)
        model = CTCModel(self.config.model, len(self.vocab)).to(self.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.config.lr, betas=(0.9, 0.98), eps=1e-9,
                                      weight_decay=self.config.weight_decay)
        return model, optimizer

    def _eval_sets(self) -> tuple[list[EvalSet], list[dict], dict]:
        sets, missing, corrupt = [], [], {}
        domains = sorted({r["domain"] for r in self.index} | set(self.schedule.domains))
        for split in self.config.eval_splits:
            for domain in domains:
                eval_set = EvalSet(store=self.release.store, shards=self.index, split=split, domain=domain,
                                   max_samples=self.config.eval_max_samples, seed=self.config.seed,
                                   fail_on_corrupt=self.config.fail_on_corrupt_shard,
                                   spool_bytes=self.config.spool_bytes)
                corrupt.update(eval_set.corrupt)
                if eval_set.items:
                    sets.append(eval_set)
                else:
                    missing.append({"domain": domain, "split": split})
        if missing:
            log.warning("no evaluation data for %s", ", ".join(f"{m['domain']}/{m['split']}" for m in missing))
        return sets, missing, corrupt

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        try:
            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            torch.use_deterministic_algorithms(True, warn_only=True)
            return self._fit()
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    def _fit(self) -> TrainResult:
        config, device = self.config, self.device
        model, optimizer = self._model()
        use_amp = config.amp and device.type == "cuda"
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

        def autocast():
            return torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext()

        augment = SpecAugment(freq_masks=config.spec_augment.freq_masks, freq_width=config.spec_augment.freq_width,
                              time_masks=config.spec_augment.time_masks, time_width=config.spec_augment.time_width)
        step, audio_seconds, wall_base, device_seconds, data_wait, eval_seconds = 0, 0.0, 0.0, 0.0, 0.0, 0.0
        states: dict[int, dict] = {}
        counts: dict = defaultdict(lambda: defaultdict(lambda: {"samples": 0, "seconds": 0.0}))
        weight_sums: dict = defaultdict(lambda: defaultdict(float))
        steps_in_phase: dict = defaultdict(int)
        metrics: list[dict] = []
        data_position = None
        if self.checkpoint is not None:
            ck = self.checkpoint
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            if ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            step, audio_seconds = ck["step"], ck["audio_seconds"]
            wall_base, device_seconds = ck["wall_seconds"], ck["device_seconds"]
            data_wait, eval_seconds = ck["data_wait_seconds"], ck["eval_seconds"]
            data_position = ck["data"]
            states = {int(k): v for k, v in data_position["states"].items()}
            for phase, by_domain in ck["counts"].items():
                for domain, value in by_domain.items():
                    counts[phase][domain] = dict(value)
            for phase, sums in ck["weight_sums"].items():
                weight_sums[phase].update(sums)
            steps_in_phase.update(ck["steps_in_phase"])
            metrics = [r for r in self.run.get_rows("metrics.parquet") if r["step"] <= step]
            self.run.drop_samples_after(step)
            log.info("resuming run %s at step %d (%.3f h of audio seen)", config.run, step, audio_seconds / 3600)

        dataset = StreamingDataset(
            store_uri=config.store, endpoint_url=config.endpoint_url, release=config.release, shards=self.train_shards,
            schedule=self.schedule, vocab=self.vocab, n_mels=config.model.n_mels, seed=config.seed,
            batch_seconds=config.batch_seconds, shuffle_buffer=config.shuffle_buffer,
            fail_on_corrupt=config.fail_on_corrupt_shard, spool_bytes=config.spool_bytes)
        dataset.load_position(data_position)
        workers = config.num_workers
        loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
                            prefetch_factor=4 if workers else None)

        eval_sets, eval_missing, eval_corrupt = None, [], {}
        logmel = LogMel(config.model.n_mels)
        last_eval: list[dict] = []
        last_eval_step = None
        last_checkpoint = self.run.store.url(f"checkpoints/step-{step:08d}.pt") if self.checkpoint else None
        sample_rows: list[dict] = []
        interval: dict = defaultdict(lambda: {"loss": 0.0, "samples": 0, "seconds": 0.0})
        if self.checkpoint is not None:
            interval.update({k: dict(v) for k, v in self.checkpoint["interval"].items()})
        t_start = time.perf_counter()

        def wall() -> float:
            return wall_base + time.perf_counter() - t_start

        def done() -> bool:
            return ((config.max_steps is not None and step >= config.max_steps)
                    or (config.max_hours is not None and audio_seconds / 3600 >= config.max_hours))

        def common(**row) -> dict:
            return {"step": step, "audio_hours": audio_seconds / 3600, "wall_seconds": wall(),
                    "device_seconds": device_seconds, "phase": None, "samples": None, "seconds": None,
                    "loss": None, "cer": None, "wer": None, "lr": None, "split": None, **row}

        def run_eval():
            nonlocal eval_sets, eval_missing, eval_corrupt, last_eval, last_eval_step, eval_seconds
            t0 = time.perf_counter()
            if eval_sets is None:
                eval_sets, eval_missing, eval_corrupt = self._eval_sets()
            last_eval = evaluate(model, eval_sets, vocab=self.vocab, logmel=logmel, device=device,
                                 batch_seconds=config.batch_seconds, autocast=autocast if use_amp else None)
            last_eval_step = step
            eval_seconds += time.perf_counter() - t0
            for row in last_eval:
                metrics.append(common(kind="eval", split=row["split"], domain=row["domain"], samples=row["samples"],
                                      seconds=row["seconds"], loss=row["loss"], cer=row["cer"], wer=row["wer"]))
            summary = ", ".join(f"{r['domain']}/{r['split']} CER {r['cer']:.3f}" for r in last_eval
                                if r["cer"] is not None)
            log.info("step %d eval: %s", step, summary or "no evaluation data")

        def save():
            nonlocal last_checkpoint
            if config.log_samples:
                self.run.put_samples(sample_rows, SAMPLES)
                sample_rows.clear()
            self.run.put_table("metrics.parquet", metrics, METRICS)
            payload = {
                "format": 1, "step": step, "audio_seconds": audio_seconds, "wall_seconds": wall(),
                "device_seconds": device_seconds, "data_wait_seconds": data_wait, "eval_seconds": eval_seconds,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "data": StreamingDataset.position(step, max(workers, 1), 0, states),
                "counts": {p: {d: dict(v) for d, v in by.items()} for p, by in counts.items()},
                "weight_sums": {p: dict(s) for p, s in weight_sums.items()},
                "steps_in_phase": dict(steps_in_phase), "interval": {k: dict(v) for k, v in interval.items()},
                "config": self.config.model_dump(mode="json"), "schedule": self.schedule.to_dict(),
                "vocab": self.vocab.to_json(), "curriculum_note": self.curriculum_note,
            }
            last_checkpoint = self.run.save_checkpoint(step, payload, keep=config.keep_checkpoints)
            log.info("step %d: checkpoint %s", step, last_checkpoint)

        model.train()
        if not done():
            t_wait = time.perf_counter()
            for batch in loader:
                data_wait += time.perf_counter() - t_wait
                if batch["index"] != step:
                    raise RuntimeError(f"data stream out of order: batch {batch['index']} arrived for step {step}")
                phase = self.schedule.phases[batch["phase"]].name
                _, weights = self.schedule.at(batch["position"])
                torch.manual_seed(step_seed(config.seed, step))
                t0 = time.perf_counter()
                feats = batch["feats"].to(device, non_blocking=True)
                lengths = batch["feat_lengths"].to(device)
                if config.spec_augment.enabled:
                    feats = augment(feats)
                lr = lr_at(step, peak=config.lr, warmup=config.warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast():
                    log_probs, out_lengths = model(feats, lengths)
                per_sample = ctc_losses(log_probs, out_lengths, batch["targets"].to(device),
                                        batch["target_lengths"].to(device))
                loss = per_sample.mean()
                if not torch.isfinite(loss) and not scaler.is_enabled():
                    raise RuntimeError(f"step {step}: the loss is {loss.item()} (keys {batch['keys'][:4]} ...)")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                per_sample = per_sample.detach().cpu().tolist()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                device_seconds += time.perf_counter() - t0

                step += 1
                audio_seconds += sum(batch["durations"])
                states[batch["worker"]] = json.loads(batch["state"])
                steps_in_phase[phase] += 1
                for domain, w in weights.items():
                    weight_sums[phase][domain] += w
                for key, domain, seconds, value in zip(batch["keys"], batch["domains"], batch["durations"], per_sample):
                    counts[phase][domain]["samples"] += 1
                    counts[phase][domain]["seconds"] += seconds
                    for name in ("all", domain):
                        interval[name]["loss"] += value
                        interval[name]["samples"] += 1
                        interval[name]["seconds"] += seconds
                    if config.log_samples:
                        sample_rows.append({"step": step, "key": key, "domain": domain, "phase": phase,
                                            "seconds": seconds})
                finished = done()
                if step % config.log_every == 0 or finished:
                    for name, acc in sorted(interval.items()):
                        metrics.append(common(kind="train", split="train", domain=name, phase=phase,
                                              samples=acc["samples"], seconds=acc["seconds"],
                                              loss=acc["loss"] / acc["samples"], lr=lr))
                    log.info("step %d [%s] loss %.3f lr %.2e, %.3f h audio, %.1f audio s/s", step, phase,
                             interval["all"]["loss"] / interval["all"]["samples"], lr, audio_seconds / 3600,
                             audio_seconds / max(wall(), 1e-9))
                    interval.clear()
                if step % config.eval_every == 0 or finished:
                    run_eval()
                if step % config.checkpoint_every == 0 or finished:
                    save()
                if finished:
                    break
                t_wait = time.perf_counter()
        if last_eval_step != step:
            run_eval()
        if last_checkpoint is None:
            save()
        self.run.put_table("metrics.parquet", metrics, METRICS)
        return self._finish(model, step, audio_seconds, wall(), device_seconds, data_wait, eval_seconds, states,
                            counts, weight_sums, steps_in_phase, metrics, last_eval, last_eval_step, eval_missing,
                            eval_corrupt, last_checkpoint)

    def _finish(self, model, step, audio_seconds, wall_seconds, device_seconds, data_wait, eval_seconds, states,
                counts, weight_sums, steps_in_phase, metrics, last_eval, last_eval_step, eval_missing, eval_corrupt,
                last_checkpoint) -> TrainResult:
        corrupt: dict[str, int] = {}
        filtered = too_long = 0
        for state in states.values():
            for url, n in state["corrupt"].items():
                corrupt[url] = corrupt.get(url, 0) + n
            too_long += state["too_long"]
            filtered += sum(s["filtered"] for s in state["streams"].values())
        realised = report_mod.realised_table(counts)
        schedule = self.schedule.to_dict()
        samples = sum(v["samples"] for by in realised.values() for v in by.values())
        summary = {
            "run": self.config.run, "release": self.config.release, "store": self.store.uri, "steps": step,
            "model": {"parameters": parameter_count(model), "vocab_size": len(self.vocab),
                      **self.config.model.model_dump()},
            "curriculum": {"name": schedule["name"], "unit": schedule["unit"], "domains": schedule["domains"],
                           "schedule": schedule["phases"],
                           "phases": report_mod.planned_phases(schedule, steps_in_phase, weight_sums)},
            "curriculum_note": self.curriculum_note,
            "realised": realised,
            "final_eval": last_eval, "final_eval_step": last_eval_step, "eval_missing": eval_missing,
            "compute": {
                "device": _device_name(self.device), "device_seconds": device_seconds,
                "device_hours": device_seconds / 3600, "wall_seconds": wall_seconds, "data_wait_seconds": data_wait,
                "eval_seconds": eval_seconds, "audio_hours": audio_seconds / 3600, "samples": samples,
                "audio_seconds_per_device_second": audio_seconds / device_seconds if device_seconds else 0.0,
                "audio_seconds_per_wall_second": audio_seconds / wall_seconds if wall_seconds else 0.0,
            },
            "data": {"corrupt_shards": corrupt, "eval_corrupt_shards": eval_corrupt, "filtered": filtered,
                     "too_long": too_long},
            "config": self.config.model_dump(mode="json"),
        }
        files = report_mod.write_report(self.run, summary, metrics)
        return TrainResult(run=self.config.run, run_url=self.run.store.uri, steps=step,
                           audio_hours=audio_seconds / 3600, wall_seconds=wall_seconds, device_seconds=device_seconds,
                           device=summary["compute"]["device"], final_eval=last_eval, realised=realised,
                           corrupt_shards=corrupt, checkpoint_url=last_checkpoint, report_url=files["report.md"],
                           files=files)


def train(config: TrainConfig | dict) -> TrainResult:
    """Run (or resume) one training run; see :class:`training.config.TrainConfig`."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig or a dict, got {type(config).__name__}")
    return _Trainer(config).fit()
