"""Trim, don't only reject: cut a labelled segment into confident pieces by its words.

A segment's words (times and probabilities from the decoder, and for a multilingual model the
language of each phrase, from :mod:`pipelines.language`) are marked weak where a run of at least
``trim_min_weak_words`` words has probability below ``trim_word_prob``, and foreign where a
phrase's detected language differs from the source's declared one (probability at least
``min_language_probability``) or the declared language itself is unlikely (probability below
``min_declared_language_probability``: on degraded audio the top language of a foreign phrase is
often below 0.5, but the declared one is lower still), and its words are unsure (mean probability
below ``foreign_max_word_prob``: phrase language ID takes clear English for Latin or Welsh on
degraded audio, while foreign speech decoded in the declared language comes out unsure).
The segment is cut at the edges of these runs:

- every run of sound words becomes a piece, a label of its own (its words, its text, signals
  recomputed from its words), filtered like any segment (so a short piece is ``too_short``);
- a segment the first pass is unsure of (a second opinion was asked) is also cut after every word
  ending in ``.``, ``?`` or ``!`` (``trim_sentences``), so each sentence is judged on its own; an
  abbreviation ("Mr.") ends a piece too, which is then usually too short to keep;
- every weak or foreign run becomes a piece rejected with ``low_word_prob_run`` or
  ``language_mismatch``;
- a pause longer than ``trim_max_gap`` between two words becomes a piece rejected with
  ``unlabelled_gap``: Whisper skips speech it cannot write (a foreign sentence decoded as English
  often leaves no words at all), so a long wordless stretch inside a segment is speech without a
  label, or silence, and is cut out either way.

A segment with nothing to cut stays as it is (same id, no parent). Pieces get ids from their
recording and times (``segment_id``) and carry ``parent_segment_id``; the manifest keeps every
piece with its decision and reasons. Everything here reads the label only, no audio: a re-filter
could re-trim from the stored words.

A piece's ``avg_logprob`` is the mean log probability of its words (the decoder's token-level
figure exists for the whole segment only); its language is its phrases' (when all were judged),
else the parent's; ``no_speech_prob`` is the parent's; its ``agreement_cer`` (when a second opinion
was asked) is its words' CER against the stretch of the second opinion's text aligned to them.
"""
from __future__ import annotations

import json
import math
import zlib
from collections import Counter

from pipelines.agreement import disputed_words, span_disagreement

SENTENCE_END = ".?!"
PIECE_PAD_S = 0.1  # context kept around a piece's first and last word, within its neighbours' gap


def word_flags(label: dict, t, declared: str | None) -> list[str | None]:
    """Per word: None (sound), 'disputed_word', 'low_word_prob_run' or 'language_mismatch' (a later
    kind overrides an earlier one)."""
    words = label.get("words") or []
    flags: list[str | None] = [None] * len(words)
    if t.trim_disputed_prob > 0 and label.get("agreement_text") is not None and words:
        disputed = disputed_words([w["word"] for w in words], label["agreement_text"])
        for k, w in enumerate(words):
            if disputed[k] and w["probability"] < t.trim_disputed_prob:
                flags[k] = "disputed_word"
    if t.trim_word_prob > 0:
        i = 0
        while i < len(words):
            j = i
            while j < len(words) and words[j]["probability"] < t.trim_word_prob:
                j += 1
            if j - i >= t.trim_min_weak_words:
                flags[i:j] = ["low_word_prob_run"] * (j - i)
            i = max(j, i + 1)
    if declared and declared != "auto":
        for first, last, lang, prob, *rest in json.loads(label.get("phrase_languages") or "[]"):
            p_declared = rest[0] if rest else None
            other = lang != declared and prob >= t.min_language_probability
            unlikely = p_declared is not None and p_declared < t.min_declared_language_probability
            probs = [w["probability"] for w in words[first:last]]
            unsure = t.foreign_max_word_prob >= 1 or not probs or sum(probs) / len(probs) < t.foreign_max_word_prob
            if (other or unlikely) and unsure:
                flags[first:last] = ["language_mismatch"] * (last - first)
    return flags


