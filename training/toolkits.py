"""A release in the trainers' own loaders: shard URLs for ``webdataset.WebDataset``.

A release's shards are plain WebDataset tars (``<key>.flac`` + ``<key>.json`` per sample, keys
sorted), so a trainer who already feeds WebDataset into a training loop needs only the URLs::

    import io, json
    import soundfile as sf
    import webdataset as wds
    from training.toolkits import webdataset_urls

    urls = webdataset_urls("s3://bucket/corpus", "my-release", split="train")  # or a local store dir
    ds = (wds.WebDataset(urls, shardshuffle=False)
          .map_dict(flac=lambda b: sf.read(io.BytesIO(b), dtype="float32")[0], json=json.loads)
          .to_tuple("__key__", "flac", "json"))
    for key, audio, meta in ds:   # audio: 16 kHz mono float32; meta["text"]: the transcript
        ...

Local shards are given as paths. An S3 shard is given as a ``pipe:`` URL running
``python -m training.toolkits cat`` on it, which streams the object through this project's store
(its endpoint, credentials from the environment, retries and resumed reads) to stdout, so no
``aws`` CLI is needed. WebDataset does not check the shards' sha256; ``stt-corpus verify`` does,
and so does our own loader as it reads.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys

from corpus.release import Release
from corpus.store import READ_CHUNK, open_store


def webdataset_urls(store_uri: str, release: str, *, split: str | None = None, domain: str | None = None,
                    endpoint_url: str | None = None) -> list[str]:
    """The release's shard URLs for ``webdataset.WebDataset``, in index order (see the module doc)."""
    store = open_store(store_uri, endpoint_url=endpoint_url)
    rel = Release.open(store, release)
    urls = []
    for row in rel.shards(split=split, domain=domain):
        url = rel.store.url(row["url"])
        if url.startswith("s3://"):
            command = [sys.executable, "-m", "training.toolkits", "cat", url]
            if endpoint_url:
                command += ["--endpoint-url", endpoint_url]
            url = "pipe:" + " ".join(shlex.quote(c) for c in command)
        urls.append(url)
    return urls


def _cat(url: str, endpoint_url: str | None) -> int:
    bucket_and_key = url.removeprefix("s3://")
    bucket, _, key = bucket_and_key.partition("/")
    store = open_store(f"s3://{bucket}", endpoint_url=endpoint_url)
    with store.open_read(key) as reader:
        shutil.copyfileobj(reader, sys.stdout.buffer, READ_CHUNK)
    sys.stdout.buffer.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.toolkits")
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("cat", help="stream one s3:// object to stdout (for webdataset's pipe: URLs)")
    cat.add_argument("url")
    cat.add_argument("--endpoint-url")
    args = parser.parse_args(argv)
    return _cat(args.url, args.endpoint_url)


if __name__ == "__main__":
    sys.exit(main())
