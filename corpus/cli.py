"""``stt-corpus``: the command line. Each subcommand's ``--help`` says what it does."""
from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Build speech-to-text corpora from raw audio and check them.

A store is a local directory (the default) or s3://bucket/prefix; for MinIO or another
S3-compatible endpoint set AWS_ENDPOINT_URL or pass --endpoint-url. Releases live under
<store>/releases/<name>/ and exist once their RELEASE.json is written.
"""


def add_store_args(parser: argparse.ArgumentParser, *, release_help: str) -> None:
    parser.add_argument("--store", required=True, metavar="URI",
                        help="local directory or s3://bucket/prefix holding releases/")
    parser.add_argument("--release", required=True, metavar="NAME", help=release_help)
    parser.add_argument("--endpoint-url", metavar="URL", default=None,
                        help="S3 endpoint (MinIO, moto); default: $AWS_ENDPOINT_URL or AWS itself")


def _cmd_verify(args) -> int:
    from corpus.release import verify_release
    from corpus.store import open_store

    store = open_store(args.store, endpoint_url=args.endpoint_url)
    problems = verify_release(store, args.release)
    if problems:
        print(f"release {args.release} at {store.uri} FAILED verification ({len(problems)} problems):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    from corpus.release import Release

    info = Release.open(store, args.release).info
    counts = info["counts"]
    print(f"release {args.release} at {store.uri} verified: {counts['kept']} kept / {counts['segments']} segments, "
          f"{counts['shards']} shards, {info['hours']['kept']:.3f} h kept; every checksum and count matches")
    return 0


def _plugin_commands():
    """``add_cli(subparsers)`` functions registered under the ``stt_corpus.commands`` entry points."""
    from importlib.metadata import entry_points

    return sorted(entry_points(group="stt_corpus.commands"), key=lambda ep: ep.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stt-corpus", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for command in _plugin_commands():
        command.load()(sub)

    verify = sub.add_parser(
        "verify", help="re-read a release and check every count and checksum",
        description="Re-read a release: RELEASE.json, the sha256 of manifest, index and config, every shard's "
                    "size, sha256, sample count, seconds and keys against the index and the manifest. "
                    "Exit 0 when everything matches, 1 with one line per mismatch otherwise.")
    add_store_args(verify, release_help="release name under <store>/releases/")
    verify.set_defaults(func=_cmd_verify)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from corpus.logs import configure_logging, redact

    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"stt-corpus {args.command}: error: {redact(str(err))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
