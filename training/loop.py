"""``train(config)``: stream a release, follow the curriculum, train the CTC model, evaluate, summarise.

Called by ``stt-corpus train`` and by flows. Everything a resume needs is in the latest
checkpoint: model, optimiser (and AMP scaler), step, audio seen, the resolved curriculum, the
vocabulary and each DataLoader worker's stream position. Randomness of a step (SpecAugment,
dropout) comes from a generator seeded by ``(seed, step)`` and the learning rate is a function
of the step alone, so a run resumed from a checkpoint trains on the same samples in the same
order and ends with the same weights as one that never stopped (same device and workers).

**Ranks.** With ``WORLD_SIZE`` > 1 (``train --nproc N`` or ``torchrun``) every rank runs this loop
on its own reader slots and the model is wrapped in ``DistributedDataParallel`` (gloo on CPU,
NCCL on CUDA). Each rank's stream is endless (a domain's epochs follow each other, every rank
taking an equal share of each epoch's samples, within one), so no rank runs dry. Before every
step the ranks sum ``[has a batch, its audio seconds]`` in one all-reduce: the audio count that
``max_hours`` and an hours curriculum see is the sum over ranks, and if any rank had no batch
(a finite stream), all stop at that same step, so no collective ever waits on a rank that
left. Every rank therefore takes exactly the same number of steps. Rank 0 evaluates, writes
metrics, the per-step sample log (all ranks' samples, gathered at each checkpoint) and the
checkpoints, which carry every rank's stream position. ``--resume`` needs the same world size
and DataLoader workers; with another it refuses, naming both (the saved positions are per
reader slot; re-dealing a half-read epoch to another number of slots is not implemented).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
import yaml
from torch.utils.data import DataLoader

from corpus.release import Release
from corpus.store import open_store
from training.config import RESUMABLE_CHANGES, TrainConfig, config_from_dict
from training.curriculum import (CurriculumSpec, Schedule, curriculum_yaml, default_curriculum, domain_stats,
                                 resolve, uniform_curriculum)
from training.dataset import EvalSet, StreamingDataset, data_loader
from training.distributed import Dist, from_env as dist_from_env, init as dist_init, shutdown as dist_shutdown
from training.evaluate import ctc_losses, evaluate
from training.features import CharVocab, LogMel, SpecAugment
from training.model import CTCModel, parameter_count
from training.rundir import RunDir, RunError, run_store
from training.summary import SUMMARY_FILE, planned_phases, realised_table

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
                     pa.field("phase", pa.string()), pa.field("seconds", pa.float64()),
                     pa.field("rank", pa.int32()), pa.field("epoch", pa.int32())])  # epoch of the sample's domain


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
    report_url: str | None  # filled by the caller that writes the report (presentation.training_report)
    world_size: int = 1
    rank: int = 0
    first_eval: list[dict] = field(default_factory=list)  # the run's first evaluation (with its step)
    final_eval_step: int | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def lr_at(step: int, *, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then inverse square-root decay."""
    n = step + 1
    return peak * min(n / warmup, (warmup / n) ** 0.5)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    key = f"{seed}:step:{step}" + (f":rank:{rank}" if rank else "")  # each rank masks its own batch its own way
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1


def _device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", local_rank) if choice == "cuda" else torch.device(choice)


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


