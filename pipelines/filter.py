"""Filtering: rules with reason codes over a segment's label; thresholds from the config.

``decide(row, thresholds)`` returns ``("keep", [])`` or ``("reject", [reasons…])``; all rules
are checked so a segment carries every reason that applies. Rejected segments stay in the
manifest, so thresholds can be changed later from the manifest alone, without ASR.
"""
from __future__ import annotations

import re

from pipelines.hallucination import REASONS as HALLUCINATION_REASONS
from pipelines.hallucination import check as hallucinations

REASONS = {
    "empty_text": "the model produced no text",
    "low_avg_logprob": "avg_logprob below min_avg_logprob",
    "high_no_speech_prob": "no_speech_prob above max_no_speech_prob",
    "high_compression_ratio": "compression ratio above max_compression_ratio (repetitive text)",
    "repetition": "the same word repeated more than max_word_repeats times in a row",
    "chars_per_second_low": "fewer characters per second than min_chars_per_second",
    "chars_per_second_high": "more characters per second than max_chars_per_second",
    "too_short": "shorter than min_seconds",
    "too_long": "longer than max_seconds",
    "low_confidence": "combined confidence (calibrated logistic model) below min_confidence",
    "language_mismatch": "the detected language differs from the source's declared one",
    "low_word_prob": "mean word probability below min_mean_word_prob (e.g. speech the model has no language for)",
    "low_word_prob_run": "a run of trim_min_weak_words words below trim_word_prob, cut out of its segment",
    "unlabelled_gap": "a stretch inside a segment longer than trim_max_gap with no word decoded, cut out",
    "disagreement": "the second opinion's label differs from the first by more than max_agreement_cer (CER)",
    **HALLUCINATION_REASONS,
}

_WORD = re.compile(r"[\w']+")
_MODELS: dict[str, object] = {}


def _model(spec: dict):
    import json

    from pipelines.confidence import ConfidenceModel

    key = json.dumps(spec, sort_keys=True)
    if key not in _MODELS:
        _MODELS[key] = ConfidenceModel.from_dict(spec)
    return _MODELS[key]


def longest_word_run(text: str) -> int:
    words = [w.lower() for w in _WORD.findall(text)]
    best = run = 0
    for i, word in enumerate(words):
        run = run + 1 if i and word == words[i - 1] else 1
        best = max(best, run)
    return best


def decide(row: dict, t) -> tuple[str, list[str]]:
    """Decision and reasons for one segment ``row`` (start, end, text, avg_logprob, …)."""
    reasons = []
    duration = row["end"] - row["start"]
    text = (row.get("text") or "").strip()
    if not text:
        reasons.append("empty_text")
    if row.get("avg_logprob") is None or row["avg_logprob"] < t.min_avg_logprob:
        reasons.append("low_avg_logprob")
    if row.get("no_speech_prob") is not None and row["no_speech_prob"] > t.max_no_speech_prob:
        reasons.append("high_no_speech_prob")
    if row.get("compression_ratio") is not None and row["compression_ratio"] > t.max_compression_ratio:
        reasons.append("high_compression_ratio")
    if text and longest_word_run(text) > t.max_word_repeats:
        reasons.append("repetition")
    if text and duration > 0:
        rate = len(text) / duration
        if rate < t.min_chars_per_second:
            reasons.append("chars_per_second_low")
        if rate > t.max_chars_per_second:
            reasons.append("chars_per_second_high")
    if duration < t.min_seconds:
        reasons.append("too_short")
    if duration > t.max_seconds:
        reasons.append("too_long")
    declared, detected = row.get("declared_language"), row.get("language")
    if (declared and declared != "auto" and detected and detected != declared
            and (row.get("language_probability") or 0.0) >= t.min_language_probability):
        reasons.append("language_mismatch")
    if t.min_mean_word_prob > 0 and text and row.get("mean_word_prob") is not None \
            and row["mean_word_prob"] < t.min_mean_word_prob:
        reasons.append("low_word_prob")
    if row.get("trim_reason") and row["trim_reason"] not in reasons:
        reasons.append(row["trim_reason"])
    if text:
        reasons.extend(hallucinations(row, t))
    if row.get("agreement_cer") is not None and row["agreement_cer"] > t.max_agreement_cer:
        reasons.append("disagreement")
    if t.min_confidence > 0:
        score = _model(t.confidence_model).score(row)
        if score is None or score < t.min_confidence:
            reasons.append("low_confidence")
    return ("reject", reasons) if reasons else ("keep", [])
