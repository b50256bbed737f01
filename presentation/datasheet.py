"""The release datasheet: ``datasheet.md`` + ``datasheet.html`` + ``plots/*.png`` in the release folder.

What a release holds, in numbers and plots, written next to it through the store API (so it
works on a local directory and on S3)::

    <store>/releases/<name>/datasheet.md
    <store>/releases/<name>/datasheet.html      self-contained, no JS; plots linked as plots/<x>.png
    <store>/releases/<name>/plots/*.png

Sections: overview; hours per domain and split (table + bar plot); segments per domain; segment
durations (kept vs rejected); ASR confidences per domain (avg_logprob, no_speech_prob,
compression_ratio, kept vs rejected, with the thresholds drawn in); rejects by reason (table + bar
plot); quarantined files by reason; the calibration curve (``calibration.json``) when one exists;
licences per source; splits (recordings per split and a check that no recording, nor any declared
group, is in two splits); the model and decode parameters; the filter thresholds.

Written after the work by whoever ran it (``stt-corpus build``, ``refilter`` and ``calibrate``, the
flows), never by ``pipelines`` itself: the datasheet is above what it describes. The rendering is
``presentation.document``'s, shared with the training report.

Every optional input may be absent (a reference-labelled release has no quarantine, no
recordings table, no confidences, no model and no filter): its section says so instead.
Both documents come from one list of blocks, so the markdown and the HTML always agree. The
output depends only on the release, so regenerating an unchanged release writes the same bytes.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.release import Release, hours_by_domain_split
from corpus.schema import SPLITS
from corpus.shards import ShardError, iter_shard_raw
from corpus.store import ObjectNotFound, Store, StoreError
from presentation.document import Document, cell, figure, num, png, save, to_html, to_markdown

MD_FILE = "datasheet.md"
HTML_FILE = "datasheet.html"
PLOTS_DIR = "plots"
CALIBRATION_FILE = "calibration.json"
QUARANTINE_FILE = "quarantine.parquet"
RECORDINGS_FILE = "recordings.parquet"
CONFIDENCES = ("avg_logprob", "no_speech_prob", "compression_ratio")
OPTIONAL_CONFIDENCES = ("mean_word_prob",)  # plotted too where the manifest has values
BAD_WER = 0.3  # calibration.json's share_bad: share of kept segments with WER above this
MAX_LISTED = 10  # offenders named in the split check
MAX_CELL = 160  # a config value longer than this as JSON (a fitted model) is summarised, not printed
MAX_CURVE_ROWS = 12  # calibration curve points listed per domain (the plot shows them all)
KEPT_COLOR, REJECTED_COLOR = "#1f77b4", "#d62728"


# --------------------------------------------------------------------------- cells


def _cell(value) -> str:
    """Table text as ``presentation.document.cell``, except that a long config value is summarised."""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True)
        if len(text) > MAX_CELL:
            return f"({type(value).__name__} of {len(value)} entries, {len(text)} characters: see config.yaml)"
    return cell(value)


def hours(x: float) -> str:
    """How the datasheet writes hours: 4 decimals (0.36 s), the same in every table."""
    return f"{x:.4f}"


# --------------------------------------------------------------------------- reading the release


def _optional_bytes(store: Store, key: str) -> bytes | None:
    try:
        return store.get_bytes(key)
    except ObjectNotFound:
        return None


def _optional_parquet(store: Store, key: str) -> tuple[pa.Table | None, str | None]:
    """The table, or None with why (absent, unreadable)."""
    data = _optional_bytes(store, key)
    if data is None:
        return None, "absent"
    try:
        return pq.read_table(io.BytesIO(data)), None
    except (pa.ArrowException, OSError) as err:
        return None, f"unreadable ({err})"


def _column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with nulls as NaN."""
    return table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)


def _order_splits(splits) -> list[str]:
    splits = set(splits)
    return [s for s in SPLITS if s in splits] + sorted(splits - set(SPLITS))


def _normalise_uri(uri: str) -> str:
    if "://" in uri:
        return uri.rstrip("/")
    return Path(uri).expanduser().resolve().as_uri()


def _parent(uri: str) -> str:
    return uri.rstrip("/").rpartition("/")[0] or uri


# --------------------------------------------------------------------------- plots