@dataclass
class Progress:
    """Where a run stands: what a checkpoint carries besides model and optimiser (all JSON-able)."""

    step: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0  # up to the checkpoint this run resumed from
    device_seconds: float = 0.0
    data_wait_seconds: float = 0.0
    eval_seconds: float = 0.0
    worker_states: dict = field(default_factory=dict)  # logical DataLoader worker -> its stream position
    counts: dict = field(default_factory=dict)  # phase -> domain -> {"samples", "seconds"}
    weight_sums: dict = field(default_factory=dict)  # phase -> domain -> sum of planned weights over its steps
    steps_in_phase: dict = field(default_factory=dict)
    interval: dict = field(default_factory=dict)  # "all" | domain -> loss sums since the last train row

    def record(self, batch: dict, phase: str, weights: dict[str, float], losses: list[float], *,
               audio_seconds: float, rank: int = 0) -> list[dict]:
        """Count one trained batch (``audio_seconds``: of this step on all ranks); returns its per-sample rows."""
        self.step += 1
        self.audio_seconds += audio_seconds
        self.worker_states[batch["worker"]] = json.loads(batch["state"])
        self.steps_in_phase[phase] = self.steps_in_phase.get(phase, 0) + 1
        sums = self.weight_sums.setdefault(phase, {})
        for domain, w in weights.items():
            sums[domain] = sums.get(domain, 0.0) + w
        rows = []
        for key, domain, seconds, loss, epoch in zip(batch["keys"], batch["domains"], batch["durations"], losses,
                                                     batch["epochs"]):
            count = self.counts.setdefault(phase, {}).setdefault(domain, {"samples": 0, "seconds": 0.0})
            count["samples"] += 1
            count["seconds"] += seconds
            for name in ("all", domain):
                acc = self.interval.setdefault(name, {"loss": 0.0, "samples": 0, "seconds": 0.0})
                acc["loss"] += loss
                acc["samples"] += 1
                acc["seconds"] += seconds
            rows.append({"step": self.step, "key": key, "domain": domain, "phase": phase, "seconds": seconds,
                         "rank": rank, "epoch": epoch})
        return rows

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "worker_states": {str(k): v for k, v in self.worker_states.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Progress":
        return cls(**{**data, "worker_states": {int(k): v for k, v in data["worker_states"].items()}})

    def data_problems(self) -> dict:
        """Corrupt shard skips, filtered samples and too-long samples over all workers' streams."""
        corrupt: dict[str, int] = {}
        filtered = too_long = 0
        for state in self.worker_states.values():
            for url, n in state["corrupt"].items():
                corrupt[url] = corrupt.get(url, 0) + n
            too_long += state["too_long"]
            filtered += sum(s["filtered"] for s in state["streams"].values())
        return {"corrupt_shards": corrupt, "filtered": filtered, "too_long": too_long}


class _Trainer:
    def __init__(self, config: TrainConfig, dist: Dist | None = None):
        self.config = config
        self.dist = dist = dist or Dist()
        store = open_store(config.store, endpoint_url=config.endpoint_url)
        self.store = store
        self.release = Release.open(store, config.release)
        self.index = self.release.index().to_pylist()
        manifest = self.release.manifest().to_pylist()
        self.stats = domain_stats(manifest)
        self.run = RunDir(run_store(store, config.run))
        self.device = _device(config.device, dist.local_rank)
        spec, self.curriculum_note = _curriculum(config, self.stats)
        config = self.config = config.model_copy(update={"curriculum": spec})  # saved and compared inline
        self.checkpoint = None
        if config.resume:
            if not self.run.store.exists("config.json"):
                raise RunError(f"nothing to resume: no run {config.run!r} at {self.run.store.uri}")
            saved = _identity(config_from_dict(self.run.get_json("config.json"), source="the run's saved config"))
            changed = sorted(k for k, v in _identity(config).items() if saved.get(k) != v)
            if changed:
                raise RunError(f"run {config.run!r} was started with other settings for {changed}; a resumed run "
                               f"may change only {sorted(RESUMABLE_CHANGES)}")
            self.checkpoint = self.run.load_checkpoint()
            if self.checkpoint is None:
                log.warning("run %s stopped before its first checkpoint: starting it again from step 0", config.run)
            else:
                self._check_world(self.checkpoint)
        elif self.run.started():
            raise RunError(f"run {config.run!r} already exists at {self.run.store.uri}; pass --resume to continue "
                           "it, or choose another run name")
        dist.barrier()  # every rank passed the checks above before rank 0 writes anything
        if self.checkpoint is not None:
            self.schedule = Schedule.from_dict(self.checkpoint["schedule"])
            self.vocab = CharVocab.from_json(self.checkpoint["vocab"])
        else:
            self.schedule = resolve(spec, self.stats, release=config.release, max_steps=config.max_steps,
                                    max_hours=config.max_hours)
            texts = [r["text"] for r in manifest if r["decision"] == "keep" and r["split"] == "train"]
            self.vocab = CharVocab.from_texts(texts)
            if dist.main:
                self.run.put_json("config.json", config.model_dump(mode="json"))
                note = f": {self.curriculum_note}" if self.curriculum_note else ""
                self.run.store.put_bytes("curriculum.yaml", (
                    f"# curriculum {spec.name!r} as given{note}\n" + curriculum_yaml(spec)
                    + "# resolved against the release and the run's budget:\n"
                    + yaml.safe_dump({"schedule": self.schedule.to_dict()}, sort_keys=False)).encode())
                self.run.store.put_bytes("vocab.json", self.vocab.to_json().encode())
        self.train_shards = [r for r in self.index if r["split"] == "train" and r["domain"] in self.schedule.domains]

    def _check_world(self, checkpoint: dict) -> None:
        """A checkpoint's data positions are per reader slot: resuming needs the same ranks x workers."""
        saved_world = checkpoint.get("world_size", 1)
        saved_workers = checkpoint["data"]["workers"]
        workers = max(self.config.num_workers, 1)
        if (saved_world, saved_workers) != (self.dist.world_size, workers):
            raise RunError(
                f"run {self.config.run!r} was checkpointed at step {checkpoint['step']} with {saved_world} rank(s) x "
                f"{saved_workers} DataLoader worker(s); this resume has {self.dist.world_size} x {workers}. Each "
                "reader slot (rank x worker) saved its own place in its own share of the current epoch, and those "
                "shares are cut by the number of slots: with another number the samples already seen in this "
                f"pass could not be told apart from the rest. Resume with --nproc {saved_world} and "
                f"--num-workers {saved_workers}, or start a new run from the checkpoint's weights")

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

    def _loader(self, progress: Progress) -> DataLoader:
        config = self.config
        dataset = StreamingDataset(
            store_uri=config.store, endpoint_url=config.endpoint_url, release=config.release, shards=self.train_shards,
            schedule=self.schedule, vocab=self.vocab, n_mels=config.model.n_mels, seed=config.seed,
            batch_seconds=config.batch_seconds, shuffle_buffer=config.shuffle_buffer, rank=self.dist.rank,
            world_size=self.dist.world_size, fail_on_corrupt=config.fail_on_corrupt_shard,
            spool_bytes=config.spool_bytes)
        if progress.step:
            dataset.load_position(self._data_position(progress))
        workers = config.num_workers
        return data_loader(dataset, num_workers=workers, pin_memory=self.device.type == "cuda",
                           prefetch_factor=4 if workers else None)

    def _data_position(self, progress: Progress) -> dict:
        return StreamingDataset.position(progress.step, max(self.config.num_workers, 1), self.dist.rank,
                                         progress.worker_states)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        try:
            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            elif self.device.type == "cpu":
                # leave the DataLoader workers their cores: OpenMP threads that share a core with another
                # busy process spin at every barrier, and steps get up to ten times slower
                # and the other ranks on this machine theirs
                cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
                share = (cores or 1) // self.dist.local_world_size
                torch.set_num_threads(max(1, share - self.config.num_workers))
            torch.use_deterministic_algorithms(True, warn_only=True)
            return self._fit()
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else nullcontext()

    def _fit(self) -> TrainResult:
        config, device = self.config, self.device
        self.model, self.optimizer = self._model()
        self.use_amp = config.amp and device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        spec = config.spec_augment
        self.augment = SpecAugment(freq_masks=spec.freq_masks, freq_width=spec.freq_width,
                                   time_masks=spec.time_masks, time_width=spec.time_width)
        self.logmel = LogMel(config.model.n_mels)
        self.metrics: list[dict] = []
        self.sample_rows: list[dict] = []
        self.eval_sets = None
        self.eval_missing, self.eval_corrupt, self.last_eval, self.last_eval_step = [], {}, [], None
        self.last_checkpoint = None
        progress = Progress()
        if self.checkpoint is not None:
            ck = self.checkpoint
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            if ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
            mine = ck["ranks"][self.dist.rank] if "ranks" in ck else {"progress": ck["progress"], "data": ck["data"]}
            progress = Progress.from_dict({**mine["progress"], "worker_states": mine["data"]["states"]})
            self.metrics = [r for r in self.run.get_rows("metrics.parquet") if r["step"] <= progress.step]
            if self.dist.main:
                self.run.drop_samples_after(progress.step)
            self.last_checkpoint = self.run.store.url(f"checkpoints/step-{progress.step:08d}.pt")
            log.info("resuming run %s at step %d (%.3f h of audio seen)", config.run, progress.step,
                     progress.audio_seconds / 3600)
        self.t_start, self.wall_base = time.perf_counter(), progress.wall_seconds

        self.ddp = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids, output_device=ids[0] if ids else None)
        self.model.train()
        if not self._done(progress):
            t_wait = time.perf_counter()
            batches = iter(self._loader(progress))
            while True:
                batch = next(batches, None)
                progress.data_wait_seconds += time.perf_counter() - t_wait
                have, seconds = self.dist.all_reduce_sum([batch is not None,
                                                          sum(batch["durations"]) if batch is not None else 0.0])
                if have < self.dist.world_size:  # some rank's stream has ended: every rank stops here
                    if batch is not None or have:
                        log.info("step %d: a rank's stream ended; all %d ranks stop together", progress.step,
                                 self.dist.world_size)
                    break
                self._step(batch, progress, seconds)
                finished = self._done(progress)
                if progress.step % config.log_every == 0 or finished:
                    self._log_train(progress)
                if progress.step % config.eval_every == 0 or finished:
                    self._evaluate(progress)
                if progress.step % config.checkpoint_every == 0 or finished:
                    self._save(progress)
                if finished:
                    break
                t_wait = time.perf_counter()
        if self.last_eval_step != progress.step:
            self._evaluate(progress)
        if self.last_checkpoint is None:
            self._save(progress)
        if self.dist.main:
            self.run.put_table("metrics.parquet", self.metrics, METRICS)
        return self._finish(progress)

    def _wall(self) -> float:
        return self.wall_base + time.perf_counter() - self.t_start

    def _done(self, progress: Progress) -> bool:
        config = self.config
        return ((config.max_steps is not None and progress.step >= config.max_steps)
                or (config.max_hours is not None and progress.audio_seconds / 3600 >= config.max_hours))

    def _step(self, batch: dict, progress: Progress, audio_seconds: float) -> None:
        """One optimiser step on ``batch`` (``audio_seconds``: this step's audio on all ranks), then count it."""
        config, device, step = self.config, self.device, progress.step
        if batch["index"] != step:
            raise RuntimeError(f"data stream out of order: batch {batch['index']} arrived for step {step}")
        torch.manual_seed(step_seed(config.seed, step, self.dist.rank))  # SpecAugment, dropout: the step's function
        t0 = time.perf_counter()
        feats = batch["feats"].to(device, non_blocking=True)
        if config.spec_augment.enabled:
            feats = self.augment(feats)
        self.lr = lr_at(step, peak=config.lr, warmup=config.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        with self._autocast():
            log_probs, out_lengths = self.ddp(feats, batch["feat_lengths"].to(device))
        losses = ctc_losses(log_probs, out_lengths, batch["targets"].to(device), batch["target_lengths"].to(device))
        loss = losses.mean()
        if not torch.isfinite(loss) and not self.scaler.is_enabled():
            raise RuntimeError(f"step {step}: the loss is {loss.item()} (keys {batch['keys'][:4]} ...)")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        losses = losses.detach().cpu().tolist()  # waits for the device
        progress.device_seconds += time.perf_counter() - t0
        phase = self.last_phase = self.schedule.phases[batch["phase"]].name
        rows = progress.record(batch, phase, self.schedule.at(batch["position"])[1], losses,
                               audio_seconds=audio_seconds, rank=self.dist.rank)
        if config.log_samples:
            self.sample_rows.extend(rows)

    def _row(self, progress: Progress, at: float, **values) -> dict:
        return {"step": progress.step, "audio_hours": progress.audio_seconds / 3600, "wall_seconds": at,
                "device_seconds": progress.device_seconds, "phase": None, "samples": None, "seconds": None,
                "loss": None, "cer": None, "wer": None, "lr": None, "split": None, **values}

    def _log_train(self, progress: Progress) -> None:
        at = self._wall()
        phase = self.last_phase
        merged: dict = {}
        for interval in self.dist.gather(progress.interval):  # every rank's losses since the last row
            for name, acc in interval.items():
                into = merged.setdefault(name, {"loss": 0.0, "samples": 0, "seconds": 0.0})
                for k in into:
                    into[k] += acc[k]
        progress.interval.clear()
        if not self.dist.main:
            return
        for name, acc in sorted(merged.items()):
            self.metrics.append(self._row(progress, at, kind="train", split="train", domain=name, phase=phase,
                                          samples=acc["samples"], seconds=acc["seconds"],
                                          loss=acc["loss"] / acc["samples"], lr=self.lr))
        overall = merged.get("all")
        if overall:
            log.info("step %d [%s] loss %.3f lr %.2e, %.3f h audio, %.1f audio s/s", progress.step, phase,
                     overall["loss"] / overall["samples"], self.lr, progress.audio_seconds / 3600,
                     progress.audio_seconds / max(at, 1e-9))

    def _evaluate(self, progress: Progress) -> None:
        """Rank 0 evaluates (the others go on to the next step and wait for it in its all-reduce)."""
        if not self.dist.main:
            self.last_eval_step = progress.step
            return
        t0, at = time.perf_counter(), self._wall()
        if self.eval_sets is None:
            self.eval_sets, self.eval_missing, self.eval_corrupt = self._eval_sets()
        self.last_eval = evaluate(self.model, self.eval_sets, vocab=self.vocab, logmel=self.logmel, device=self.device,
                                  batch_seconds=self.config.batch_seconds, autocast=self._autocast)
        self.last_eval_step = progress.step
        progress.eval_seconds += time.perf_counter() - t0
        for row in self.last_eval:
            self.metrics.append(self._row(progress, at, kind="eval", split=row["split"], domain=row["domain"],
                                          samples=row["samples"], seconds=row["seconds"], loss=row["loss"],
                                          cer=row["cer"], wer=row["wer"]))
        summary = ", ".join(f"{r['domain']}/{r['split']} CER {r['cer']:.3f}" for r in self.last_eval
                            if r["cer"] is not None)
        log.info("step %d eval: %s", progress.step, summary or "no evaluation data")

    def _save(self, progress: Progress) -> None:
        """Samples and metrics first, then the checkpoint (its latest.json is the commit point).

        Every rank sends rank 0 its new sample rows and its progress (stream positions); rank 0
        writes them all, so a checkpoint resumes every rank.
        """
        state = progress.to_dict()
        state["wall_seconds"] = self._wall()
        del state["worker_states"]  # they are the data position
        mine = {"progress": state, "data": self._data_position(progress)}
        gathered = self.dist.gather((mine, self.sample_rows if self.config.log_samples else []))
        self.sample_rows = []
        self.last_checkpoint = self.run.store.url(f"checkpoints/step-{progress.step:08d}.pt")
        if not self.dist.main:
            return
        if self.config.log_samples:
            rows = sorted((r for _, part in gathered for r in part), key=lambda r: (r["step"], r["rank"]))
            self.run.put_samples(rows, SAMPLES)
        self.run.put_table("metrics.parquet", self.metrics, METRICS)
        payload = {
            "format": 2, "step": progress.step, "progress": state, "data": mine["data"],
            "world_size": self.dist.world_size, "ranks": [g[0] for g in gathered],
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "config": self.config.model_dump(mode="json"), "schedule": self.schedule.to_dict(),
            "vocab": self.vocab.to_json(), "curriculum_note": self.curriculum_note,
        }
        self.last_checkpoint = self.run.save_checkpoint(progress.step, payload, keep=self.config.keep_checkpoints)
        log.info("step %d: checkpoint %s", progress.step, self.last_checkpoint)

    def _finish(self, progress: Progress) -> TrainResult:
        wall_seconds, audio = self._wall(), progress.audio_seconds
        ranks = self.dist.gather({"counts": progress.counts, "device_seconds": progress.device_seconds,
                                  "data_wait_seconds": progress.data_wait_seconds,
                                  "problems": progress.data_problems()})
        counts: dict = {}
        for part in ranks:
            for phase, by_domain in part["counts"].items():
                for domain, c in by_domain.items():
                    into = counts.setdefault(phase, {}).setdefault(domain, {"samples": 0, "seconds": 0.0})
                    into["samples"] += c["samples"]
                    into["seconds"] += c["seconds"]
        device_seconds = sum(part["device_seconds"] for part in ranks)  # device time of all ranks together
        problems = {"corrupt_shards": {}, "filtered": 0, "too_long": 0}
        for part in ranks:
            for url, n in part["problems"]["corrupt_shards"].items():
                problems["corrupt_shards"][url] = problems["corrupt_shards"].get(url, 0) + n
            problems["filtered"] += part["problems"]["filtered"]
            problems["too_long"] += part["problems"]["too_long"]
        realised = realised_table(counts)
        schedule = self.schedule.to_dict()
        data = {**problems, "eval_corrupt_shards": self.eval_corrupt}
        if not self.dist.main:
            return TrainResult(run=self.config.run, run_url=self.run.store.uri, steps=progress.step,
                               audio_hours=audio / 3600, wall_seconds=wall_seconds, device_seconds=device_seconds,
                               device=_device_name(self.device), final_eval=[], realised=realised,
                               corrupt_shards=data["corrupt_shards"], checkpoint_url=self.last_checkpoint,
                               report_url=None, world_size=self.dist.world_size,
                               rank=self.dist.rank)
        summary = {
            "run": self.config.run, "release": self.config.release, "store": self.store.uri, "steps": progress.step,
            "model": {"parameters": parameter_count(self.model), "vocab_size": len(self.vocab),
                      **self.config.model.model_dump()},
            "curriculum": {"name": schedule["name"], "unit": schedule["unit"], "domains": schedule["domains"],
                           "schedule": schedule["phases"],
                           "phases": planned_phases(schedule, progress.steps_in_phase,
                                                    progress.weight_sums)},
            "curriculum_note": self.curriculum_note,
            "realised": realised,
            "final_eval": self.last_eval, "final_eval_step": self.last_eval_step, "eval_missing": self.eval_missing,
            "compute": {
                "device": _device_name(self.device), "ranks": self.dist.world_size, "device_seconds": device_seconds,
                "device_hours": device_seconds / 3600, "wall_seconds": wall_seconds,
                "data_wait_seconds": sum(part["data_wait_seconds"] for part in ranks),
                "eval_seconds": progress.eval_seconds,
                "audio_hours": audio / 3600,
                "samples": sum(v["samples"] for by in realised.values() for v in by.values()),
                "audio_seconds_per_device_second": audio / device_seconds if device_seconds else 0.0,
                "audio_seconds_per_wall_second": audio / wall_seconds if wall_seconds else 0.0,
            },
            "data": data,
            "config": self.config.model_dump(mode="json"),
        }
        self.run.put_json(SUMMARY_FILE, summary)
        files = {SUMMARY_FILE: self.run.store.url(SUMMARY_FILE)}
        evals = [r for r in self.metrics if r["kind"] == "eval"]
        first_step = min((r["step"] for r in evals), default=None)
        first_eval = [{k: r[k] for k in ("step", "domain", "split", "cer", "wer", "samples")}
                      for r in evals if r["step"] == first_step]
        return TrainResult(run=self.config.run, run_url=self.run.store.uri, steps=progress.step,
                           audio_hours=audio / 3600, wall_seconds=wall_seconds, device_seconds=device_seconds,
                           device=summary["compute"]["device"], final_eval=self.last_eval, realised=realised,
                           corrupt_shards=data["corrupt_shards"], checkpoint_url=self.last_checkpoint,
                           report_url=None, files=files, world_size=self.dist.world_size,
                           first_eval=first_eval, final_eval_step=self.last_eval_step)


def train(config: TrainConfig | dict) -> TrainResult:
    """Run (or resume) one training run; see :class:`training.config.TrainConfig`."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig or a dict, got {type(config).__name__}")
    dist = dist_from_env()
    if not dist.enabled:
        return _Trainer(config, dist).fit()
    cuda = _device(config.device, dist.local_rank).type == "cuda"
    dist_init(dist, cuda=cuda, timeout_s=config.dist_timeout_s)
    try:
        return _Trainer(config, dist).fit()
    finally:
        dist_shutdown()
