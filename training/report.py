"""The end-of-run report: markdown, PNG plots (matplotlib, Agg) and summary.json, on the run's store."""
from __future__ import annotations

import io
import json
import math
from collections import defaultdict

import yaml

PLOTS = ("loss.png", "cer.png", "curriculum.png")


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _figure(columns: int, width: float = 5.0):
    """A figure with ``columns`` panels side by side (no pyplot: no global state, any backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * columns, 4.2))
    axes = fig.subplots(1, columns, sharey=True, squeeze=False)[0]
    return fig, axes


def _colours() -> list[str]:
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _series(rows, **match):
    picked = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return sorted(picked, key=lambda r: r["step"])


AXES = (("step", "step"), ("audio_hours", "audio hours trained on"), ("wall_seconds", "wall seconds"),
        ("device_seconds", "device seconds"))


def plot_loss(metrics: list[dict], domains: list[str]) -> bytes:
    """Training loss (interval means), overall and per domain, against each of AXES."""
    fig, axes = _figure(len(AXES))
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
    fig, axes = _figure(len(AXES))
    colours = _colours()
    for axis, (x, label) in zip(axes, AXES):
        for d_i, domain in enumerate(domains):
            for split, style in (("validation", "-"), ("test", "--"), ("train", ":")):
                rows = [r for r in _series(metrics, kind="eval", domain=domain, split=split) if r["cer"] is not None]
                if rows:
                    axis.plot([r[x] for r in rows], [r["cer"] for r in rows], style, marker="o", ms=3,
                              color=colours[d_i % len(colours)], label=f"{domain} {split}")
        axis.set(xlabel=label, title=f"CER per domain against {label}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("CER")
    if axes[0].lines:
        axes[0].legend(fontsize=7)
    return _png(fig)


def plot_curriculum(realised: dict, planned: list[dict], domains: list[str]) -> bytes:
    phases = [p["name"] for p in planned]
    fig, (ax,) = _figure(1, width=max(6.0, 2.2 * len(phases)))
    width = 0.38
    bottoms_real = [0.0] * len(phases)
    bottoms_plan = [0.0] * len(phases)
    colours = _colours()
    for d_i, domain in enumerate(domains):
        real = []
        for p in phases:
            counts = realised.get(p, {})
            total = sum(c["samples"] for c in counts.values())
            real.append(counts.get(domain, {}).get("samples", 0) / total if total else 0.0)
        plan = [p["mean_weights"].get(domain, 0.0) for p in planned]
        colour = colours[d_i % len(colours)]
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


def render_markdown(summary: dict) -> str:
    s = summary
    lines = [f"# Training run `{s['run']}`", "",
             f"Release `{s['release']}` on `{s['store']}`; curriculum `{s['curriculum']['name']}` "
             f"({s['curriculum']['unit']} schedule); {s['steps']} steps; model {s['model']['parameters']:,} parameters "
             f"(CTC over {s['model']['vocab_size']} symbols).", ""]
    if s.get("curriculum_note"):
        lines += [f"Default curriculum: {s['curriculum_note']}.", ""]
    lines += ["## Error rates (greedy CTC decoding, last evaluation)", "",
              f"At step {s['final_eval_step']}." if s.get("final_eval_step") is not None else "No evaluation ran.", "",
              "| domain | split | samples | audio s | loss | CER | WER | example (reference → hypothesis) |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in s["final_eval"]:
        ex = row.get("example") or {}
        example = f"{ex.get('reference', '')} → {ex.get('hypothesis', '')}".replace("|", "/") if ex else ""
        lines.append(f"| {row['domain']} | {row['split']} | {row['samples']} | {_fmt(row['seconds'], 1)} | "
                     f"{_fmt(row['loss'])} | {_fmt(row['cer'])} | {_fmt(row['wer'])} | {example[:120]} |")
    for missing in s.get("eval_missing", []):
        lines.append(f"| {missing['domain']} | {missing['split']} | 0 | – | – | – | – | "
                     "no data in the release |")
    c = s["compute"]
    lines += ["", "![loss](loss.png)", "", "![CER](cer.png)", "",
              "## Compute", "",
              "| | |", "|---|---|",
              f"| device | {c['device']} |",
              f"| device-hours (forward, backward, optimiser) | {c['device_hours']:.4f} "
              f"({c['device_seconds']:.1f} s) |",
              f"| wall hours | {c['wall_seconds'] / 3600:.4f} ({c['wall_seconds']:.1f} s) |",
              f"| waiting for data | {c['data_wait_seconds']:.1f} s |",
              f"| evaluation | {c['eval_seconds']:.1f} s |",
              f"| audio hours processed | {c['audio_hours']:.4f} ({c['samples']} samples) |",
              f"| throughput | {c['audio_seconds_per_device_second']:.1f} audio s per device s; "
              f"{c['audio_seconds_per_wall_second']:.1f} audio s per wall s |", "",
              "## Curriculum as realised", "",
              "Samples trained on per phase and domain (share of the phase in brackets) against the phase's "
              "mean planned weight; `filtered` counts samples the phase's filters dropped.", ""]
    domains = s["curriculum"]["domains"]
    lines += ["| phase | steps | " + " | ".join(domains) + " |", "|---|---:|" + "---:|" * len(domains)]
    for phase in s["curriculum"]["phases"]:
        counts = s["realised"].get(phase["name"], {})
        total = sum(v["samples"] for v in counts.values())
        cells = []
        for d in domains:
            n = counts.get(d, {}).get("samples", 0)
            share = n / total if total else 0.0
            cells.append(f"{n} ({share:.2f}) / plan {phase['mean_weights'].get(d, 0):.2f}")
        lines.append(f"| {phase['name']} | {phase['steps_run']} | " + " | ".join(cells) + " |")
    lines += ["", "![curriculum](curriculum.png)", "",
              f"Filtered by phase filters: {s['data']['filtered']}; dropped as longer than a batch: "
              f"{s['data']['too_long']}.", "", "## Data problems", ""]
    corrupt = s["data"]["corrupt_shards"]
    if corrupt:
        lines.append(f"{sum(corrupt.values())} shard read(s) skipped because the shard failed its sha256 "
                     f"or was missing ({len(corrupt)} distinct shard(s)); none of their samples was trained on:")
        lines += [f"- `{url}`: skipped {n} time(s)" for url, n in sorted(corrupt.items())]
    else:
        lines.append("No shard failed its checksum.")
    if s["data"].get("eval_corrupt_shards"):
        lines.append(f"Evaluation skipped corrupt shards: {sorted(s['data']['eval_corrupt_shards'])}")
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(s["config"], sort_keys=True).rstrip(), "```", ""]
    return "\n".join(lines)


def planned_phases(schedule: dict, steps_by_phase: dict[str, int], weights_by_phase: dict[str, dict]) -> list[dict]:
    """Per phase: name and the mean planned weights over the steps actually run in it."""
    out = []
    for phase in schedule["phases"]:
        sums = weights_by_phase.get(phase["name"])
        n = steps_by_phase.get(phase["name"], 0)
        mean = {d: sums[d] / n for d in schedule["domains"]} if sums and n else dict(phase["weights"])
        out.append({"name": phase["name"], "steps_run": n, "mean_weights": mean})
    return out


def write_report(run, summary: dict, metrics: list[dict]) -> dict[str, str]:
    """Write report.md, the PNGs and summary.json to ``run`` (a RunDir); their urls by name."""
    domains = summary["curriculum"]["domains"]
    eval_domains = sorted({r["domain"] for r in metrics if r["kind"] == "eval"} | set(domains))
    files = {
        "loss.png": plot_loss(metrics, domains),
        "cer.png": plot_cer(metrics, eval_domains),
        "curriculum.png": plot_curriculum(summary["realised"], summary["curriculum"]["phases"], domains),
        "report.md": render_markdown(summary).encode(),
        "summary.json": json.dumps(summary, indent=2, sort_keys=True, default=str).encode(),
    }
    urls = {}
    for key, data in files.items():
        urls[key] = run.store.put_bytes(key, data).url
    return urls


def realised_table(counts: dict) -> dict:
    """``{phase: {domain: {"samples", "seconds"}}}`` with plain ints/floats, sorted."""
    out: dict = defaultdict(dict)
    for phase, by_domain in counts.items():
        for domain, value in sorted(by_domain.items()):
            out[phase][domain] = {"samples": int(value["samples"]), "seconds": float(value["seconds"])}
    return dict(out)
