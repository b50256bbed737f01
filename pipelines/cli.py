"""``stt-corpus build``: registered through the ``stt_corpus.commands`` entry point."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Build a corpus release from raw audio, as a Ray job:

  ingest   list audio under each source (local folder or s3:// prefix), decode to 16 kHz mono,
           hash it, drop exact duplicates; bad files become quarantine rows with a reason
  segment  Silero VAD, speech packed into 2-30 s segments
  label    faster-whisper in a Ray actor pool (CUDA float16 if a GPU is present, else CPU int8)
  filter   rules with reason codes (avg_logprob, no_speech_prob, compression ratio, chars/s,
           repetition, duration); rejected segments stay in the manifest
  shard    WebDataset shards per (split, domain), then the release is committed

Work is saved per file and per recording under <store>/work/, so a rerun after a crash skips
what is done, and a build over the same sources plus new files only processes the new ones.
Flags override the config file; a config is needed unless --source and --release are given.

Example config (build.yaml):
  release: v1
  store: s3://corpus-bucket/stt
  sources:
    - {uri: s3://raw-audio/calls, domain: phone, language: en, licence: CC-BY-4.0}
    - {uri: ./raw/audiobooks, domain: audiobook}
  model: {name: base, device: auto, batch_size: 8}
  filter: {min_avg_logprob: -1.0, max_no_speech_prob: 0.6, max_compression_ratio: 2.4}
  resources: {decode_workers: 1, label_actors: 1}
"""


def _run(args) -> int:
    from corpus.store import open_store
    from pipelines.build import run_build
    from pipelines.config import ConfigError, load_config, parse_source_flags
    from presentation.datasheet import write_build_datasheet
    from presentation.run_summary import format_summary

    if args.config is None and not (args.source and args.release):
        raise ConfigError("give --config FILE, or at least --source DOMAIN=URI and --release NAME")
    config = load_config(args.config, release=args.release, store=args.store, endpoint_url=args.endpoint_url,
                         ray_address=args.ray_address, model_name=args.model, device=args.device,
                         sources=parse_source_flags(args.source) if args.source else None)
    summary = run_build(config, progress=not args.no_progress)
    write_build_datasheet(open_store(config.store, endpoint_url=config.endpoint_url), summary)
    print(format_summary(summary))
    return 0


REFILTER_DESCRIPTION = """\
Write a new release from an existing one with new filter thresholds, without running ASR.

Every segment of the source release's manifest is decided again; audio of segments kept before
is copied from its shards, segments kept only now are cut from their source recording. Segment
ids, texts and splits stay the same. Thresholds come from a YAML fragment (--thresholds FILE,
either a flat mapping or {filter: {...}, domain_filters: {DOMAIN: {...}}}) and/or --set.

Example:
  stt-corpus refilter --store s3://corpus/stt --from v1 --release v1-strict --set min_avg_logprob=-0.5
"""