def _plot_hours(by_domain_split: dict, splits: list[str]) -> bytes:
    domains = sorted(by_domain_split)
    fig = figure(max(6.0, 1.2 * len(domains) + 2), 4.2)
    ax = fig.subplots()
    x = np.arange(len(domains))
    width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        values = [by_domain_split[d].get(split, 0.0) for d in domains]
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    ax.set_xticks(x, domains)
    ax.set_ylabel("hours kept")
    ax.set_title("Hours kept per domain and split")
    ax.legend(title="split")
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def _bins(*arrays: np.ndarray, n: int = 40) -> np.ndarray:
    values = np.concatenate([a for a in arrays if a.size])
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _hist_pair(ax, kept: np.ndarray, rejected: np.ndarray, bins) -> None:
    # one filled outline per group (not a rectangle per bin): fast to draw on any number of bins
    for values, color, label in ((kept, KEPT_COLOR, "kept"), (rejected, REJECTED_COLOR, "rejected")):
        if values.size:
            ax.hist(values, bins=bins, histtype="stepfilled", color=color, alpha=0.45, edgecolor=color,
                    linewidth=1.2, label=f"{label} ({values.size})")
    _integer_axis(ax.yaxis)


def _plot_durations(kept: np.ndarray, rejected: np.ndarray) -> bytes:
    fig = figure(7.5, 4.0)
    ax = fig.subplots()
    _hist_pair(ax, kept, rejected, _bins(kept, rejected))
    ax.set_xlabel("segment duration (s)")
    ax.set_ylabel("segments")
    ax.set_title("Segment durations, kept vs rejected")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def _plot_confidences(domain: str, values: dict[str, tuple[np.ndarray, np.ndarray]],
                      thresholds: dict) -> bytes:
    from pipelines.rules import signal_thresholds  # the filter threshold drawn on each histogram

    threshold_of = signal_thresholds()
    metrics = list(values)
    fig = figure(4.3 * len(metrics), 3.8)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        kept, rejected = values[metric]
        if kept.size or rejected.size:
            _hist_pair(ax, kept, rejected, _bins(kept, rejected, n=30))
            limit = thresholds.get(threshold_of.get(metric, ""))
            if isinstance(limit, (int, float)) and not isinstance(limit, bool) and (
                    metric != "mean_word_prob" or limit > 0):
                ax.axvline(limit, color="black", linestyle="--", linewidth=1,
                           label=f"{threshold_of[metric]} = {num(float(limit))}")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(metric)
        ax.set_ylabel("segments")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"ASR confidences in domain {domain}, kept vs rejected")
    return png(fig)


def _plot_rejects(counts: list[tuple[str, int]]) -> bytes:
    fig = figure(7.5, max(2.5, 0.45 * len(counts) + 1.2))
    ax = fig.subplots()
    labels = [r for r, _ in counts][::-1]
    values = [n for _, n in counts][::-1]
    bars = ax.barh(labels, values, color=REJECTED_COLOR)
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xlabel("rejected segments carrying the reason")
    _integer_axis(ax.xaxis)
    ax.set_title("Rejects by reason")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def _plot_calibration(curves: dict[str, list[dict]], chosen: dict[str, dict | None], bad_wer) -> bytes:
    fig = figure(7.5, 4.6)
    ax = fig.subplots()
    for domain, curve in sorted(curves.items()):
        points = sorted(curve, key=lambda p: p["share_bad"])
        (line,) = ax.plot([p["share_bad"] for p in points], [p["hours_kept"] for p in points],
                          marker="o" if len(points) <= 60 else None, markersize=3, label=domain)
        pick = chosen.get(domain)
        if pick is not None:
            ax.plot([pick["share_bad"]], [pick["hours_kept"]], marker="*", markersize=15, color=line.get_color(),
                    markeredgecolor="black", linestyle="none")
    ax.set_xlabel(f"error: share of kept segments with WER > {_cell(bad_wer)}")
    ax.set_ylabel("yield: hours kept")
    ax.set_title("Calibration: yield against error per domain (star: chosen threshold)")
    ax.legend(title="domain")
    ax.grid(alpha=0.3)
    return png(fig)


# --------------------------------------------------------------------------- the sections


@dataclass
class _Facts:
    release: Release
    info: dict
    config: dict
    manifest: pa.Table
    kept: np.ndarray       # bool per manifest row
    duration: np.ndarray   # seconds per manifest row
    domains: list[str]
    splits: list[str]


