"""Segmenting: VAD speech regions merged and split into segments of a target length.

Whisper reads 30 s windows, so segments are packed toward ``max_seconds``: neighbouring speech
regions join while the joined span (with padding) fits and the silence between them is at
most ``max_gap``; a region longer than the maximum is cut into equal parts. Each segment gets
``pad`` seconds of context on both sides, never overlapping its neighbours or leaving the
recording. Times are whole milliseconds, so a segment is a whole number of samples.
"""
from __future__ import annotations


def _ms(seconds: float) -> float:
    return round(seconds * 1000) / 1000


def pack_segments(speech: list[tuple[float, float]], duration: float, *, min_seconds: float, max_seconds: float,
                  max_gap: float, pad: float) -> list[tuple[float, float]]:
    """Segments (start, end) in seconds from speech regions of a recording ``duration`` long."""
    if min_seconds >= max_seconds:
        raise ValueError(f"min_seconds ({min_seconds}) must be below max_seconds ({max_seconds})")
    limit = max_seconds - 2 * pad
    if limit <= 0:
        raise ValueError(f"pad {pad} leaves no room in max_seconds {max_seconds}")
    regions: list[tuple[float, float]] = []
    for start, end in sorted(speech):
        start, end = max(0.0, start), min(duration, end)
        if end <= start:
            continue
        parts = int(-(-(end - start) // limit))  # ceil
        step = (end - start) / parts
        regions.extend((start + i * step, start + (i + 1) * step) for i in range(parts))
    merged: list[list[float]] = []
    for start, end in regions:
        if merged and start - merged[-1][1] <= max_gap and end - merged[-1][0] <= limit:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    segments = []
    for i, (start, end) in enumerate(merged):
        left = 0.0 if i == 0 else (merged[i - 1][1] + start) / 2
        right = duration if i == len(merged) - 1 else (end + merged[i + 1][0]) / 2
        a, b = _ms(max(left, start - pad)), _ms(min(right, end + pad))
        if b > a:
            segments.append((a, b))
    return segments
