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


def _aligned_positions(first: list[str], second: list[str]) -> list[int]:
    """For each boundary i of ``first`` (0..len), the boundary of ``second`` it aligns to (word-level
    Levenshtein alignment; ties prefer substitution, then deletion)."""
    n, m = len(first), len(second)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j - 1] + (first[i - 1] != second[j - 1]), cost[i - 1][j] + 1,
                             cost[i][j - 1] + 1)
    pos = [0] * (n + 1)
    i, j = n, m
    pos[n] = m
    while i > 0:
        if j > 0 and cost[i][j] == cost[i - 1][j - 1] + (first[i - 1] != second[j - 1]):
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
            continue
        pos[i] = j
    return pos


def _tokens(words: list[str]) -> tuple[list[str], list[int]]:
    """The normalised tokens of a label's words, and where each word's tokens start (one more at the end)."""
    tokens, starts = [], []
    for w in words:
        starts.append(len(tokens))
        tokens.extend(normalize_text(w).split())
    starts.append(len(tokens))
    return tokens, starts


def disputed_words(words: list[str], second: str) -> list[bool]:
    """Per word of a label (as the decoder wrote them): whether the second opinion, aligned word by word
    to the whole label, wrote something else there. A word with no tokens of its own (punctuation) is
    never disputed."""
    tokens, starts = _tokens(words)
    other = normalize_text(second or "").split()
    pos = _aligned_positions(tokens, other)
    return [starts[k + 1] > starts[k] and tokens[starts[k]:starts[k + 1]] != other[pos[starts[k]]:pos[starts[k + 1]]]
            for k in range(len(words))]


def span_disagreement(words: list[str], first: int, last: int, second: str) -> float:
    """CER between ``words[first:last]`` (a trimmed piece of a label's words, as the decoder wrote
    them) and the stretch of the second opinion's text aligned to them (word-level alignment of the
    whole label against the whole second opinion), so that a piece is judged by its own words and not
    by its parent's agreement."""
    tokens, starts = _tokens(words)
    other = normalize_text(second or "").split()
    pos = _aligned_positions(tokens, other)
    a, b = starts[first], starts[last]
    return disagreement(" ".join(tokens[a:b]), " ".join(other[pos[a]:pos[b]]))
