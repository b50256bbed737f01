"""Curriculum: a schedule of phases, each with a length, per-domain weights and sample filters.

A curriculum file (YAML) looks like::

    name: clean-first
    phases:
      - name: clean-short          # any label; shown in the report
        steps: 300                 # length: steps | hours (of audio trained on) | fraction (of the run's budget)
        weights: {audiobook: 3, phone: 1}   # relative; domains left out get 0
        filters: {max_duration: 6.0, min_confidence: -0.4}
      - name: widen
        steps: 300
        weights: hours             # "hours": proportional to each domain's training hours; "equal": the same for all
        interpolate: true          # weights move linearly from the previous phase's to these over the phase
      - name: all
        weights: hours             # the last phase may leave its length out: it runs to the end

Every phase uses the same length unit. ``filters.max_duration`` (seconds) and
``filters.min_confidence`` (minimum ``avg_logprob``) drop samples drawn while the phase is on;
samples without a confidence (reference-labelled releases) pass ``min_confidence``. Unknown
keys, negative weights, empty domain names and phases with no positive weight are errors.

:func:`resolve` checks a curriculum against a release (every weighted domain must have training
data, and every phase must leave each of its domains some sample) and turns it into a
:class:`Schedule` with absolute phase boundaries. This module needs no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

BUILTIN = ("default", "uniform")
WEIGHT_MODES = ("hours", "equal")


class CurriculumError(ValueError):
    """A curriculum is malformed or does not fit the release; the message says where."""


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_duration: float | None = Field(default=None, gt=0, description="drop samples longer than this (s)")
    min_confidence: float | None = Field(default=None, description="drop samples whose avg_logprob is below this")

    def accepts(self, meta: dict) -> bool:
        if self.max_duration is not None and meta["duration"] > self.max_duration:
            return False
        if self.min_confidence is not None:
            confidence = meta.get("avg_logprob")
            if confidence is not None and confidence < self.min_confidence:
                return False
        return True


class Phase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    steps: int | None = Field(default=None, gt=0)
    hours: float | None = Field(default=None, gt=0)
    fraction: float | None = Field(default=None, gt=0, le=1)
    weights: dict[str, float] | Literal["hours", "equal"]
    filters: Filters = Filters()
    interpolate: bool = False

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, weights):
        if isinstance(weights, str):
            return weights
        if not weights:
            raise ValueError("weights is empty: give at least one domain with a positive weight, or 'hours'")
        for domain, weight in weights.items():
            if not domain or not domain.strip():
                raise ValueError("weights has an empty domain name")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"domain {domain!r} has weight {weight}; weights must be finite and >= 0")
        if not any(w > 0 for w in weights.values()):
            raise ValueError(f"every weight is 0 ({weights}); at least one domain needs a positive weight")
        return weights

    @property
    def length(self) -> tuple[str, float] | None:
        for unit in ("steps", "hours", "fraction"):
            value = getattr(self, unit)
            if value is not None:
                return unit, float(value)
        return None


class CurriculumSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    phases: list[Phase] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_phases(self):
        units = set()
        for n, phase in enumerate(self.phases):
            given = [u for u in ("steps", "hours", "fraction") if getattr(phase, u) is not None]
            if len(given) > 1:
                raise ValueError(f"phase {phase.name!r}: give one length (steps, hours or fraction), not {given}")
            if not given and n < len(self.phases) - 1:
                raise ValueError(f"phase {phase.name!r}: only the last phase may leave its length out")
            units.update(given)
            if phase.interpolate and n == 0:
                raise ValueError(f"phase {phase.name!r}: the first phase has no previous phase to interpolate from")
        if len(units) > 1:
            raise ValueError(f"phases mix length units {sorted(units)}; use one of steps, hours or fraction throughout")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        return self


def parse_curriculum(data: dict, *, source: str = "curriculum") -> CurriculumSpec:
    try:
        return CurriculumSpec.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            message = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                message = "unknown key"
            lines.append(f"  {where}: {message}")
        raise CurriculumError(f"{source} is not a valid curriculum:\n" + "\n".join(lines)) from None


def load_curriculum(path: str | Path) -> CurriculumSpec:
    """Read and validate a curriculum YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CurriculumError(f"curriculum file {path} does not exist (or use 'default' or 'uniform')") from None
    except yaml.YAMLError as err:
        raise CurriculumError(f"curriculum file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise CurriculumError(f"curriculum file {path} must hold a mapping with 'phases', got {type(data).__name__}")
    return parse_curriculum(data, source=f"curriculum file {path}")


# --------------------------------------------------------------------------- against a release


@dataclass(frozen=True)
class DomainStats:
    """What the curriculum needs to know of one domain's training samples."""

    hours: float
    durations: tuple[float, ...]
    confidences: tuple[float | None, ...]

    def passing(self, filters: Filters) -> int:
        return sum(filters.accepts({"duration": d, "avg_logprob": c}) for d, c in zip(self.durations, self.confidences))


def domain_stats(manifest_rows: list[dict]) -> dict[str, DomainStats]:
    """Per-domain statistics of the kept training segments of a release manifest."""
    by_domain: dict[str, list[dict]] = {}
    for row in manifest_rows:
        if row["decision"] == "keep" and row["split"] == "train":
            by_domain.setdefault(row["domain"], []).append(row)
    return {d: DomainStats(hours=sum(r["end"] - r["start"] for r in rows) / 3600.0,
                           durations=tuple(r["end"] - r["start"] for r in rows),
                           confidences=tuple(r.get("avg_logprob") for r in rows))
            for d, rows in sorted(by_domain.items())}


CLEAN_NAMES = ("audiobook", "audiobooks", "read", "clean", "studio")


def pick_clean_domains(stats: dict[str, DomainStats]) -> tuple[list[str], str]:
    """The domain(s) the default curriculum starts on, and why they were chosen."""
    medians = {d: _median([c for c in s.confidences if c is not None]) for d, s in stats.items()}
    known = {d: m for d, m in medians.items() if m is not None}
    if known:
        best = max(known, key=lambda d: (known[d], d))
        return [best], f"highest median avg_logprob ({known[best]:.3f})"
    named = [d for d in stats if d.lower() in CLEAN_NAMES]
    if named:
        return named, "no confidences in the release (reference labels); chosen by domain name"
    return sorted(stats), "no confidences and no domain named as clean: all domains"


def default_curriculum(stats: dict[str, DomainStats],
                       clean_domains: list[str] | None = None) -> tuple[CurriculumSpec, str]:
    """The built-in schedule: short, confident, clean-domain samples first, then every domain.

    1. ``clean-short`` (first 20% of the run): only the clean domain(s), samples no longer than
       their median duration and (when the release has confidences) no less confident than
       the median ``avg_logprob`` of those short ones;
    2. ``widen`` (next 30%): weights move linearly to hours-proportional over all domains,
       samples up to the 90th percentile of duration;
    3. ``all``: hours-proportional, no filters.
    """
    if clean_domains:
        unknown = sorted(set(clean_domains) - set(stats))
        if unknown:
            raise CurriculumError(f"clean domains {unknown} have no training data; the release has {sorted(stats)}")
        clean, why = list(clean_domains), "given in the config"
    else:
        clean, why = pick_clean_domains(stats)
    pairs = [(d, c) for name in clean for d, c in zip(stats[name].durations, stats[name].confidences)]
    max_duration = _round_up(_median([d for d, _ in pairs]), 2)
    # the confidence median among the samples short enough, so both filters together keep some
    confidences = [c for d, c in pairs if d <= max_duration and c is not None]
    min_confidence = _round_down(_median(confidences), 4) if confidences else None
    every = sorted(d for s in stats.values() for d in s.durations)
    first = Filters(max_duration=max_duration, min_confidence=min_confidence)
    spec = CurriculumSpec(name="default", phases=[
        Phase(name="clean-short", fraction=0.2, weights={d: stats[d].hours for d in clean}, filters=first),
        Phase(name="widen", fraction=0.3, weights="hours", interpolate=True,
              filters=Filters(max_duration=_round_up(every[min(len(every) - 1, int(0.9 * len(every)))], 2))),
        Phase(name="all", weights="hours"),
    ])
    return spec, f"clean domain(s) {clean}: {why}"


def uniform_curriculum() -> CurriculumSpec:
    """The baseline: one phase, every domain in proportion to its training hours, no filters."""
    return CurriculumSpec(name="uniform", phases=[Phase(name="uniform", weights="hours")])


def _round_up(value: float, digits: int) -> float:
    """Round so that a filter at the result keeps ``value`` (a hair of float noise ignored)."""
    scale = 10**digits
    return math.ceil(value * scale - 1e-6) / scale


def _round_down(value: float, digits: int) -> float:
    scale = 10**digits
    return math.floor(value * scale + 1e-6) / scale


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True)
class ResolvedPhase:
    name: str
    start: float
    end: float  # math.inf for an open last phase
    weights: dict[str, float]  # every domain of the release, normalised to sum 1
    filters: Filters
    interpolate: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "start": self.start, "end": None if math.isinf(self.end) else self.end,
                "weights": self.weights, "filters": self.filters.model_dump(), "interpolate": self.interpolate}


