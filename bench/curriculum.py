"""Curriculum against uniform: the same release, seed, model and number of steps, two schedules.

Makes a release from gen-audio output (--minutes of 4-domain speech; splits by utterance so
every domain has validation and test data), then trains twice with ``training.train``:

  curriculum   the built-in default: short, clean-domain samples first (20% of the steps),
               weights moving to hours-proportional over all domains (next 30%), then all
  uniform      every domain in proportion to its training hours from the first step (baseline)

Everything else is equal (seed, so the same initial weights; model; optimiser; batch size;
steps). Prints CER and WER per domain on the validation and test splits for both, their
means, and the final training loss. On a CPU the default settings take a few minutes.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RELEASE = "bench-curriculum"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=16.0, help="minutes of gen-audio (default 16)")
    parser.add_argument("--steps", type=int, default=400, help="training steps of each run (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-seconds", type=float, default=16.0)
    parser.add_argument("--workdir", default=None, help="keep audio, release and runs here (default: a temp dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log training progress")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")

    from corpus.gen_audio import generate
    from corpus.store import open_store
    from training import train
    from training.gen_release import build_gen_release

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-curriculum-"))
    store = open_store(work / "store")
    if not store.exists(f"releases/{RELEASE}/RELEASE.json"):
        if not (work / "audio" / "truth.jsonl").exists():
            print(f"generating {args.minutes:g} min of gen-audio ...", flush=True)
            generate(work / "audio", minutes=args.minutes, seed=2)
        build_gen_release(work / "audio", store, RELEASE, max_shard_bytes=512 * 1024)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {}
    for schedule in ("default", "uniform"):
        name = f"{schedule}-{stamp}"
        print(f"training {schedule!r} for {args.steps} steps ...", flush=True)
        results[schedule] = train({
            "store": str(store.root), "release": RELEASE, "run": name, "curriculum": schedule, "seed": args.seed,
            "max_steps": args.steps, "batch_seconds": args.batch_seconds, "num_workers": 1, "lr": 3e-3,
            "warmup_steps": 50, "eval_every": args.steps, "checkpoint_every": args.steps, "log_every": 20,
            "model": {"d_model": 96, "num_layers": 2, "num_heads": 4, "ffn_dim": 256, "subsample_channels": 16},
        })
        r = results[schedule]
        where = f"; report {r.report_url}" if args.workdir else ""
        print(f"  {r.steps} steps, {r.audio_hours:.3f} h of audio, {r.wall_seconds:.0f} s wall, "
              f"{r.device_seconds:.0f} s on {r.device}{where}", flush=True)

    rows = {s: {(e["domain"], e["split"]): e for e in results[s].final_eval} for s in results}
    keys = sorted(rows["default"], key=lambda k: (k[1] != "validation", k[0]))
    print()
    print(f"{'domain':<11} {'split':<11} {'CER curriculum':>15} {'CER uniform':>12} {'WER curriculum':>15} "
          f"{'WER uniform':>12}")
    for key in keys:
        c, u = rows["default"][key], rows["uniform"][key]
        print(f"{key[0]:<11} {key[1]:<11} {c['cer']:15.3f} {u['cer']:12.3f} {c['wer']:15.3f} {u['wer']:12.3f}")
    for split in ("validation", "test"):
        means = {s: sum(rows[s][k]["cer"] for k in keys if k[1] == split) / sum(k[1] == split for k in keys)
                 for s in rows}
        print(f"{'mean':<11} {split:<11} {means['default']:15.3f} {means['uniform']:12.3f}")
    for schedule, result in results.items():
        loss = [r for r in _train_rows(store, result.run)][-1]
        print(f"final training loss ({schedule}): {loss:.3f}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _train_rows(store, run):
    from training.rundir import RunDir, run_store

    rows = RunDir(run_store(store, run)).get_rows("metrics.parquet")
    return [r["loss"] for r in sorted(rows, key=lambda r: r["step"]) if r["kind"] == "train" and r["domain"] == "all"]


if __name__ == "__main__":
    sys.exit(main())