def _overview(doc: Document, f: _Facts) -> None:
    counts, cfg = f.info.get("counts", {}), f.config
    if cfg.get("kind") == "truth":
        kind = "reference-labelled (`release-truth`: texts from a truth file, no ASR, nothing filtered)"
    elif "refiltered_from" in cfg:
        kind = f"re-filtered from release `{cfg['refiltered_from']}` with new thresholds (no new ASR)"
    elif "filter" in cfg and "sources" in cfg:
        kind = "built by `stt-corpus build` (ASR labels, filtered)"
    else:
        kind = "unknown (its config names no build kind)"
    doc.table("overview", ["item", "value"], [
        ["release", f.release.name], ["location", f.release.store.uri], ["created", f.info.get("created")],
        ["schema version", f.info.get("schema_version")], ["kind", kind.replace("`", "")],
        ["segments", counts.get("segments")], ["kept", counts.get("kept")], ["rejected", counts.get("rejected")],
        ["recordings", counts.get("recordings")], ["shards", counts.get("shards")],
        ["hours kept", hours(f.info.get("hours", {}).get("kept", 0.0))],
    ])


def _hours_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Hours per domain and split", "hours")
    recorded = f.info.get("hours", {}).get("kept_by_domain_split", {})
    splits = _order_splits({s for by in recorded.values() for s in by} | set(f.splits) | set(SPLITS))
    doc.p("Hours of kept audio (the audio in the shards), from `RELEASE.json`.")
    rows, totals = [], Counter()
    for domain in sorted(recorded):
        by = recorded[domain]
        rows.append([domain, *(hours(by.get(s, 0.0)) for s in splits), hours(sum(by.values()))])
        for s, h in by.items():
            totals[s] += h
    rows.append(["total", *(hours(totals[s]) for s in splits), hours(sum(totals.values()))])
    doc.table("hours", ["domain", *splits, "total"], rows, [False] + [True] * (len(splits) + 1))
    kept_rows = [{"domain": d, "split": s, "start": 0.0, "end": e} for d, s, e, k in
                 zip(_column(f.manifest, "domain"), _column(f.manifest, "split"), f.duration, f.kept) if k]
    derived = hours_by_domain_split(kept_rows)
    pairs = {(d, s) for d in set(derived) | set(recorded) for s in set(derived.get(d, {})) | set(recorded.get(d, {}))}
    if any(abs(derived.get(d, {}).get(s, 0.0) - recorded.get(d, {}).get(s, 0.0)) > 1e-6 for d, s in pairs):
        doc.p("**Warning:** the hours in `RELEASE.json` differ from the kept segments of the manifest; "
              "run `stt-corpus verify` on this release.")
    if recorded:
        doc.img("hours.png", _plot_hours(recorded, splits), "Bar plot: hours kept per domain, one bar per split")

    doc.h(3, "Segments per domain")
    domain_col = np.asarray(_column(f.manifest, "domain"), dtype=object)
    rec_col = np.asarray(_column(f.manifest, "recording_id"), dtype=object)
    rows = []
    for domain in f.domains:
        m = domain_col == domain
        rows.append([domain, len(set(rec_col[m])), int(m.sum()), int((m & f.kept).sum()), int((m & ~f.kept).sum()),
                     hours(f.duration[m & f.kept].sum() / 3600), hours(f.duration[m & ~f.kept].sum() / 3600)])
    doc.table("segments", ["domain", "recordings", "segments", "kept", "rejected", "hours kept", "hours rejected"],
              rows, [False] + [True] * 6)


def _durations_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Segment durations", "durations")
    kept, rejected = f.duration[f.kept], f.duration[~f.kept]
    rows = []
    for label, d in (("kept", kept), ("rejected", rejected)):
        if d.size:
            rows.append([label, d.size, f"{d.min():.2f}", f"{np.median(d):.2f}", f"{d.mean():.2f}", f"{d.max():.2f}"])
        else:
            rows.append([label, 0, None, None, None, None])
    doc.table("durations", ["segments", "count", "min s", "median s", "mean s", "max s"], rows,
              [False] + [True] * 5)
    if kept.size or rejected.size:
        doc.img("durations.png", _plot_durations(kept, rejected),
                "Histogram of segment durations in seconds, kept and rejected overlaid")


def _thresholds_for(config: dict, domain: str) -> dict:
    base = config.get("filter") if isinstance(config.get("filter"), dict) else {}
    per = (config.get("domain_filters") or {}).get(domain) if isinstance(config.get("domain_filters"), dict) else None
    return {**base, **(per or {})}


