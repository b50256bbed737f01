"""Filtering: keep or reject one segment, with every reason that applies.

``decide(row, config)`` runs the rules of :mod:`pipelines.rules` in their registry order and
returns ``("keep", [])`` or ``("reject", [reasons…])``; all rules are checked, so a segment
carries every reason that applies, each code once, where it first fires. Rejected segments stay
in the manifest, so thresholds can be changed later from the manifest alone, without ASR.
"""
from __future__ import annotations

from pipelines import rules
from pipelines.hallucination import longest_word_run
from pipelines.rules import REASONS


def decide(row: dict, config) -> tuple[str, list[str]]:
    """Decision and reasons for one segment ``row`` (start, end, text, avg_logprob, …) under
    ``config`` (a :class:`pipelines.config.FilterConfig`)."""
    reasons: list[str] = []
    for rule in rules.RULES:
        if rule.code not in reasons and rule.check(row, config):
            reasons.append(rule.code)
    return ("reject", reasons) if reasons else ("keep", [])


__all__ = ["REASONS", "decide", "longest_word_run"]
