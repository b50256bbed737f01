"""``stt-corpus train``: train a CTC model on a release streamed from a store, with a curriculum."""
from __future__ import annotations

import argparse
import json
import os
import sys

DESCRIPTION = """\
Train a compact CTC speech recogniser (a torchaudio Conformer over characters) on a release,
streaming its shards from the store (S3 or a local directory) with no local copy. Each shard's
sha256 is checked before any of its samples is used; a shard that fails is skipped, logged and
counted in the report (--fail-on-corrupt-shard makes it fatal). Batches hold up to
--batch-seconds of audio (dynamic batching); training samples get SpecAugment masking.

Curriculum (--curriculum): 'default' starts on short, confident samples of the clean domain(s)
and widens to every domain; 'uniform' mixes domains in proportion to their training hours (the
baseline); or a YAML file of phases:

  name: clean-first
  phases:
    - name: clean-short
      steps: 300                  # or hours: (of audio trained on) or fraction: (of the run's budget)
      weights: {audiobook: 3, phone: 1}        # relative; domains left out get 0
      filters: {max_duration: 6.0, min_confidence: -0.4}   # seconds; minimum avg_logprob
    - name: all
      weights: hours              # 'hours' (proportional to training hours) or 'equal'
      interpolate: true           # move linearly from the previous phase's weights over this phase

The last phase may leave its length out. Unknown keys, negative weights, empty domains, and
domains without training data are errors before anything runs.

Writes to <store>/runs/<run>/: config.json, curriculum.yaml, vocab.json,
checkpoints/ (model, optimiser, curriculum and per-worker stream positions; --resume continues
from the latest one exactly as if never stopped), metrics.parquet (train loss per domain every
--log-every steps; loss, CER and WER per domain on the validation and test splits every
--eval-every steps), samples/ (every trained sample's key per step), at the end summary.json and
then the report (report.md, report.html with loss.png, cer.png, curriculum.png): error rates,
compute used (device, device-hours, audio hours, throughput) and the curriculum as realised.
"""

