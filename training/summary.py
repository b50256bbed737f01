"""What a finished run records about itself in ``summary.json`` beside its metrics.

The loop builds the summary (the run, the model, the curriculum planned and realised, the last
evaluation, compute used, data problems, the resolved config) and writes it at the end;
``presentation.training_report`` renders the report from it and from ``metrics.parquet``.
"""
from __future__ import annotations

from collections import defaultdict

SUMMARY_FILE = "summary.json"


def planned_phases(schedule: dict, steps_by_phase: dict[str, int], weights_by_phase: dict[str, dict]) -> list[dict]:
    """Per phase: name and the mean planned weights over the steps actually run in it."""
    out = []
    for phase in schedule["phases"]:
        sums = weights_by_phase.get(phase["name"])
        n = steps_by_phase.get(phase["name"], 0)
        mean = {d: sums[d] / n for d in schedule["domains"]} if sums and n else dict(phase["weights"])
        out.append({"name": phase["name"], "steps_run": n, "mean_weights": mean})
    return out


def realised_table(counts: dict) -> dict:
    """``{phase: {domain: {"samples", "seconds"}}}`` with plain ints/floats, sorted."""
    out: dict = defaultdict(dict)
    for phase, by_domain in counts.items():
        for domain, value in sorted(by_domain.items()):
            out[phase][domain] = {"samples": int(value["samples"]), "seconds": float(value["seconds"])}
    return dict(out)


__all__ = ["SUMMARY_FILE", "planned_phases", "realised_table"]
