"""The filter's rules: one small class per reason a segment is rejected, in one ordered registry.

A rule declares its reason ``code``, a one-line ``description``, the :class:`~pipelines.config.FilterConfig`
``fields`` it reads and, when it thresholds one manifest column, that ``signal`` and its ``bound``
(``"min"``: values below the threshold are rejected; ``"max"``: values above). ``check(row, config)``
says whether it fires on one segment row (manifest fields, plus ``trim_reason`` during a build or
re-filter). Everything else is derived from :data:`RULES`:

- ``pipelines.filter.decide`` runs the rules in this order; a code is listed once, where it first
  fires (two rules give ``language_mismatch``: the segment's detected language, and a phrase cut
  out by trimming), so a manifest's ``reasons`` keep the order releases were built with;
- :data:`REASONS` (code → description), the signals calibration sweeps (:func:`signal_rules`)
  and the datasheet's threshold table (:func:`threshold_table`).

A rule must be decidable from the manifest row alone (no words, no audio): a re-filter re-decides
every segment from the manifest. Adding a rule is one class here (put in :data:`RULES` where its
reason should come in the list, or appended with :func:`register`) plus its threshold field on
``FilterConfig`` (pydantic, ``extra="forbid"``, so an unknown key in a config is refused until the
field exists); ``tests/pipelines/test_rules.py`` checks that every rule's fields exist there and
that every field is read by some rule.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import ClassVar, Literal

from pipelines import hallucination

_WORD = re.compile(r"[\w']+")


class Rule:
    """One reject reason: ``check(row, config)`` is True when ``code`` applies to ``row``."""

    code: ClassVar[str]
    description: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()
    signal: ClassVar[str | None] = None          # the manifest column it thresholds, if exactly one
    bound: ClassVar[Literal["min", "max"] | None] = None

    def check(self, row: dict, config) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code})"


class SignalRule(Rule):
    """A threshold on one manifest column: ``fields[0]`` is the threshold; a missing value fires
    only when ``missing_fires``; a threshold of None turns the rule off."""

    missing_fires: ClassVar[bool] = False
    permissive: ClassVar[float | None] = None  # a valid threshold that lets every value through

    def check(self, row: dict, config) -> bool:
        limit = getattr(config, self.fields[0])
        if limit is None:
            return False
        value = row.get(self.signal)
        if value is None:
            return self.missing_fires
        return value < limit if self.bound == "min" else value > limit


def _text(row: dict) -> str:
    return (row.get("text") or "").strip()


def _duration(row: dict) -> float:
    return row["end"] - row["start"]


class EmptyText(Rule):
    code = "empty_text"
    description = "the model produced no text"

    def check(self, row, config):
        return not _text(row)


class LowAvgLogprob(SignalRule):
    code = "low_avg_logprob"
    description = "avg_logprob below min_avg_logprob"
    fields = ("min_avg_logprob",)
    signal, bound, missing_fires, permissive = "avg_logprob", "min", True, -100.0


class HighNoSpeechProb(SignalRule):
    code = "high_no_speech_prob"
    description = "no_speech_prob above max_no_speech_prob"
    fields = ("max_no_speech_prob",)
    signal, bound, permissive = "no_speech_prob", "max", 1.0


class HighCompressionRatio(SignalRule):
    code = "high_compression_ratio"
    description = "compression ratio above max_compression_ratio (repetitive text)"
    fields = ("max_compression_ratio",)
    signal, bound, permissive = "compression_ratio", "max", 100.0


class Repetition(Rule):
    code = "repetition"
    description = "the same word repeated more than max_word_repeats times in a row"
    fields = ("max_word_repeats",)

    def check(self, row, config):
        text = _text(row)
        return bool(text) and hallucination.longest_word_run(text) > config.max_word_repeats


class CharsPerSecondLow(Rule):
    code = "chars_per_second_low"
    description = "fewer characters per second than min_chars_per_second"
    fields = ("min_chars_per_second",)

    def check(self, row, config):
        text, duration = _text(row), _duration(row)
        return bool(text) and duration > 0 and len(text) / duration < config.min_chars_per_second


class CharsPerSecondHigh(Rule):
    code = "chars_per_second_high"
    description = "more characters per second than max_chars_per_second"
    fields = ("max_chars_per_second",)

    def check(self, row, config):
        text, duration = _text(row), _duration(row)
        return bool(text) and duration > 0 and len(text) / duration > config.max_chars_per_second


class TooShort(Rule):
    code = "too_short"
    description = "shorter than min_seconds"
    fields = ("min_seconds",)

    def check(self, row, config):
        return _duration(row) < config.min_seconds


class TooLong(Rule):
    code = "too_long"
    description = "longer than max_seconds"
    fields = ("max_seconds",)

    def check(self, row, config):
        return _duration(row) > config.max_seconds


class LanguageMismatch(Rule):
    code = "language_mismatch"
    description = ("the detected language differs from the source's declared one (and the words, decoded in the "
                   "declared language, are unsure)")
    fields = ("min_language_probability", "foreign_max_word_prob")

    def check(self, row, config):
        declared, detected = row.get("declared_language"), row.get("language")
        mean_word_prob = row.get("mean_word_prob")
        return bool(declared and declared != "auto" and detected and detected != declared
                    and (row.get("language_probability") or 0.0) >= config.min_language_probability
                    and (config.foreign_max_word_prob >= 1 or mean_word_prob is None
                         or mean_word_prob < config.foreign_max_word_prob))


class LowWordProb(SignalRule):
    code = "low_word_prob"
    description = "mean word probability below min_mean_word_prob (e.g. speech the model has no language for)"
    fields = ("min_mean_word_prob",)
    signal, bound, permissive = "mean_word_prob", "min", 0.0

    def check(self, row, config):
        return bool(config.min_mean_word_prob) and bool(_text(row)) and super().check(row, config)


class TrimmedOut(Rule):
    """A piece that trimming (pipelines/trim.py) cut out of its segment for this rule's code."""

    def check(self, row, config):
        return row.get("trim_reason") == self.code


