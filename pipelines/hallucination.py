"""Hallucination rules: small checks on a label's text (and its audio's loudness), each with a reason.

What Whisper writes when there is little or no speech, as the field's recipes catch it (NeMo
SDP's Granary recipe, NeMo Curator's ``WhisperHallucinationStage``): the same few words over and
over (a low unique-word ratio), one impossibly long "word", stock phrases from its subtitle
training data ("thank you for watching", subtitle credits) on quiet audio, and more characters
per second than anyone speaks (``chars_per_second_high`` in :mod:`pipelines.filter`). Each rule
reads its threshold from :class:`pipelines.config.FilterConfig` and returns a reason code or None.
"""
from __future__ import annotations

import re

from corpus.text import normalize_text

# known phantom phrases (normalised): Whisper's subtitle-credit and sign-off hallucinations
PHANTOM_PHRASES = (
    "thank you for watching", "thanks for watching", "thank you for listening", "please subscribe",
    "like and subscribe", "subscribe to my channel", "subtitles by", "subtitled by", "captions by",
    "transcribed by", "translated by", "amara org", "see you next time", "see you in the next video",
)
# whole labels that are phantom when they are all there is
PHANTOM_WHOLE = ("you", "thank you", "thanks", "bye", "bye bye", "okay", "oh", "so", "i", "the end")

_WORD = re.compile(r"[\w']+")

REASONS = {
    "low_unique_word_ratio": "distinct words / words below min_unique_word_ratio (looping text)",
    "long_word": "a word longer than max_word_chars characters",
    "phantom_phrase": "a known phantom phrase (subtitle credits, sign-offs) on quiet or speechless audio",
}


def unique_word_ratio(text: str) -> float | None:
    words = [w.lower() for w in _WORD.findall(text)]
    return len(set(words)) / len(words) if words else None


def low_unique_word_ratio(row: dict, t) -> str | None:
    words = _WORD.findall(row.get("text") or "")
    if len(words) >= t.unique_ratio_min_words:
        ratio = unique_word_ratio(row["text"])
        if ratio is not None and ratio < t.min_unique_word_ratio:
            return "low_unique_word_ratio"
    return None


def long_word(row: dict, t) -> str | None:
    words = _WORD.findall(row.get("text") or "")
    return "long_word" if words and max(len(w) for w in words) > t.max_word_chars else None


def phantom_phrase(row: dict, t) -> str | None:
    text = normalize_text(row.get("text") or "")
    if not text:
        return None
    phantom = text in PHANTOM_WHOLE or any(p in text for p in PHANTOM_PHRASES)
    if not phantom:
        return None
    rms = row.get("rms_dbfs")
    quiet = rms is not None and rms < t.phantom_max_dbfs
    speechless = (row.get("no_speech_prob") or 0.0) > t.phantom_min_no_speech_prob
    # a lone "you"/"thank you" on a long clip is phantom whatever the loudness
    long_and_short = text in PHANTOM_WHOLE and (row["end"] - row["start"]) > 3.0
    return "phantom_phrase" if quiet or speechless or long_and_short else None


RULES = (low_unique_word_ratio, long_word, phantom_phrase)


def check(row: dict, t) -> list[str]:
    """Every hallucination reason that applies to ``row``."""
    return [reason for rule in RULES if (reason := rule(row, t))]