@dataclass(frozen=True)
class Schedule:
    """A curriculum fixed against one release and budget: phases on an axis of steps or hours."""

    name: str
    unit: Literal["steps", "hours"]
    domains: tuple[str, ...]
    phases: tuple[ResolvedPhase, ...]

    def phase_index(self, position: float) -> int:
        for n, phase in enumerate(self.phases):
            if position < phase.end:
                return n
        return len(self.phases) - 1

    def at(self, position: float) -> tuple[int, dict[str, float]]:
        """(phase index, domain weights) at ``position`` (a step, or hours of audio trained on)."""
        n = self.phase_index(position)
        phase = self.phases[n]
        if not phase.interpolate or n == 0 or math.isinf(phase.end):
            return n, phase.weights
        t = min(1.0, max(0.0, (position - phase.start) / (phase.end - phase.start)))
        before = self.phases[n - 1].weights
        return n, {d: (1 - t) * before[d] + t * phase.weights[d] for d in self.domains}

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "domains": list(self.domains),
                "phases": [p.to_dict() for p in self.phases]}

    @classmethod
    def from_dict(cls, data: dict) -> "Schedule":
        phases = tuple(ResolvedPhase(name=p["name"], start=p["start"],
                                     end=math.inf if p["end"] is None else p["end"], weights=p["weights"],
                                     filters=Filters(**p["filters"]), interpolate=p["interpolate"])
                       for p in data["phases"])
        return cls(name=data["name"], unit=data["unit"], domains=tuple(data["domains"]), phases=phases)


