"""Hallucination detectors: what the hallucination rules of :mod:`pipelines.rules` look for in a label.

What Whisper writes when there is little or no speech, as the field's recipes catch it (NeMo
SDP's Granary recipe, NeMo Curator's ``WhisperHallucinationStage``): the same few words over and
over (a low unique-word ratio), one impossibly long "word", stock phrases from its subtitle
training data ("thank you for watching", subtitle credits) on quiet audio, and more characters
per second than anyone speaks. The rules (``low_unique_word_ratio``, ``long_word``,
``phantom_phrase``, ``repetition``, ``chars_per_second_high``) are classes in :mod:`pipelines.rules`
that read their thresholds from :class:`pipelines.config.FilterConfig`; the text measures are here.
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


def unique_word_ratio(text: str) -> float | None:
    words = [w.lower() for w in _WORD.findall(text)]
    return len(set(words)) / len(words) if words else None


def longest_word_run(text: str) -> int:
    """The longest run of one word repeated (case-insensitive)."""
    words = [w.lower() for w in _WORD.findall(text)]
    best = run = 0
    for i, word in enumerate(words):
        run = run + 1 if i and word == words[i - 1] else 1
        best = max(best, run)
    return best


def phantom_phrase(row: dict, t) -> bool:
    """A known phantom phrase on quiet (``t.phantom_max_dbfs``) or speechless
    (``t.phantom_min_no_speech_prob``) audio, or a lone phantom word on a long clip."""
    text = normalize_text(row.get("text") or "")
    if not text:
        return False
    phantom = text in PHANTOM_WHOLE or any(p in text for p in PHANTOM_PHRASES)
    if not phantom:
        return False
    rms = row.get("rms_dbfs")
    quiet = rms is not None and rms < t.phantom_max_dbfs
    speechless = (row.get("no_speech_prob") or 0.0) > t.phantom_min_no_speech_prob
    # a lone "you"/"thank you" on a long clip is phantom whatever the loudness
    long_and_short = text in PHANTOM_WHOLE and (row["end"] - row["start"]) > 3.0
    return quiet or speechless or long_and_short