def _parse_sets(pairs: list[str]) -> tuple[dict, dict]:
    flat, per_domain = {}, {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set must be KEY=VALUE or DOMAIN.KEY=VALUE, got {pair!r}")
        number = float(value) if key.rsplit(".", 1)[-1] != "max_word_repeats" else int(value)
        if "." in key:
            domain, _, name = key.partition(".")
            per_domain.setdefault(domain, {})[name] = number
        else:
            flat[key] = number
    return flat, per_domain


def read_thresholds(path: str | None) -> tuple[dict, dict]:
    """A thresholds fragment: flat, or {filter: {...}, domain_filters: {...}} (what calibrate writes)."""
    import yaml

    if not path:
        return {}, {}
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if "filter" in data or "domain_filters" in data:
        return dict(data.get("filter") or {}), dict(data.get("domain_filters") or {})
    return dict(data), {}


def _run_refilter(args) -> int:
    import json

    from corpus.store import open_store
    from pipelines.refilter import refilter_release
    from presentation.datasheet import datasheet_url, write_datasheet

    thresholds, per_domain = read_thresholds(args.thresholds)
    flat, domains = _parse_sets(args.set)
    thresholds.update(flat)
    for domain, values in domains.items():
        per_domain.setdefault(domain, {}).update(values)
    store = open_store(args.store, endpoint_url=args.endpoint_url)
    summary = refilter_release(store, args.source, args.release, thresholds=thresholds,
                               domain_thresholds=per_domain, endpoint_url=args.endpoint_url, progress=True)
    write_datasheet(store, args.release)
    summary["datasheet"] = datasheet_url(store, args.release)
    print(json.dumps({k: summary[k] for k in ("source_release", "release", "segments", "kept", "rejected",
                                               "rejects_by_reason", "audio_reused", "audio_recut", "datasheet")},
                     indent=2))
    return 0


CALIBRATE_DESCRIPTION = """\
Measure label error on a gold set and propose filter thresholds for a target error.

The gold file is JSONL in gen-audio's truth.jsonl form: one object per utterance with `file`
(base name or path of the source file), `start`, `end` (seconds) and `text`; extra fields are
allowed; several --gold files add up. Gold utterances are matched to the release's segments;
WER/CER of each label is computed; each threshold and a combined confidence (a logistic model
fitted on the gold set) are swept per domain, giving yield (hours kept) against error (share of
kept segments with WER > 0.3, WER of the kept set). Gold items whose confident label differs
from them only in spelling are flagged as gold/label disagreement and not used as truth.

Writes calibration.json into the release (the datasheet plots it) and, with --out, the proposed
thresholds as a YAML fragment for `stt-corpus refilter --thresholds FILE`.
"""


def _run_calibrate(args) -> int:
    import yaml

    from corpus.release import Release
    from corpus.store import open_store
    from reference.releases import read_truth
    from pipelines.calibrate import calibrate, format_report, save, thresholds_fragment

    gold = [item for path in args.gold for item in read_truth(path)]
    release = Release.open(open_store(args.store, endpoint_url=args.endpoint_url), args.release)
    result = calibrate(release, gold, target_share_bad=args.target_bad_share)
    print(format_report(result))
    print(f"calibration saved to {save(release, result)}")
    from presentation.datasheet import datasheet_url, write_datasheet

    store = open_store(args.store, endpoint_url=args.endpoint_url)
    write_datasheet(store, args.release)
    print(f"datasheet regenerated with the calibration curve: {datasheet_url(store, args.release)}")
    if args.out:
        with open(args.out, "w") as fh:
            yaml.safe_dump(thresholds_fragment(result), fh, sort_keys=True)
        print(f"proposed thresholds written to {args.out} (apply with `stt-corpus refilter --thresholds {args.out}`)")
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    calibrate = subparsers.add_parser("calibrate", help="measure label error on a gold set; propose thresholds",
                                      description=CALIBRATE_DESCRIPTION,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    calibrate.add_argument("--store", required=True, metavar="URI", help="store holding the release")
    calibrate.add_argument("--release", required=True, metavar="NAME", help="a release made by `stt-corpus build`")
    calibrate.add_argument("--gold", required=True, action="append", metavar="FILE", help="gold JSONL (repeatable)")
    calibrate.add_argument("--target-bad-share", type=float, default=0.02, metavar="X",
                           help="largest share of kept segments with WER > 0.3 (default 0.02)")
    calibrate.add_argument("--out", metavar="FILE", help="write the proposed thresholds here (YAML)")
    calibrate.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint; default $AWS_ENDPOINT_URL")
    calibrate.set_defaults(func=_run_calibrate)

    refilter = subparsers.add_parser("refilter", help="new thresholds -> a new release, without ASR",
                                     description=REFILTER_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    refilter.add_argument("--store", required=True, metavar="URI", help="store holding the releases")
    refilter.add_argument("--from", dest="source", required=True, metavar="NAME", help="the release to re-filter")
    refilter.add_argument("--release", required=True, metavar="NAME", help="name of the new release")
    refilter.add_argument("--thresholds", metavar="FILE", help="YAML thresholds fragment (e.g. from calibrate)")
    refilter.add_argument("--set", action="append", default=[], metavar="[DOMAIN.]KEY=VALUE",
                          help="one threshold, e.g. min_avg_logprob=-0.5 or phone.max_no_speech_prob=0.4")
    refilter.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint; default $AWS_ENDPOINT_URL")
    refilter.set_defaults(func=_run_refilter)

    parser = subparsers.add_parser("build", help="build a corpus release from raw audio (Ray job)",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="build.yaml (unknown keys are an error)")
    parser.add_argument("--source", action="append", default=[], metavar="DOMAIN=URI",
                        help="a source folder or s3:// prefix of raw audio and its domain (repeatable; "
                             "replaces the config's sources)")
    parser.add_argument("--store", metavar="URI", help="where work/ and releases/ go (local dir or s3://bucket/prefix)")
    parser.add_argument("--release", metavar="NAME", help="name of the release to write (must not exist yet)")
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster instead of starting a local one")
    parser.add_argument("--model", metavar="PATH_OR_NAME", help="faster-whisper model (default base, offline; tiny.en also offline)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the ASR model runs (default auto)")
    parser.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint (MinIO, moto); default $AWS_ENDPOINT_URL")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)
    return parser