def resolve(spec: CurriculumSpec, stats: dict[str, DomainStats], *, release: str,
            max_steps: int | None, max_hours: float | None) -> Schedule:
    """Fix ``spec`` against the release's training data and the run's budget (for ``fraction``)."""
    domains = tuple(sorted(stats))
    if not domains:
        raise CurriculumError(f"release {release!r} has no training samples")
    length_unit = next((p.length[0] for p in spec.phases if p.length), "steps")
    if length_unit == "fraction":
        if max_steps is None and max_hours is None:
            raise CurriculumError(f"curriculum {spec.name!r} gives phase lengths as fractions of the run; "
                                  "the run needs max_steps or max_hours")
        unit, budget = ("steps", float(max_steps)) if max_steps is not None else ("hours", float(max_hours))
    else:
        unit, budget = length_unit, 1.0
    phases, start = [], 0.0
    for n, phase in enumerate(spec.phases):
        where = f"curriculum {spec.name!r}, phase {phase.name!r}"
        if phase.weights == "hours":
            raw = {d: stats[d].hours for d in domains}
        elif phase.weights == "equal":
            raw = {d: 1.0 for d in domains}
        else:
            unknown = sorted(set(phase.weights) - set(domains))
            if unknown:
                raise CurriculumError(f"{where}: domain(s) {unknown} have no training data in release {release!r} "
                                      f"(its training domains: {list(domains)})")
            raw = {d: float(phase.weights.get(d, 0.0)) for d in domains}
        for d in domains:
            if raw[d] > 0 and stats[d].passing(phase.filters) == 0:
                raise CurriculumError(f"{where}: no training sample of domain {d!r} passes the filters "
                                      f"{phase.filters.model_dump(exclude_none=True)}")
        total = sum(raw.values())
        if total <= 0:
            raise CurriculumError(f"{where}: the weighted domains have no training hours")
        length = phase.length
        end = math.inf if length is None else start + length[1] * budget
        if unit == "steps" and not math.isinf(end):
            end = float(round(end))
        phases.append(ResolvedPhase(name=phase.name, start=start, end=end, weights={d: raw[d] / total for d in domains},
                                    filters=phase.filters, interpolate=phase.interpolate))
        start = end
    return Schedule(name=spec.name, unit=unit, domains=domains, phases=tuple(phases))


def curriculum_yaml(spec: CurriculumSpec) -> str:
    return yaml.safe_dump(spec.model_dump(exclude_none=True, exclude_defaults=False), sort_keys=False)