def _confidence_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "ASR confidences per domain", "confidences")
    present = {m: m in f.manifest.column_names and f.manifest.column(m).null_count < f.manifest.num_rows
               for m in CONFIDENCES + OPTIONAL_CONFIDENCES}
    if not any(present.values()):
        doc.p("No segment has ASR confidences (`avg_logprob`, `no_speech_prob`, `compression_ratio` are all null): "
              "the labels did not come from ASR (reference-labelled release), so there is nothing to plot.")
        return
    doc.p("Distributions of the decoder's confidences for kept and rejected segments; the dashed line is the "
          "filter threshold for that domain. Median and count per group (nulls left out).")
    domain_col = np.asarray(_column(f.manifest, "domain"), dtype=object)
    metrics = [m for m in CONFIDENCES + OPTIONAL_CONFIDENCES if m in CONFIDENCES or present[m]]
    columns = {m: _floats(f.manifest, m) if present[m] else np.full(f.manifest.num_rows, np.nan) for m in metrics}
    rows = []
    for domain in f.domains:
        m = domain_col == domain
        values = {}
        for metric in metrics:
            col = columns[metric]
            finite = np.isfinite(col)
            kept, rejected = col[m & f.kept & finite], col[m & ~f.kept & finite]
            values[metric] = (kept, rejected)
            rows.append([domain, metric, kept.size, f"{np.median(kept):.3f}" if kept.size else None,
                         rejected.size, f"{np.median(rejected):.3f}" if rejected.size else None])
        if any(k.size or r.size for k, r in values.values()):
            name = f"confidence-{domain}.png"
            doc.h(3, f"Domain {domain}")
            doc.img(name, _plot_confidences(domain, values, _thresholds_for(f.config, domain)),
                    f"Histograms of {', '.join(metrics)} in domain {domain}, kept and rejected overlaid")
        else:
            doc.p(f"Domain {domain}: no confidences recorded.")
    doc.h(3, "Confidence medians")
    doc.table("confidences", ["domain", "metric", "kept n", "kept median", "rejected n", "rejected median"], rows,
              [False, False, True, True, True, True])


def _rejects_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Rejected segments by reason", "rejects")
    rejected = int((~f.kept).sum())
    if not rejected:
        doc.p("No segment was rejected.")
        return
    reasons = _column(f.manifest, "reasons")
    by_reason, seconds = Counter(), Counter()
    for r, keep, d in zip(reasons, f.kept, f.duration):
        if keep:
            continue
        for reason in sorted(set(r or ["(no reason recorded)"])):
            by_reason[reason] += 1
            seconds[reason] += d
    ordered = sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    doc.p(f"{rejected} segments rejected ({hours(f.duration[~f.kept].sum() / 3600)} h). A segment carries every "
          "reason that applies, so the counts can add up to more than the number rejected.")
    doc.table("rejects", ["reason", "segments", "share of rejected", "hours"],
              [[r, n, f"{100 * n / rejected:.1f}%", hours(seconds[r] / 3600)] for r, n in ordered],
              [False, True, True, True])
    doc.img("rejects.png", _plot_rejects(ordered), "Horizontal bar plot: rejected segments per reason")


def _quarantine_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Quarantined files by reason", "quarantine")
    table, why = _optional_parquet(f.release.store, QUARANTINE_FILE)
    if table is None:
        doc.p(f"`{QUARANTINE_FILE}` is {why} in this release (releases not made by `stt-corpus build` have none): "
              "no quarantine to report.")
        return
    if table.num_rows == 0:
        doc.p("No file was quarantined: every source file was read and kept as a recording.")
        return
    statuses = _column(table, "status") if "status" in table.column_names else [None] * table.num_rows
    # a deferred file could not be read (access, availability): the next build reads it again
    reasons = [(f"deferred: {r}" if s == "deferred" else r) if r is not None else "(no reason recorded)"
               for r, s in zip(_column(table, "reason"), statuses)]
    domains = [d if d is not None else "?" for d in _column(table, "domain")]
    sizes = _column(table, "bytes") if "bytes" in table.column_names else _column(table, "size")
    count, by_domain, size = Counter(reasons), defaultdict(Counter), Counter()
    for r, d, b in zip(reasons, domains, sizes):
        by_domain[r][d] += 1
        size[r] += b or 0
    doc.p(f"{table.num_rows} files were set aside before segmentation (not decodable, too short or long, silent, "
          "duplicates …); they are in no split.")
    doc.table("quarantine", ["reason", "files", "bytes", "by domain"],
              [[r, n, size[r], ", ".join(f"{d} {c}" for d, c in sorted(by_domain[r].items()))]
               for r, n in sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))],
              [False, True, True, False])


