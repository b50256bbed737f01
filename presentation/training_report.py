"""A training run's report: ``report.md`` + ``report.html`` + ``loss.png``, ``cer.png``, ``curriculum.png``.

Rendered from what the run wrote into its folder, ``summary.json`` (``training.summary``) and
``metrics.parquet`` (``training.loop.METRICS``), so a finished run's report can be written again
at any time; the training loop itself renders nothing. ``stt-corpus train`` and the ``train``
flow write it after the run (rank 0 only).

Sections: error rates per domain and split at the last evaluation (with one example each), the
loss and CER curves against steps, audio hours, wall and device seconds; compute used; the
curriculum as realised against the plan; data problems (corrupt shards); the resolved config.
"""
from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import yaml

from corpus.store import ObjectNotFound, Store
from presentation.document import Document, colours, figure, png, save

REPORT_FILE = "report.md"
HTML_FILE = "report.html"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.parquet"
PLOTS = ("loss.png", "cer.png", "curriculum.png")
AXES = (("step", "step"), ("audio_hours", "audio hours trained on"), ("wall_seconds", "wall seconds"),
        ("device_seconds", "device seconds"))


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _panels(columns: int, width: float = 5.0):
    """A figure with ``columns`` panels side by side, sharing the y axis."""
    fig = figure(width * columns, 4.2, layout=None)
    return fig, fig.subplots(1, columns, sharey=True, squeeze=False)[0]


def _png(fig) -> bytes:
    return png(fig, dpi=110, tight=True)  # tight: the curriculum legend sits outside the axes


def _series(rows, **match):
    picked = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return sorted(picked, key=lambda r: r["step"])


