"""The stages that decide what a release holds, all on the driver and label-only (no audio, no model):

- :class:`TrimStage`: each labelled segment cut at weak-word runs, foreign phrases and long
  wordless stretches into pieces (:mod:`pipelines.trim`);
- :class:`AssignSplits`: each recording's split, by its group (the recording, or a group its
  source declares with ``group_pattern``) or the split its source declares;
- :class:`FilterStage`: each segment's decision and every reason that applies
  (:func:`pipelines.filter.decide`), with the release's thresholds, per domain where given.
"""
from __future__ import annotations

import re
from dataclasses import replace

from corpus.schema import Decision, Label, Recording, Segment, segment_id
from corpus.splits import assign_split
from pipelines.filter import decide
from pipelines.stages import Stage
from pipelines.trim import pieces


class TrimStage(Stage):
    name = "trim"
    on = "driver"

    def __init__(self, thresholds):
        self.thresholds = thresholds

    def process(self, batch: list[Recording]) -> list[Recording]:
        return [replace(rec, segments=[p for seg in rec.segments for p in trim_segment(seg, self.thresholds, rec.language)])
                if rec.ok else rec for rec in batch]


def trim_segment(seg: Segment, thresholds, declared: str | None) -> list[Segment]:
    """A segment, or its trimmed pieces (ids from the recording and their times, ``parent_segment_id``
    the segment's); a piece trimming rejects carries its ``cut_reason``."""
    label = {"start": seg.start, "end": seg.end, **seg.label.to_dict()}
    got = pieces(label, thresholds, declared)
    if len(got) == 1 and got[0]["start"] == seg.start and got[0]["end"] == seg.end:
        return [replace(seg, label=Label.from_dict(got[0]), cut_reason=got[0].get("trim_reason"))]
    return [Segment(segment_id(seg.recording_id, p["start"], p["end"]), seg.recording_id, p["start"], p["end"],
                    Label.from_dict(p), parent_segment_id=seg.segment_id, cut_reason=p.get("trim_reason"))
            for p in got]


class AssignSplits(Stage):
    """``fixed``: (source uri, domain) → the split a source declares for all its recordings;
    ``patterns``: (source uri, domain) → the source's ``group_pattern`` (a regex with a ``group``)."""

    name = "splits"
    on = "driver"

    def __init__(self, fractions, patterns: dict, fixed: dict):
        self.fractions, self.patterns, self.fixed = fractions, patterns, fixed

    def process(self, batch: list[Recording]) -> list[Recording]:
        out = []
        for rec in batch:
            if rec.ok:
                group = split_group(rec, self.patterns)
                rec = replace(rec, group=group,
                              split=self.fixed.get((rec.source_uri, rec.domain)) or assign_split(group, self.fractions))
            out.append(rec)
        return out


def split_group(rec: Recording, patterns: dict[tuple[str, str], str | None]) -> str:
    """What a recording's split is assigned by: its source's declared group, else the recording."""
    pattern = patterns.get((rec.source_uri, rec.domain))
    if pattern:
        match = re.search(pattern, rec.key)
        if match and match.group("group"):
            return f"{rec.source_uri}#{match.group('group')}"
    return rec.recording_id


class FilterStage(Stage):
    """``thresholds``: the filter config; ``per_domain``: a domain's own, where it has them."""

    name = "filter"
    on = "driver"

    def __init__(self, thresholds, per_domain: dict | None = None):
        self.thresholds, self.per_domain = thresholds, per_domain or {}

    def process(self, batch: list[Recording]) -> list[Recording]:
        out = []
        for rec in batch:
            if rec.ok:
                t = self.per_domain.get(rec.domain, self.thresholds)
                rec = replace(rec, segments=[replace(seg, decision=Decision(*decide(seg.signals(rec), t)))
                                             for seg in rec.segments])
            out.append(rec)
        return out
