"""The one config of a training run (pydantic, unknown keys rejected); no torch needed."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corpus.schema import SPLITS, validate_name
from training.curriculum import BUILTIN, CurriculumSpec, load_curriculum


class ModelConfig(BaseModel):
    """A conv-subsampling front end (4x in time) and a torchaudio Conformer, CTC over characters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_mels: int = Field(default=80, ge=16, le=256)
    subsample_channels: int = Field(default=32, ge=4)
    d_model: int = Field(default=144, ge=16)
    num_layers: int = Field(default=4, ge=1)
    num_heads: int = Field(default=4, ge=1)
    ffn_dim: int = Field(default=576, ge=16)
    conv_kernel: int = Field(default=15, ge=3)
    dropout: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self):
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of num_heads ({self.num_heads})")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        return self


class SpecAugmentConfig(BaseModel):
    """SpecAugment-style masking of training features (torchaudio FrequencyMasking / TimeMasking)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    freq_masks: int = Field(default=2, ge=0)
    freq_width: int = Field(default=15, ge=1, description="widest frequency mask (mel bins)")
    time_masks: int = Field(default=2, ge=0)
    time_width: int = Field(default=40, ge=1, description="widest time mask (10 ms frames)")


# Fields a resumed run may change: they decide when to stop, where it runs and what is logged,
# not which samples are trained on or how.
RESUMABLE_CHANGES = frozenset({
    "max_steps", "max_hours", "resume", "device", "endpoint_url", "log_every", "eval_every", "checkpoint_every",
    "keep_checkpoints", "eval_max_samples", "eval_splits", "fail_on_corrupt_shard", "threads", "spool_bytes",
    "log_samples", "amp", "dist_timeout_s",
})


class TrainConfig(BaseModel):
    """Everything a training run needs; ``train(config)`` validates nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = Field(min_length=1, description="local directory or s3://bucket/prefix holding releases/ and runs/")
    release: str
    run: str
    endpoint_url: str | None = None
    curriculum: str | CurriculumSpec = Field(
        default="default", description="'default', 'uniform', a curriculum YAML file, or the curriculum itself")
    clean_domains: list[str] | None = Field(
        default=None, description="domains the default curriculum starts on (default: chosen from the release)")
    max_steps: int | None = Field(default=None, gt=0)
    max_hours: float | None = Field(default=None, gt=0, description="stop after this many hours of audio trained on")
    resume: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=True, description="mixed precision on CUDA (bf16 where supported, else fp16)")
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default on CPU: the cores "
                                                                "left after the DataLoader workers, at least 1)")
    dist_timeout_s: float = Field(default=1800.0, gt=0, description="with several ranks: how long a collective "
                                                                    "waits for a rank before the run fails")

    batch_seconds: float = Field(default=60.0, gt=0, description="audio seconds per batch (dynamic batching)")
    shuffle_buffer: int = Field(default=256, ge=1, description="samples held per domain stream for shuffling")
    num_workers: int = Field(default=1, ge=0, description="DataLoader worker processes")
    spool_bytes: int = Field(default=64 << 20, ge=0, description="shards up to this size are verified in memory, "
                                                                 "larger ones in a local temp file")
    fail_on_corrupt_shard: bool = Field(default=False, description="stop on a shard failing its sha256 "
                                                                   "(default: skip it, warn, count it)")

    lr: float = Field(default=2e-3, gt=0)
    warmup_steps: int = Field(default=200, ge=1)
    weight_decay: float = Field(default=0.01, ge=0)
    grad_clip: float = Field(default=5.0, gt=0)
    model: ModelConfig = ModelConfig()
    spec_augment: SpecAugmentConfig = SpecAugmentConfig()

    log_every: int = Field(default=10, ge=1)
    eval_every: int = Field(default=200, ge=1)
    checkpoint_every: int = Field(default=200, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    eval_splits: list[Literal["train", "validation", "test"]] = Field(default_factory=lambda: ["validation", "test"],
                                                                      min_length=1)
    eval_max_samples: int = Field(default=200, ge=1, description="per domain and split")
    log_samples: bool = Field(default=True, description="write every trained sample's key per step under samples/")

    @model_validator(mode="after")
    def _check(self):
        validate_name("release", self.release)
        validate_name("run", self.run)
        if self.max_steps is None and self.max_hours is None:
            raise ValueError("give max_steps or max_hours (or both: the run stops at the first reached)")
        if isinstance(self.curriculum, str) and self.curriculum not in BUILTIN and not Path(self.curriculum).is_file():
            raise ValueError(f"curriculum {self.curriculum!r} is neither {' nor '.join(BUILTIN)} nor an existing file")
        if len(set(self.eval_splits)) != len(self.eval_splits) or not set(self.eval_splits) <= set(SPLITS):
            raise ValueError(f"eval_splits must be distinct names among {list(SPLITS)}, got {self.eval_splits}")
        return self

    def curriculum_spec(self) -> CurriculumSpec | str:
        """The curriculum itself, read from its file if one was named; a built-in's name as is."""
        if isinstance(self.curriculum, CurriculumSpec) or self.curriculum in BUILTIN:
            return self.curriculum
        return load_curriculum(self.curriculum)


def load_config(path: str | Path, **overrides) -> TrainConfig:
    """A TrainConfig from a YAML file, with ``overrides`` (e.g. from the command line) on top."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training config is a mapping of fields, got {type(data).__name__}")
    return config_from_dict({**data, **overrides}, source=str(path))


def config_from_dict(data: dict, *, source: str = "training config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            message = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
            lines.append(f"  {where}: {message}")
        raise ValueError(f"{source} is not valid:\n" + "\n".join(lines)) from None