def plot_loss(metrics: list[dict], domains: list[str]) -> bytes:
    """Training loss (interval means), overall and per domain, against each of AXES."""
    fig, axes = _panels(len(AXES))
    for axis, (x, label) in zip(axes, AXES):
        train = _series(metrics, kind="train", domain="all")
        axis.plot([r[x] for r in train], [r["loss"] for r in train], color="black", lw=2, label="all")
        for domain in domains:
            rows = [r for r in _series(metrics, kind="train", domain=domain) if r["loss"] is not None]
            if rows:
                axis.plot([r[x] for r in rows], [r["loss"] for r in rows], lw=1, alpha=0.8, label=domain)
        axis.set(xlabel=label, title=f"training loss against {label}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("CTC loss / label length")
    axes[0].legend(fontsize=8)
    return _png(fig)


def plot_cer(metrics: list[dict], domains: list[str]) -> bytes:
    """CER per domain (validation solid, test dashed, train dotted) against each of AXES."""
    fig, axes = _panels(len(AXES))
    cycle = colours()
    for axis, (x, label) in zip(axes, AXES):
        for d_i, domain in enumerate(domains):
            for split, style in (("validation", "-"), ("test", "--"), ("train", ":")):
                rows = [r for r in _series(metrics, kind="eval", domain=domain, split=split) if r["cer"] is not None]
                if rows:
                    axis.plot([r[x] for r in rows], [r["cer"] for r in rows], style, marker="o", ms=3,
                              color=cycle[d_i % len(cycle)], label=f"{domain} {split}")
        axis.set(xlabel=label, title=f"CER per domain against {label}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("CER")
    if axes[0].lines:
        axes[0].legend(fontsize=7)
    return _png(fig)


def plot_curriculum(realised: dict, planned: list[dict], domains: list[str]) -> bytes:
    """Per phase: the planned domain weights (hatched) beside the realised sample shares."""
    phases = [p["name"] for p in planned]
    fig, (ax,) = _panels(1, width=max(6.0, 2.2 * len(phases)))
    width = 0.38
    bottoms_real = [0.0] * len(phases)
    bottoms_plan = [0.0] * len(phases)
    cycle = colours()
    for d_i, domain in enumerate(domains):
        real = []
        for p in phases:
            counts = realised.get(p, {})
            total = sum(c["samples"] for c in counts.values())
            real.append(counts.get(domain, {}).get("samples", 0) / total if total else 0.0)
        plan = [p["mean_weights"].get(domain, 0.0) for p in planned]
        colour = cycle[d_i % len(cycle)]
        ax.bar([i - width / 2 for i in range(len(phases))], plan, width, bottom=bottoms_plan, color=colour,
               alpha=0.45, hatch="//", edgecolor="white")
        ax.bar([i + width / 2 for i in range(len(phases))], real, width, bottom=bottoms_real, color=colour,
               label=domain)
        bottoms_plan = [b + v for b, v in zip(bottoms_plan, plan)]
        bottoms_real = [b + v for b, v in zip(bottoms_real, real)]
    ax.set_xticks(range(len(phases)), [f"{p}\n(planned | realised)" for p in phases])
    ax.set(ylabel="share of samples", title="curriculum: planned weights (hatched) and realised sample shares",
           ylim=(0, 1.05))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def _error_rates(doc: Document, s: dict) -> None:
    doc.h(2, "Error rates (greedy CTC decoding, last evaluation)", "error-rates")
    doc.p(f"At step {s['final_eval_step']}." if s.get("final_eval_step") is not None else "No evaluation ran.")
    rows = []
    for row in s["final_eval"]:
        ex = row.get("example") or {}
        example = f"{ex.get('reference', '')} → {ex.get('hypothesis', '')}" if ex else ""
        rows.append([row["domain"], row["split"], row["samples"], _fmt(row["seconds"], 1), _fmt(row["loss"]),
                     _fmt(row["cer"]), _fmt(row["wer"]), example[:120]])
    for missing in s.get("eval_missing", []):
        rows.append([missing["domain"], missing["split"], 0, "–", "–", "–", "–", "no data in the release"])
    doc.table("error-rates", ["domain", "split", "samples", "audio s", "loss", "CER", "WER",
                              "example (reference → hypothesis)"], rows,
              [False, False, True, True, True, True, True, False])


def _compute(doc: Document, c: dict) -> None:
    doc.h(2, "Compute", "compute")
    doc.table("compute", ["measure", "value"], [
        ["device", c["device"]],
        ["device-hours (forward, backward, optimiser)", f"{c['device_hours']:.4f} ({c['device_seconds']:.1f} s)"],
        ["wall hours", f"{c['wall_seconds'] / 3600:.4f} ({c['wall_seconds']:.1f} s)"],
        ["waiting for data", f"{c['data_wait_seconds']:.1f} s"],
        ["evaluation", f"{c['eval_seconds']:.1f} s"],
        ["audio hours processed", f"{c['audio_hours']:.4f} ({c['samples']} samples)"],
        ["throughput", f"{c['audio_seconds_per_device_second']:.1f} audio s per device s; "
                       f"{c['audio_seconds_per_wall_second']:.1f} audio s per wall s"],
    ])


def _curriculum(doc: Document, s: dict, curriculum_png: bytes) -> None:
    doc.h(2, "Curriculum as realised", "curriculum")
    doc.p("Samples trained on per phase and domain (share of the phase in brackets) against the phase's "
          "mean planned weight; `filtered` counts samples the phase's filters dropped.")
    domains = s["curriculum"]["domains"]
    rows = []
    for phase in s["curriculum"]["phases"]:
        counts = s["realised"].get(phase["name"], {})
        total = sum(v["samples"] for v in counts.values())
        cells = []
        for d in domains:
            n = counts.get(d, {}).get("samples", 0)
            cells.append(f"{n} ({n / total if total else 0.0:.2f}) / plan {phase['mean_weights'].get(d, 0):.2f}")
        rows.append([phase["name"], phase["steps_run"], *cells])
    doc.table("curriculum", ["phase", "steps", *domains], rows, [False, True] + [True] * len(domains))
    doc.img("curriculum.png", curriculum_png, "curriculum")
    doc.p(f"Filtered by phase filters: {s['data']['filtered']}; dropped as longer than a batch: "
          f"{s['data']['too_long']}.")


def _data_problems(doc: Document, data: dict) -> None:
    doc.h(2, "Data problems", "data-problems")
    corrupt = data["corrupt_shards"]
    if corrupt:
        doc.p(f"{sum(corrupt.values())} shard read(s) skipped because the shard failed its sha256 "
              f"or was missing ({len(corrupt)} distinct shard(s)); none of their samples was trained on:")
        doc.ul([f"`{url}`: skipped {n} time(s)" for url, n in sorted(corrupt.items())])
    else:
        doc.p("No shard failed its checksum.")
    if data.get("eval_corrupt_shards"):
        doc.p(f"Evaluation skipped corrupt shards: {sorted(data['eval_corrupt_shards'])}")


def render_report(summary: dict, metrics: list[dict]) -> tuple[Document, str]:
    """The report of a run from its summary and metric rows: (document, title)."""
    s = summary
    domains = s["curriculum"]["domains"]
    eval_domains = sorted({r["domain"] for r in metrics if r["kind"] == "eval"} | set(domains))
    doc = Document()
    title = f"Training run `{s['run']}`"
    doc.h(1, title)
    doc.p(f"Release `{s['release']}` on `{s['store']}`; curriculum `{s['curriculum']['name']}` "
          f"({s['curriculum']['unit']} schedule); {s['steps']} steps; model {s['model']['parameters']:,} parameters "
          f"(CTC over {s['model']['vocab_size']} symbols).")
    if s.get("curriculum_note"):
        doc.p(f"Default curriculum: {s['curriculum_note']}.")
    _error_rates(doc, s)
    doc.img("loss.png", plot_loss(metrics, domains), "loss")
    doc.img("cer.png", plot_cer(metrics, eval_domains), "CER")
    _compute(doc, s["compute"])
    _curriculum(doc, s, plot_curriculum(s["realised"], s["curriculum"]["phases"], domains))
    _data_problems(doc, s["data"])
    doc.h(2, "Config", "config")
    doc.code(yaml.safe_dump(s["config"], sort_keys=True), "yaml")
    return doc, title.replace("`", "")


def write_report(run: Store, summary: dict | None = None, metrics: list[dict] | None = None) -> dict[str, str]:
    """Write the report of the run whose folder is ``run``; the URLs written, by key.

    ``summary`` and ``metrics`` default to the run's own ``summary.json`` and ``metrics.parquet``
    (what a finished run leaves); a run that has not finished has no summary and gets no report.
    """
    if summary is None:
        try:
            summary = json.loads(run.get_bytes(SUMMARY_FILE))
        except ObjectNotFound:
            raise ValueError(f"no {SUMMARY_FILE} in {run.uri}: the run has not finished, so there is nothing "
                             "to report") from None
    if metrics is None:
        try:
            metrics = pq.read_table(io.BytesIO(run.get_bytes(METRICS_FILE))).to_pylist()
        except ObjectNotFound:
            metrics = []
    doc, title = render_report(summary, metrics)
    return save(run, doc, markdown_key=REPORT_FILE, html_key=HTML_FILE, title=title)


__all__ = ["render_report", "write_report", "plot_loss", "plot_cer", "plot_curriculum", "REPORT_FILE", "PLOTS"]
