"""Curriculum against uniform over several seeds: CER per domain (mean ± sd), held-out domain, speed.

Makes a release from gen-audio output (--minutes of 4-domain speech; splits by utterance so every
domain has validation and test data) in which the --held-out domain has no training data at all:
its utterances are all validation and test. Then, for each of --seeds seeds, trains twice with
``training.train``, everything equal but the schedule:

  curriculum   the built-in default: short, clean-domain samples first (20% of the steps),
               weights moving to hours-proportional over all domains (next 30%), then all
  uniform      every domain in proportion to its training hours from the first step (baseline)

Same seed means the same initial weights for both schedules; same model, optimiser, batch size
and --steps. Evaluates every --eval-every steps on the validation split (--eval-samples per
domain). Prints, per schedule:

  * final validation CER per domain, mean ± sd over the seeds (the held-out domain marked);
  * the mean validation CER over the trained domains at every evaluation (the convergence curve);
  * steps to reach --threshold on that mean, and steps to 90% of the run's own total improvement
    (from its first evaluation to its last), mean ± sd over seeds ("never" counts as not reached).

Each run's report.md under <workdir>/store/runs/ draws the same curves (cer.png). Writes the
figures as JSON to --out when given. On this 2-core machine the defaults take about 15 minutes.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RELEASE = "bench-curriculum"
SCHEDULES = {"curriculum": "default", "uniform": "uniform"}
MODEL = {"d_model": 96, "num_layers": 2, "num_heads": 4, "ffn_dim": 256, "subsample_channels": 16}


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _curve(rows: list[dict], domains: list[str]) -> dict[int, float]:
    """Step -> mean validation CER over ``domains``."""
    by_step: dict[int, list[float]] = {}
    for r in rows:
        if r["kind"] == "eval" and r["split"] == "validation" and r["domain"] in domains and r["cer"] is not None:
            by_step.setdefault(r["step"], []).append(r["cer"])
    return {s: sum(v) / len(v) for s, v in sorted(by_step.items()) if len(v) == len(domains)}


def steps_to(curve: dict[int, float], threshold: float) -> int | None:
    return next((s for s, c in curve.items() if c <= threshold), None)


def steps_to_fraction(curve: dict[int, float], fraction: float = 0.9) -> int | None:
    """First step by which the CER fell ``fraction`` of the way from the first evaluation to the last."""
    values = list(curve.values())
    if len(values) < 2 or values[0] <= values[-1]:
        return None
    target = values[0] - fraction * (values[0] - values[-1])
    return steps_to(curve, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=16.0, help="minutes of gen-audio (default 16)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run (default 300)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per schedule (default 3)")
    parser.add_argument("--eval-every", type=int, default=25, help="steps between evaluations (default 25)")
    parser.add_argument("--eval-samples", type=int, default=40, help="samples per domain and split (default 40)")
    parser.add_argument("--threshold", type=float, default=0.6,
                        help="mean validation CER (trained domains) to reach, for convergence speed (default 0.6)")
    parser.add_argument("--held-out", default="radio", help="domain left out of training (default radio; '' none)")
    parser.add_argument("--batch-seconds", type=float, default=16.0)
    parser.add_argument("--workdir", default=None, help="keep audio, release and runs here (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log training progress")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")

    from reference.gen_audio import generate
    from corpus.release import Release
    from corpus.store import open_store
    from training import train
    from reference.releases import build_gen_release
    from presentation.training_report import write_report
    from training.rundir import RunDir, run_store

    held_out = tuple(d for d in [args.held_out] if d)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-curriculum-"))
    store = open_store(work / "store")
    release = f"{RELEASE}-{'-'.join(held_out) or 'none'}-held-out"
    if not store.exists(f"releases/{release}/RELEASE.json"):
        if not (work / "audio" / "truth.jsonl").exists():
            print(f"generating {args.minutes:g} min of gen-audio ...", flush=True)
            generate(work / "audio", minutes=args.minutes, seed=2)
        build_gen_release(work / "audio", store, release, max_shard_bytes=512 * 1024, held_out=held_out)
    index = Release.open(store, release).index().to_pylist()
    trained = sorted({r["domain"] for r in index if r["split"] == "train"})
    print(f"release {release}: trained domains {trained}; held out (validation/test only): {list(held_out)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    finals: dict[str, dict[tuple[str, str], list[float]]] = {s: {} for s in SCHEDULES}
    curves: dict[str, list[dict[int, float]]] = {s: [] for s in SCHEDULES}
    walls: dict[str, list[float]] = {s: [] for s in SCHEDULES}
    for seed in range(args.seeds):
        for label, schedule in SCHEDULES.items():
            name = f"{label}-s{seed}-{stamp}"
            t0 = time.perf_counter()
            result = train({
                "store": str(store.root), "release": release, "run": name, "curriculum": schedule, "seed": seed,
                "max_steps": args.steps, "batch_seconds": args.batch_seconds, "num_workers": 1, "lr": 3e-3,
                "warmup_steps": 50, "eval_every": args.eval_every, "checkpoint_every": args.steps, "log_every": 25,
                "eval_max_samples": args.eval_samples, "eval_splits": ["validation"], "model": MODEL,
            })
            walls[label].append(time.perf_counter() - t0)
            write_report(run_store(store, name))  # as `stt-corpus train` does after the run
            for e in result.final_eval:
                if e["cer"] is not None:
                    finals[label].setdefault((e["domain"], e["split"]), []).append(e["cer"])
            curve = _curve(RunDir(run_store(store, name)).get_rows("metrics.parquet"), trained)
            curves[label].append(curve)
            first, last = next(iter(curve.values())), list(curve.values())[-1]
            print(f"seed {seed} {label:<10}: {result.steps} steps, {walls[label][-1]:.0f} s; mean validation CER "
                  f"(trained domains) {first:.3f} at step {next(iter(curve))} -> {last:.3f}", flush=True)

    print()
    print(f"final CER, mean ± sd over {args.seeds} seed(s), {args.steps} steps each")
    print(f"{'domain':<16} {'split':<11} {'curriculum':>15} {'uniform':>15}")
    keys = sorted(finals["uniform"], key=lambda k: (k[1] != "validation", k[0] in held_out, k[0]))
    for key in keys:
        mark = " (held out)" if key[0] in held_out else ""
        print(f"{key[0] + mark:<16} {key[1]:<11} {_mean_sd(finals['curriculum'].get(key, [])):>15} "
              f"{_mean_sd(finals['uniform'][key]):>15}")
    means = {}
    for split in ("validation",):
        for label in SCHEDULES:
            per_seed = [statistics.mean(finals[label][(d, split)][i] for d in trained)
                        for i in range(args.seeds)]
            means[(label, split)] = per_seed
        print(f"{'mean (trained)':<16} {split:<11} {_mean_sd(means[('curriculum', split)]):>15} "
              f"{_mean_sd(means[('uniform', split)]):>15}")

    print()
    print("mean validation CER over the trained domains by step (mean over seeds)")
    steps = sorted(set.intersection(*(set(c) for label in SCHEDULES for c in curves[label])))
    print(f"{'step':>6} {'curriculum':>11} {'uniform':>9}")
    for s in steps:
        row = [statistics.mean(c[s] for c in curves[label]) for label in SCHEDULES]
        print(f"{s:>6} {row[0]:11.3f} {row[1]:9.3f}")
    speed = {}
    print()
    for label in SCHEDULES:
        to_threshold = [steps_to(c, args.threshold) for c in curves[label]]
        to_90 = [steps_to_fraction(c) for c in curves[label]]
        speed[label] = {"to_threshold": to_threshold, "to_90_percent": to_90}
        reached = [s for s in to_threshold if s is not None]
        print(f"{label:<10}: steps to mean CER <= {args.threshold:g}: {_mean_sd(reached)} "
              f"({len(reached)}/{args.seeds} seeds reached it: {to_threshold}); steps to 90% of its own "
              f"improvement: {_mean_sd([s for s in to_90 if s is not None])} ({to_90}); "
              f"wall {_mean_sd(walls[label])} s")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "args": vars(args), "trained_domains": trained, "held_out": list(held_out),
            "final": {label: {f"{d}/{s}": v for (d, s), v in finals[label].items()} for label in SCHEDULES},
            "mean_trained": {f"{label}/{split}": v for (label, split), v in means.items()},
            "curves": {label: [{str(k): v for k, v in c.items()} for c in curves[label]] for label in SCHEDULES},
            "speed": speed, "wall_seconds": walls,
        }, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
