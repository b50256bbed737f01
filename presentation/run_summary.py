"""A build's summary (``pipelines.build.run_build``'s return value) as the text ``stt-corpus build`` prints.

One row per domain (files, quarantined, hours in, segments, kept, hours kept), rejects and
quarantines by reason, deferred files, what was labelled now, the wall time per stage and the
release written (with its datasheet's URL once the caller has written it).
"""
from __future__ import annotations


def format_summary(summary: dict) -> str:
    """The summary as lines of text: a table per domain, then one line per topic."""
    lines = [f"{'domain':<14}{'files':>7}{'quarant.':>10}{'hours in':>10}{'segments':>10}{'kept':>7}{'hours kept':>12}"]
    for d, s in summary["domains"].items():
        lines.append(f"{d:<14}{s['files']:>7}{s['quarantined']:>10}{s['hours_in']:>10.3f}{s['segments']:>10}"
                     f"{s['kept']:>7}{s['hours_kept']:>12.3f}")
    lines.append("rejected segments by reason: " + (", ".join(f"{k} {v}" for k, v in summary["rejects_by_reason"].items())
                                                  or "none"))
    lines.append("quarantined files by reason: " + (", ".join(f"{k} {v}" for k, v in summary["quarantine_by_reason"].items())
                                                  or "none"))
    if summary.get("deferred_by_reason"):
        lines.append("deferred (could not be read; the next run retries them): "
                     + ", ".join(f"{k} {v}" for k, v in summary["deferred_by_reason"].items()))
    tp = summary["label_throughput_audio_s_per_s"]
    lines.append(f"labelled now: {summary['recordings_labelled_now']} recordings, {summary['segments_labelled_now']} segments"
                 + (f", {tp:.2f} audio-s per wall-s" if tp else " (all reused from earlier runs)"))
    lines.append(f"wall time: {summary['wall_seconds']:.1f} s  (stages: "
                 + ", ".join(f"{k} {v:.1f} s" for k, v in summary["stage_seconds"].items()) + ")")
    if "release" in summary:
        r = summary["release"]
        lines.append(f"release {r['name']} at {r['store']}: {r['counts']['kept']} kept of {r['counts']['segments']} "
                     f"segments in {r['counts']['shards']} shards")
        if r.get("datasheet"):
            lines.append(f"datasheet: {r['datasheet']}")
    return "\n".join(lines)


__all__ = ["format_summary"]