def word_languages(label: dict) -> list[tuple[str, float] | None]:
    """Per word: (language, probability) of the phrase it belongs to, None where not judged."""
    out: list[tuple[str, float] | None] = [None] * len(label.get("words") or [])
    for first, last, lang, prob, *_ in json.loads(label.get("phrase_languages") or "[]"):
        out[first:last] = [(lang, prob)] * (last - first)
    return out


def compression_ratio(text: str) -> float:
    """Whisper's compression ratio (bytes / zlib-compressed bytes of the text), as faster-whisper
    defines it; here so that a re-filter can trim without importing the ASR stack."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def _piece(label: dict, span: tuple[int, int], langs: list, start: float, end: float, reason: str | None) -> dict:
    words = (label.get("words") or [])[span[0]:span[1]]
    text = "".join(w["word"] for w in words).strip()
    logs = [math.log(max(w["probability"], 1e-6)) for w in words]
    piece = {**label, "start": round(start, 3), "end": round(end, 3), "text": text, "words": words,
             "avg_logprob": round(sum(logs) / len(logs), 4) if logs else None,
             "compression_ratio": compression_ratio(text) if text else None,
             "trim_reason": reason}
    if label.get("agreement_cer") is not None and label.get("agreement_text") is not None and words:
        # the piece's own agreement: its words against the stretch of the second opinion aligned to them
        piece["agreement_cer"] = span_disagreement([w["word"] for w in label["words"]], *span, label["agreement_text"])
    if langs and all(langs):  # every word's phrase was judged: the piece's language is theirs
        counts = Counter(lang for lang, _ in langs)
        lang = counts.most_common(1)[0][0]
        piece["language"] = lang
        piece["language_probability"] = round(min(p for x, p in langs if x == lang), 4)
    return piece


def pieces(label: dict, t, declared: str | None) -> list[dict]:
    """The label itself (nothing to cut) or its pieces, in time order, within [start, end)."""
    words = label.get("words") or []
    if not t.trim or not words:
        return [label]
    flags = word_flags(label, t, declared)
    langs = word_languages(label)
    gaps = [t.trim_max_gap > 0 and words[i]["start"] - words[i - 1]["end"] > t.trim_max_gap
            for i in range(len(words))]
    sentences = [i > 0 and t.trim_sentences and label.get("agreement_text") is not None
                 and words[i - 1]["word"].strip()[-1:] in SENTENCE_END for i in range(len(words))]
    if all(f == flags[0] for f in flags) and not any(gaps) and not any(sentences):  # nothing to cut
        return [label] if flags[0] is None else [{**label, "trim_reason": flags[0]}]
    runs, first = [], 0
    for i in range(1, len(words) + 1):
        if i == len(words) or flags[i] != flags[first] or gaps[i] or sentences[i]:
            runs.append((first, i, flags[first]))
            first = i
    out = []
    for k, (a, b, reason) in enumerate(runs):
        lo = label["start"] if k == 0 else (words[a - 1]["end"] + words[a]["start"]) / 2
        hi = label["end"] if k == len(runs) - 1 else (words[b - 1]["end"] + words[b]["start"]) / 2
        if reason is None or (k and gaps[a]) or (k < len(runs) - 1 and gaps[b]):
            lo = max(lo, words[a]["start"] - PIECE_PAD_S)  # keep only a little context around words
            hi = min(hi, words[b - 1]["end"] + PIECE_PAD_S)
        if k and gaps[a]:  # speech (or silence) the decoder wrote nothing for: cut out
            gap_lo = max(label["start"], words[a - 1]["end"] + PIECE_PAD_S)
            if lo - gap_lo >= 0.01:
                out.append({**_piece(label, (a, a), [], gap_lo, lo, "unlabelled_gap"), "text": ""})
        lo, hi = max(lo, label["start"]), min(hi, label["end"])
        if hi - lo >= 0.01:
            out.append(_piece(label, (a, b), langs[a:b], lo, hi, reason))
    return out or [label]
