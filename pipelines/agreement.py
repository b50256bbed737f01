"""Agreement without gold: a second opinion on a segment, and how far the two labels differ.

A second model (e.g. ``tiny.en`` beside ``base``) decodes the clip again; the character error
rate between the two normalised texts is a label-free signal, as filters in the literature use
(uDistil-Whisper keeps pseudo-labels two models agree on). Decoding the second opinion costs a
second decode, so by default it is asked only where the first pass is uncertain (its mean word
probability below ``agreement_max_word_prob``); elsewhere ``agreement_cer`` is None and the rule
does not apply. ``bench/quality.py`` measures both ways (uncertain only, every segment).
"""
from __future__ import annotations

from corpus.text import char_error_rate, normalize_text


def mean_word_prob(label: dict) -> float | None:
    probs = [w["probability"] for w in (label.get("words") or [])]
    return sum(probs) / len(probs) if probs else None


def needs_second_opinion(label: dict, *, when: str, max_word_prob: float) -> bool:
    if when == "all":
        return True
    p = mean_word_prob(label)
    return p is None or p < max_word_prob or label.get("avg_logprob") is None


def disagreement(first: str, second: str) -> float:
    """CER between two labels, normalised; 1.0 when exactly one of them is empty."""
    a, b = normalize_text(first or ""), normalize_text(second or "")
    if not a and not b:
        return 0.0
    if not a or not b:
        return 1.0
    return round(min(1.0, char_error_rate(a, b)), 4)