class WeakWordRun(TrimmedOut):
    code = "low_word_prob_run"
    description = "a run of trim_min_weak_words words below trim_word_prob, cut out of its segment"
    fields = ("trim", "trim_word_prob", "trim_min_weak_words")


class DisputedWord(TrimmedOut):
    code = "disputed_word"
    description = ("words below trim_disputed_prob that the second opinion decodes otherwise, cut out of "
                   "their segment")
    fields = ("trim", "trim_disputed_prob")


class UnlabelledGap(TrimmedOut):
    code = "unlabelled_gap"
    description = "a stretch inside a segment longer than trim_max_gap with no word decoded, cut out"
    fields = ("trim", "trim_max_gap")


class ForeignPhrase(TrimmedOut):
    code = "language_mismatch"
    description = ("a phrase detected in another language (or unlikely to be in the declared one), "
                   "cut out of its segment")
    fields = ("trim", "min_language_probability", "min_declared_language_probability", "foreign_max_word_prob")


class LowUniqueWordRatio(Rule):
    code = "low_unique_word_ratio"
    description = "distinct words / words below min_unique_word_ratio (looping text)"
    fields = ("min_unique_word_ratio", "unique_ratio_min_words")

    def check(self, row, config):
        text = row.get("text") or ""
        if len(_WORD.findall(text)) < config.unique_ratio_min_words:
            return False
        ratio = hallucination.unique_word_ratio(text)
        return ratio is not None and ratio < config.min_unique_word_ratio


class LongWord(Rule):
    code = "long_word"
    description = "a word longer than max_word_chars characters"
    fields = ("max_word_chars",)

    def check(self, row, config):
        words = _WORD.findall(row.get("text") or "")
        return bool(words) and max(len(w) for w in words) > config.max_word_chars


class PhantomPhrase(Rule):
    code = "phantom_phrase"
    description = "a known phantom phrase (subtitle credits, sign-offs) on quiet or speechless audio"
    fields = ("phantom_max_dbfs", "phantom_min_no_speech_prob")

    def check(self, row, config):
        return hallucination.phantom_phrase(row, config)


class Disagreement(SignalRule):
    code = "disagreement"
    description = ("the second opinion's label differs from the first by more than max_agreement_cer (CER); "
                   "with trim_sentences, sentence by sentence")
    fields = ("max_agreement_cer", "trim_sentences")
    signal, bound, permissive = "agreement_cer", "max", 1.0


