"""``stt-corpus release-truth``: registered through the ``stt_corpus.commands`` entry point."""
from __future__ import annotations

import argparse
import json

from corpus.cli import add_store_args


def _run(args) -> int:
    from corpus.store import open_store
    from reference.releases import build_truth_release

    store = open_store(args.store, endpoint_url=args.endpoint_url)
    info = build_truth_release(args.audio_dir, store, args.release, truth=args.truth, progress=True)
    print(json.dumps({"release": info["name"], "counts": info["counts"], "hours": info["hours"]}, indent=2))
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``release-truth`` on an argparse subparsers object."""
    truth = subparsers.add_parser(
        "release-truth", help="write a release labelled by reference transcripts (no ASR)",
        description="Cut every utterance of a truth file (JSONL: file, start, end, text, domain; what gen-audio "
                    "writes) out of its recording and write them as a release of kept segments, with splits "
                    "assigned by recording. A gold release for training and calibration.")
    truth.add_argument("audio_dir", metavar="AUDIO_DIR", help="folder with the audio files the truth file names")
    truth.add_argument("--truth", metavar="FILE", default=None, help="truth JSONL (default AUDIO_DIR/truth.jsonl)")
    add_store_args(truth, release_help="name of the new release (must not exist yet)")
    truth.set_defaults(func=_run)
    return truth
