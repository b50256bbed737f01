"""Spoken-language identification per clip and per word span, with a multilingual Whisper.

Whisper's own language detection (one encoder pass, then the probabilities of the language
tokens) is run on each clip, not once per file: a foreign sentence inside an English recording
is then seen where it is. Each clip is encoded at its own length (at least 3 s, at most its
first 30 s), so language ID costs a fraction of decoding. An English-only model has no language
tokens: :func:`detect` is not called for it and labels say ``en``.

``phrases(words)`` cuts a label's words into phrases at pauses, so a segment that mixes
languages can be judged phrase by phrase (:mod:`pipelines.trim` cuts at a change).
"""
from __future__ import annotations

import numpy as np

# a pause between two words at least this long starts a new phrase
PHRASE_GAP_S = 0.3
# encoder frames (10 ms each) given to language detection at least
MIN_FRAMES = 300


def detect(model, clips: list[np.ndarray]) -> list[tuple[str, float, dict[str, float]]]:
    """(language, probability, {language: probability} of every language) for each 16 kHz clip.

    ``model`` is a loaded ``faster_whisper.WhisperModel`` of a multilingual model."""
    from faster_whisper.audio import pad_or_trim

    if not model.model.is_multilingual:
        raise ValueError("language detection needs a multilingual model (an '.en' model has no language tokens)")
    fe = model.feature_extractor
    out: list[tuple[str, float, dict[str, float]]] = []
    for clip in clips:
        clip = np.ascontiguousarray(clip[:fe.n_samples], dtype=np.float32)
        feats = fe(clip)[..., :fe.nb_max_frames]
        # the encoder runs on the clip's own length (at least MIN_FRAMES), not on a 30 s window:
        # a 3 s clip costs a tenth of the encoder time, and the language found is the same
        # (checked on the ru/de/es/fr fixtures: same language, probability within 0.03)
        frames = min(fe.nb_max_frames, max(MIN_FRAMES, feats.shape[-1] + feats.shape[-1] % 2))
        encoded = model.encode(pad_or_trim(feats, frames)[None].astype(np.float32))
        probs = [(token[2:-2], float(p)) for token, p in model.model.detect_language(encoded)[0]]
        out.append((probs[0][0], probs[0][1], dict(probs)))
    return out


def phrases(words: list[dict], *, gap: float = PHRASE_GAP_S) -> list[tuple[int, int]]:
    """[first, last) word index ranges separated by pauses of at least ``gap`` seconds."""
    spans, first = [], 0
    for i in range(1, len(words)):
        if words[i]["start"] - words[i - 1]["end"] >= gap:
            spans.append((first, i))
            first = i
    if words:
        spans.append((first, len(words)))
    return spans
