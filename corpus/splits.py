"""Deterministic train/validation/test assignment by a hash of the source group.

Everything of one group (a recording, or a declared speaker/channel/show id) lands in the same
split, so no source is in two splits; the same group always gets the same split.
"""
from __future__ import annotations

import hashlib

from corpus.schema import SPLITS

DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; splits are {list(SPLITS)}")
    if any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    return fractions


def assign_split(group: str, fractions: dict[str, float] = DEFAULT_FRACTIONS, *, salt: str = "") -> str:
    """The split of ``group``: a uniform number from sha256(salt + group), cut by the fractions."""
    check_fractions(fractions)
    digest = hashlib.sha256(f"{salt}{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for split in SPLITS:
        edge += fractions.get(split, 0.0)
        if u < edge:
            return split
    return next(s for s in reversed(SPLITS) if fractions.get(s, 0.0) > 0)