def _point(p) -> dict | None:
    """A calibration point with its numbers as floats (nulls dropped); None if it lacks yield or error."""
    if not isinstance(p, dict):
        return None
    out = {k: float(v) for k, v in p.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return out if "hours_kept" in out and "share_bad" in out else None


def _spread(points: list, n: int, must: dict | None = None) -> list:
    """At most ``n`` points, evenly spread over the list, both ends and ``must`` (the chosen one) kept."""
    if len(points) <= n:
        return points
    idx = set(np.linspace(0, len(points) - 1, n).round().astype(int).tolist())
    if must is not None and must in points:
        idx.add(points.index(must))
    return [points[i] for i in sorted(idx)]


def _calibration_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Calibration", "calibration")
    data = _optional_bytes(f.release.store, CALIBRATION_FILE)
    if data is None:
        doc.p(f"No calibration: no gold set was given (`{CALIBRATION_FILE}` is absent from this release), so the "
              "thresholds were not measured against reference transcripts.")
        return
    try:
        calib = json.loads(data)
        domains = calib["domains"]
        curves = {str(d): [q for q in map(_point, v.get("curve") or []) if q] for d, v in domains.items()}
        chosen = {str(d): _point(v.get("chosen")) for d, v in domains.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        doc.p(f"`{CALIBRATION_FILE}` is present but unreadable ({type(err).__name__}: {err}); no curve shown.")
        return
    target = calib.get("target") if isinstance(calib.get("target"), dict) else {}
    bad_wer = target.get("bad_wer", BAD_WER)
    doc.p(f"Measured against a gold set (`{CALIBRATION_FILE}`): for each domain, yield (hours kept) against error "
          f"(share of kept segments whose WER against the gold transcript is above {_cell(bad_wer)}) as the "
          "threshold moves. Only the gold-matched segments count, so the hours are those of the gold set.")
    if target:
        doc.p("Target: " + ", ".join(f"`{k}` = {_cell(v)}" for k, v in sorted(target.items())))
    rows = []
    for domain, v in sorted(domains.items()):
        rules = [("release thresholds", v.get("release_thresholds")), ("default thresholds", v.get("default_thresholds")),
                 ("calibrated (chosen)", v.get("chosen")), ("calibrated, held out", v.get("heldout"))]
        for label, point in rules:
            if label == "calibrated (chosen)" and point is None:
                rows.append([domain, label, "no threshold meets the target", None, None, None, None])
                continue
            q = _point(point)
            if q is not None:
                rows.append([domain, label, q.get("threshold"), int(q["kept"]) if "kept" in q else None,
                             hours(q["hours_kept"]), q["share_bad"], q.get("wer_kept")])
    doc.table("calibration-summary", ["domain", "rule", "threshold", "kept segments", "hours kept", "share bad",
                                      "WER kept"], rows, [False, False, True, True, True, True, True])
    if any(curves.values()):
        doc.img("calibration.png", _plot_calibration({d: c for d, c in curves.items() if c}, chosen, bad_wer),
                f"Line plot per domain: hours kept against share of kept segments with WER above {bad_wer}")
        listed = {d: _spread(c, MAX_CURVE_ROWS, chosen.get(d)) for d, c in sorted(curves.items())}
        doc.p("Points of the curves" + (f" (at most {MAX_CURVE_ROWS} per domain, evenly spread; the plot has all)"
                                        if any(len(c) > MAX_CURVE_ROWS for c in curves.values()) else "") + ":")
        doc.table("calibration-curve", ["domain", "threshold", "hours kept", "share bad", "WER kept"],
                  [[d, p.get("threshold"), hours(p["hours_kept"]), p["share_bad"], p.get("wer_kept")]
                   for d, c in listed.items() for p in c], [False, True, True, True, True])
    else:
        doc.p("The calibration file has no curve points.")


def _match_source(uri: str, domain: str, sources: list[dict]) -> dict | None:
    """The config source a file belongs to: by uri prefix, else the domain's only source."""
    best = None
    for src in sources:
        prefix = src["_norm"]
        if uri == prefix or uri.startswith(prefix + "/"):
            if best is None or len(prefix) > len(best["_norm"]):
                best = src
    if best is None:
        same = [s for s in sources if s.get("domain") == domain]
        best = same[0] if len(same) == 1 else None
    return best


def _licence_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Licences per source", "licences")
    sources = [dict(s, _norm=_normalise_uri(str(s["uri"]))) for s in (f.config.get("sources") or [])
               if isinstance(s, dict) and s.get("uri")]
    kept_seconds: Counter = Counter()
    for rec, d, k in zip(_column(f.manifest, "recording_id"), f.duration, f.kept):
        if k:
            kept_seconds[rec] += d
    table, why = _optional_parquet(f.release.store, RECORDINGS_FILE)
    groups: dict[tuple, dict] = defaultdict(lambda: {"recordings": set(), "in": 0.0, "kept": 0.0, "known": True})
    if table is not None and table.num_rows and "recording_id" in table.column_names:
        doc.p(f"From `{RECORDINGS_FILE}` (one row per ingested recording, with the licence of its source).")
        uris = _column(table, "uri") if "uri" in table.column_names else _column(table, "source_uri")
        for rec, uri, src_uri, domain, licence, dur in zip(
                _column(table, "recording_id"), uris, _column(table, "source_uri"), _column(table, "domain"),
                _column(table, "licence"), _column(table, "duration")):
            src = src_uri if src_uri and src_uri != uri else (_match_source(uri or "", domain, sources) or {}).get("uri")
            g = groups[(src or _parent(uri or "?"), domain or "?", licence or "unknown")]
            g["recordings"].add(rec)
            g["in"] += dur or 0.0
            g["kept"] += kept_seconds.get(rec, 0.0)
    else:
        note = f"`{RECORDINGS_FILE}` is {why or 'empty'} in this release"
        doc.p(f"{note}; licences come from the manifest's `source_uri` matched to the config's sources"
              + (" (this config lists none, so every licence is unknown)." if not sources else "."))
        seen = {}
        for rec, uri, domain in zip(_column(f.manifest, "recording_id"), _column(f.manifest, "source_uri"),
                                    _column(f.manifest, "domain")):
            if rec in seen:
                continue
            seen[rec] = True
            src = _match_source(uri, domain, sources)
            key = (src["uri"], domain, src.get("licence") or "unknown") if src else \
                (_parent(uri), domain, "unknown (not recorded)")
            g = groups[key]
            g["recordings"].add(rec)
            g["known"] = False
            g["kept"] += kept_seconds.get(rec, 0.0)
    rows = [[src, domain, licence, len(g["recordings"]), hours(g["in"] / 3600) if g["known"] else None,
             hours(g["kept"] / 3600)] for (src, domain, licence), g in sorted(groups.items())]
    doc.table("licences", ["source", "domain", "licence", "recordings", "hours in", "hours kept"], rows,
              [False, False, False, True, True, True])
    licences = Counter()
    for (_, _, licence), g in groups.items():
        licences[licence] += g["kept"]
    if licences:
        doc.p("Hours kept per licence: " + ", ".join(f"{lic} {hours(s / 3600)} h" for lic, s in sorted(licences.items())))


def _splits_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Splits", "splits")
    split_col = np.asarray(_column(f.manifest, "split"), dtype=object)
    rec_col = np.asarray(_column(f.manifest, "recording_id"), dtype=object)
    fractions = f.config.get("splits") or f.config.get("split_fractions") or {}
    total_kept = f.duration[f.kept].sum()
    rows = []
    for split in _order_splits(set(f.splits) | set(SPLITS)):
        m = split_col == split
        h = f.duration[m & f.kept].sum()
        rows.append([split, len(set(rec_col[m])), int((m & f.kept).sum()), hours(h / 3600),
                     f"{100 * h / total_kept:.1f}%" if total_kept else None,
                     f"{100 * fractions[split]:.1f}%" if isinstance(fractions, dict) and split in fractions else None])
    doc.table("splits", ["split", "recordings", "kept segments", "hours kept", "share of hours", "configured share"],
              rows, [False] + [True] * 5)
    _leak_check(doc, f.manifest, "recording", "recording_id")
    groups = f.manifest.column("group") if "group" in f.manifest.column_names else None
    if groups is None or groups.null_count == f.manifest.num_rows:
        doc.p("The manifest declares no groups (no `group` values): splits are assigned per recording, so the "
              "recording check is the whole check.")
    elif pc.all(pc.equal(groups, f.manifest.column("recording_id"))).as_py():
        doc.p("No groups are declared beyond recordings (every `group` is its `recording_id`): splits are assigned "
              "per recording, so the recording check is the whole check.")
    else:
        _leak_check(doc, f.manifest, "declared group", "group")


def _leak_check(doc: Document, manifest: pa.Table, what: str, column: str) -> None:
    """State whether any value of ``column`` has segments in more than one split."""
    table = pa.table({"g": manifest.column(column), "split": manifest.column("split")})
    table = table.filter(pc.is_valid(table.column("g")))
    per = table.group_by("g").aggregate([("split", "distinct")])
    n = per.num_rows
    leaks = sorted((g, _order_splits(s)) for g, s in zip(per.column("g").to_pylist(),
                                                          per.column("split_distinct").to_pylist()) if len(s) > 1)
    if not leaks:
        doc.p(f"**Check passed:** no {what} appears in two splits ({n} {what}s checked, column `{column}`).")
        return
    doc.p(f"**Check FAILED:** {len(leaks)} of {n} {what}s appear in more than one split (column `{column}`):")
    doc.ul([f"`{g}`: {', '.join(s)}" for g, s in leaks[:MAX_LISTED]]
           + ([f"… and {len(leaks) - MAX_LISTED} more"] if len(leaks) > MAX_LISTED else []))


def _sample_label_fields(release: Release) -> tuple[Counter, int, list[str]]:
    """model_id / decode_params / label_source of the first sample of the first shard of each split/domain."""
    found: Counter = Counter()
    problems, sampled = [], 0
    try:
        index = release.index().to_pylist()
    except (ValueError, StoreError, pa.ArrowException) as err:
        return found, 0, [f"the shard index is unreadable: {err}"]
    first: dict[tuple, dict] = {}
    for shard in sorted(index, key=lambda s: s["url"]):
        first.setdefault((shard["split"], shard["domain"]), shard)
    for shard in first.values():
        try:
            stream = iter_shard_raw(release.store, shard["url"])
            try:
                _, group = next(stream)
            finally:
                stream.close()
            meta = json.loads(group["json"])
        except (StopIteration, StoreError, ShardError, KeyError, ValueError) as err:
            problems.append(f"{shard['url']}: {err}")
            continue
        sampled += 1
        found[(meta.get("model_id"), meta.get("decode_params"), meta.get("label_source"))] += 1
    return found, sampled, problems


def _model_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Model and decode parameters", "model")
    model = f.config.get("model")
    if isinstance(model, dict) and model:
        doc.p("The `model` section of the release's `config.yaml`:")
        doc.table("model", ["parameter", "value"], [[k, v] for k, v in sorted(model.items())], [False, False])
    else:
        doc.p("The release's config has no `model` section"
              + (" (reference-labelled: texts come from a truth file, not from a model)."
                 if f.config.get("kind") == "truth" else "."))
    found, sampled, problems = _sample_label_fields(f.release)
    if sampled:
        doc.p(f"Labels as stored with the audio: the first sample of {sampled} shard(s), one per split and domain.")
        rows = []
        for (model_id, params, source), n in sorted(found.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
            if isinstance(params, str):
                try:
                    params = json.dumps(json.loads(params), sort_keys=True)
                except ValueError:
                    pass
            rows.append([model_id, params, source, n])
        doc.table("labels", ["model_id", "decode_params", "label_source", "shards sampled"], rows,
                  [False, False, False, True])
        if all(m is None and p is None for m, p, _ in found):
            doc.p("The labels carry no `model_id` or `decode_params`.")
    for problem in problems:
        doc.p(f"Could not read labels from shard {problem}")


def _filter_section(doc: Document, f: _Facts) -> None:
    doc.h(2, "Filter thresholds", "filter")
    base = f.config.get("filter")
    per = f.config.get("domain_filters") if isinstance(f.config.get("domain_filters"), dict) else {}
    if not isinstance(base, dict) or not base:
        doc.p("The release's config has no `filter` section: no ASR filter was applied"
              + (" (reference-labelled release: every segment is kept)." if f.config.get("kind") == "truth" else "."))
        return
    domains = sorted(per)
    doc.p("The config's `filter` (the default for every domain)"
          + (f" and its `domain_filters`, which override it for {', '.join(domains)}." if domains
             else "; no per-domain thresholds (`domain_filters`) are set.")
          + " One row per setting of the filter's rules, with the reasons that read it; — where the release's "
            "config has no value (a setting newer than the release).")
    doc.table("filter", *_threshold_table(base, {d: per[d] or {} for d in domains}))


def _threshold_table(base: dict, per_domain: dict[str, dict]) -> tuple[list[str], list[list], list[bool]]:
    """One row per setting of the filter's rules (``pipelines.rules``, in their order), with the reasons
    that read it."""
    from pipelines.rules import threshold_table

    headers, rows = threshold_table(base, per_domain)
    return headers, rows, [False] + [True] * (len(headers) - 2) + [False]


# --------------------------------------------------------------------------- API


def render_datasheet(release: Release) -> tuple[str, str, dict[str, bytes]]:
    """The datasheet of ``release``: (markdown, html, {plot file name: PNG bytes})."""
    doc, title = _document(release)
    return to_markdown(doc), to_html(doc, title), dict(doc.images)


def _document(release: Release) -> tuple[Document, str]:
    manifest = release.manifest()
    config = release.config()
    config = config if isinstance(config, dict) else {}
    duration = (_floats(manifest, "end") - _floats(manifest, "start")) if manifest.num_rows else np.zeros(0)
    kept = np.asarray([d == "keep" for d in _column(manifest, "decision")], dtype=bool)
    f = _Facts(release=release, info=release.info, config=config, manifest=manifest, kept=kept, duration=duration,
               domains=sorted(set(_column(manifest, "domain"))), splits=_order_splits(_column(manifest, "split")))
    doc = Document(images_dir=PLOTS_DIR, format_cell=_cell)
    title = f"Datasheet: release {release.name}"
    doc.h(1, title)
    doc.p(f"Generated from the release's own files (`RELEASE.json`, `manifest.parquet`, `config.yaml` and, where "
          f"present, `{QUARANTINE_FILE}`, `{RECORDINGS_FILE}`, `{CALIBRATION_FILE}`). Plots are in `{PLOTS_DIR}/`.")
    _overview(doc, f)
    for section in (_hours_section, _durations_section, _confidence_section, _rejects_section, _quarantine_section,
                    _calibration_section, _licence_section, _splits_section, _model_section, _filter_section):
        section(doc, f)
    return doc, title


def write_datasheet(store: Store, release: str) -> list[str]:
    """Render the datasheet of ``release`` in ``store`` and write it into the release folder.

    Plots go first, then ``datasheet.md`` and ``datasheet.html`` (each write atomic), so a reader
    never sees a page linking a plot that is not there yet; plots of an earlier datasheet that this
    one no longer draws are deleted. Returns the keys written, relative to the release.
    """
    rel = Release.open(store, release)
    doc, title = _document(rel)
    written = list(save(rel.store, doc, markdown_key=MD_FILE, html_key=HTML_FILE, title=title))
    for key in rel.store.list(PLOTS_DIR):
        if key.endswith(".png") and key not in written:
            rel.store.delete(key)
    return written


def datasheet_url(store: Store, release: str) -> str:
    """Where the HTML datasheet of ``release`` is (what a build's summary points to)."""
    return store.url(f"releases/{release}/{HTML_FILE}")


def write_build_datasheet(store: Store, summary: dict) -> dict:
    """After ``run_build``: write the datasheet of the release its ``summary`` names.

    The summary gains the datasheet's time (a stage, counted in the wall time, as the whole
    command's) and its URL (``release.datasheet``); returned for chaining.
    """
    release = summary["release"]["name"]
    start = time.perf_counter()
    write_datasheet(store, release)
    seconds = round(time.perf_counter() - start, 3)
    summary["stage_seconds"]["datasheet"] = seconds
    summary["wall_seconds"] = round(summary["wall_seconds"] + seconds, 3)
    summary["release"]["datasheet"] = datasheet_url(store, release)
    return summary


def _cli(args) -> int:
    from corpus.store import open_store

    store = open_store(args.store, endpoint_url=args.endpoint_url)
    keys = write_datasheet(store, args.release)
    print(f"datasheet of release {args.release} written under {store.url(f'releases/{args.release}')}:",
          file=sys.stderr)
    for key in keys:
        print(key)
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``datasheet`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "datasheet", help="write a release's datasheet (markdown + HTML with plots)",
        description="Write (or rewrite) the datasheet of a committed release into its folder: datasheet.md, "
                    "datasheet.html (self-contained, no JavaScript) and plots/*.png. It reports hours per domain "
                    "and split, segment durations, ASR confidences per domain (kept vs rejected), rejected segments "
                    "and quarantined files by reason, the calibration curve when the release has calibration.json, "
                    "licences per source, recordings per split with a check that no recording or declared group "
                    "is in two splits, the model and decode parameters and the filter thresholds. Sections whose "
                    "inputs the release lacks (a reference-labelled release has no confidences or quarantine) say "
                    "so. Prints the keys written, relative to the release folder.")
    p.add_argument("--store", required=True, metavar="URI", help="local directory or s3://bucket/prefix holding releases/")
    p.add_argument("--release", required=True, metavar="NAME", help="release name under <store>/releases/")
    p.add_argument("--endpoint-url", metavar="URL", default=None,
                   help="S3 endpoint (MinIO, moto); default: $AWS_ENDPOINT_URL or AWS itself")
    p.set_defaults(func=_cli)
    return p


__all__ = ["render_datasheet", "write_datasheet", "write_build_datasheet", "datasheet_url", "add_cli"]