class LowConfidence(Rule):
    code = "low_confidence"
    description = ("combined confidence (calibrated logistic model) below min_confidence, in a language the "
                   "model was fitted on")
    fields = ("min_confidence", "confidence_model")
    _models: ClassVar[dict[str, object]] = {}

    def check(self, row, config):
        if config.min_confidence <= 0:
            return False
        model = self._model(config.confidence_model)
        if not model.judges(row):  # a language the model was not fitted on: the other rules judge it
            return False
        score = model.score(row)
        return score is None or score < config.min_confidence

    @classmethod
    def _model(cls, spec: dict):
        from pipelines.confidence import ConfidenceModel

        key = json.dumps(spec, sort_keys=True)
        if key not in cls._models:
            cls._models[key] = ConfidenceModel.from_dict(spec)
        return cls._models[key]


class TooQuiet(SignalRule):
    code = "too_quiet"
    description = "the segment's audio is quieter than min_rms_dbfs (RMS dBFS): a label on near-silence"
    fields = ("min_rms_dbfs",)
    signal, bound = "rms_dbfs", "min"


# The order is the order of a manifest row's reasons: existing releases were built with it.
RULES: list[Rule] = [
    EmptyText(), LowAvgLogprob(), HighNoSpeechProb(), HighCompressionRatio(), Repetition(),
    CharsPerSecondLow(), CharsPerSecondHigh(), TooShort(), TooLong(), LanguageMismatch(), LowWordProb(),
    WeakWordRun(), DisputedWord(), UnlabelledGap(), ForeignPhrase(),
    LowUniqueWordRatio(), LongWord(), PhantomPhrase(),
    Disagreement(), LowConfidence(), TooQuiet(),
]


def register(rule: Rule) -> Rule:
    """Append ``rule`` to the registry: its reason comes after every earlier rule's."""
    if not getattr(rule, "code", None) or not getattr(rule, "description", None):
        raise ValueError(f"{rule!r} needs a code and a description")
    if rule.signal is not None and (rule.bound not in ("min", "max") or not rule.fields):
        raise ValueError(f"{rule!r} thresholds {rule.signal!r}: it needs a bound ('min' or 'max') and its field")
    RULES.append(rule)
    return rule


class _Reasons(Mapping):
    """Reason code → description, read from :data:`RULES` (the first rule of a code describes it)."""

    def _table(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for rule in RULES:
            out.setdefault(rule.code, rule.description)
        return out

    def __getitem__(self, code: str) -> str:
        return self._table()[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


REASONS: Mapping[str, str] = _Reasons()


def signal_rules() -> list[Rule]:
    """The rules that threshold one manifest column: what calibration sweeps and the datasheet draws."""
    return [rule for rule in RULES if rule.signal is not None]


def signal_thresholds() -> dict[str, str]:
    """Manifest column → the FilterConfig field that thresholds it."""
    return {rule.signal: rule.fields[0] for rule in signal_rules()}


def _cell(value):
    """A setting as the table shows it: a confidence model by its features, not its numbers."""
    if isinstance(value, dict) and "weights" in value:
        return f"logistic model over {', '.join(value.get('features') or [])}"
    return value


def threshold_table(base: dict, per_domain: dict[str, dict] | None = None) -> tuple[list[str], list[list]]:
    """The datasheet's threshold table: one row per setting the rules read, in the registry's order,
    with its value in ``base`` (the config's ``filter``) and in each domain's override, and the
    reasons that read it; then any setting of the config that no rule reads."""
    per_domain = per_domain or {}
    domains = sorted(per_domain)
    readers: dict[str, list[str]] = {}
    for rule in RULES:
        for name in rule.fields:
            codes = readers.setdefault(name, [])
            if rule.code not in codes:
                codes.append(rule.code)
    configured = set(base) | {name for values in per_domain.values() for name in (values or {})}
    names = list(readers) + sorted(configured - set(readers))
    rows = [[name, _cell(base.get(name)), *(_cell((per_domain[d] or {}).get(name, base.get(name))) for d in domains),
             ", ".join(readers.get(name, [])) or "(no rule reads it)"] for name in names]
    return ["threshold", "default", *domains, "reasons"], rows