_FIELDS = ("store", "release", "run", "endpoint_url", "curriculum", "max_steps", "max_hours", "device", "seed",
           "num_workers", "batch_seconds", "log_every", "eval_every", "checkpoint_every", "threads")


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` on an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train a CTC model on a release streamed from the store, with a curriculum",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", metavar="URI", help="local directory or s3://bucket/prefix holding releases/ and runs/")
    p.add_argument("--release", metavar="NAME", help="release to train on (under <store>/releases/)")
    p.add_argument("--run", metavar="NAME", help="run name: outputs go to <store>/runs/<NAME>/")
    p.add_argument("--curriculum", metavar="FILE",
                   help="curriculum YAML, or 'default' / 'uniform' (default: 'default'; on --resume: the run's own)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimiser steps")
    budget.add_argument("--max-hours", type=float, metavar="H", help="stop after H hours of audio trained on")
    p.add_argument("--resume", action="store_true",
                   help="continue the run from its latest checkpoint (settings not given are the run's own)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto: CUDA when present (with AMP)")
    p.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint (MinIO, moto); default: $AWS_ENDPOINT_URL")
    p.add_argument("--config", metavar="FILE",
                   help="YAML of further settings (any field of training.config.TrainConfig); command-line options win")
    p.add_argument("--seed", type=int, help="seed of the model, the data order and the masks (default 0)")
    p.add_argument("--num-workers", type=int, metavar="N", help="DataLoader worker processes (default 1)")
    p.add_argument("--batch-seconds", type=float, metavar="S", help="audio seconds per batch (default 60)")
    p.add_argument("--log-every", type=int, metavar="N", help="steps between training-loss rows (default 10)")
    p.add_argument("--eval-every", type=int, metavar="N", help="steps between evaluations (default 200)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="steps between checkpoints (default 200)")
    p.add_argument("--eval-splits", metavar="LIST",
                   help="comma-separated splits to evaluate on (default validation,test; 'train' for a release "
                        "without held-out data, reported as such)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.add_argument("--nproc", type=int, metavar="N", default=1,
                   help="ranks on this machine (DistributedDataParallel: gloo on CPU, NCCL on CUDA, one GPU each); "
                        "also runs under torchrun: torchrun --nproc-per-node N -m training train ...")
    p.add_argument("--fail-on-corrupt-shard", action="store_true", default=None,
                   help="stop when a shard fails its checksum (default: skip it and count it)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_train)
    return p


def config_from_args(args):
    """The run's TrainConfig: --config file, then (on --resume) the run's saved config, then the options given."""
    import yaml

    from corpus.store import open_store
    from training.config import config_from_dict
    from training.rundir import RunDir, RunError, run_store

    data: dict = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{args.config}: a training config is a mapping of fields")
    given = {k: getattr(args, k) for k in _FIELDS if getattr(args, k, None) is not None}
    if args.fail_on_corrupt_shard:
        given["fail_on_corrupt_shard"] = True
    if args.eval_splits:
        given["eval_splits"] = [s.strip() for s in args.eval_splits.split(",") if s.strip()]
    data.update(given)
    missing = [f"--{k}" for k in ("store", "run") if not data.get(k)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} required")
    if args.resume:
        store = open_store(data["store"], endpoint_url=data.get("endpoint_url"))
        run = RunDir(run_store(store, data["run"]))
        if not run.store.exists("config.json"):
            raise RunError(f"nothing to resume: no run {data['run']!r} at {run.store.uri}")
        saved = run.get_json("config.json")
        if "max_steps" in given or "max_hours" in given:  # a new budget replaces the old one whole
            saved.pop("max_steps", None)
            saved.pop("max_hours", None)
        data = {**saved, **data, "resume": True}
    return config_from_dict(data, source="the training options")


def _cmd_train(args) -> int:
    import os

    if args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from training.distributed import launch

        config_from_args(args)  # a bad option fails here, once, before any rank starts
        return launch(_rank_argv(args), args.nproc)

    from training.loop import train

    config = config_from_args(args)
    result = train(config)
    if result.rank != 0:  # rank 0 reports and prints for the run
        return 0
    from corpus.store import open_store
    from presentation.training_report import REPORT_FILE, write_report
    from training.rundir import run_store

    result.files.update(write_report(run_store(open_store(config.store, endpoint_url=config.endpoint_url),
                                               config.run)))
    result.report_url = result.files[REPORT_FILE]
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    print(f"run {result.run}: {result.steps} steps, {result.audio_hours:.3f} h of audio, "
          f"{result.wall_seconds:.0f} s wall, {result.device_seconds:.0f} s on {result.device}")
    first = {(r["domain"], r["split"]): r for r in result.first_eval}
    first_step = result.first_eval[0]["step"] if result.first_eval else None
    if first_step is not None and first_step != result.final_eval_step:
        print(f"  {'domain':<12} {'split':<10} CER at step {first_step} -> {result.final_eval_step}    "
              f"WER at step {result.final_eval_step}")
    for row in result.final_eval:
        cer = "–" if row["cer"] is None else f"{row['cer']:.3f}"
        wer = "–" if row["wer"] is None else f"{row['wer']:.3f}"
        before = first.get((row["domain"], row["split"]))
        if first_step is not None and first_step != result.final_eval_step and before and before["cer"] is not None:
            cer = f"{before['cer']:.3f} -> {cer}"
        print(f"  {row['domain']:<12} {row['split']:<10} CER {cer}  WER {wer}  ({row['samples']} samples)")
    if result.corrupt_shards:
        print(f"  skipped {sum(result.corrupt_shards.values())} corrupt shard read(s): {sorted(result.corrupt_shards)}")
    print(f"report: {result.report_url}")
    return 0


def _rank_argv(args) -> list[str]:
    """The command line of one rank: this one's, without --nproc."""
    argv = getattr(args, "argv", None) or sys.argv[1:]
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    if "train" in out:  # `stt-corpus [-v] train ...` and `python -m training.cli [-v] train ...` alike
        out = out[out.index("train"):]
        if args.__dict__.get("verbose"):
            out = ["-v", *out]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m training.cli train ...`` (the same command as ``stt-corpus train``)."""
    parser = argparse.ArgumentParser(prog="python -m training.cli")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    rank = f"[rank {os.environ['RANK']}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    from corpus.logs import configure_logging

    configure_logging(args.verbose, fmt=f"%(asctime)s %(levelname)s {rank}%(name)s: %(message)s")  # credentials redacted
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
