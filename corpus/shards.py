"""WebDataset shards: a deterministic writer and a streaming, checksum-verifying reader.

A shard is a plain POSIX tar (GNU format) holding, per sample, ``<key>.flac`` (16 kHz mono
FLAC) then ``<key>.json`` (text, ids, domain and every confidence field). Headers are built
by :mod:`tarfile` with fixed mtime, uid, gid, owner names and mode, and samples are written in
the order given, so the same input gives byte-identical shards; ``tar tf`` and
``webdataset.WebDataset`` read them as they read any shard.

Each (split, domain) pair has its own shard sequence, ``shards/<split>/<domain>/<split>-<domain>-NNNNNN.tar``,
each shard capped by bytes and by sample count. The writer records per shard the row of the
release's ``index.parquet``: url, split, domain, samples, seconds, bytes, sha256, first and last key.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import soundfile as sf

from corpus.schema import SAMPLE_RATE, as_int16, validate_key, validate_name
from corpus.store import Store, StoreError

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
FIXED_MTIME = 0  # 1970-01-01: any fixed value makes the bytes reproducible
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_SAMPLES = 10_000


class ShardError(StoreError):
    """A shard is unreadable, truncated or fails its checksum; the message names it."""


def encode_flac(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono PCM (float in [-1, 1] or int16) as 16-bit FLAC bytes."""
    if pcm.ndim != 1:
        raise ValueError(f"expected mono PCM (1-D), got shape {pcm.shape}")
    buf = io.BytesIO()
    sf.write(buf, as_int16(pcm), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    pcm, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return pcm, rate


def shard_url(split: str, domain: str, number: int) -> str:
    return f"shards/{split}/{domain}/{split}-{domain}-{number:06d}.tar"


# A GNU tar header for a regular file, laid out here rather than by tarfile so the bytes do
# not change with the Python version: name, mode 0644, uid/gid 0, size, mtime 0, checksum,
# type '0', no link, GNU magic, empty owner names, device 0/0, empty prefix.
_HEAD_AFTER_NAME = b"0000644\0" + b"0000000\0" + b"0000000\0"
_MTIME = b"%011o\0" % FIXED_MTIME
_HEAD_TAIL = b"0" + b"\0" * 100 + b"ustar  \0" + b"\0" * 64 + b"0000000\0" * 2 + b"\0" * 167
_CHECKSUM_CONSTANT = sum(_HEAD_AFTER_NAME) + sum(_MTIME) + 8 * ord(" ") + sum(_HEAD_TAIL)


def _member_header(name: str, size: int) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > 100 or size >= 8**11:  # long names / >8 GiB members: tarfile's GNU extensions
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uname, info.gname = size, FIXED_MTIME, 0o644, "", ""
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    size_field = b"%011o\0" % size
    checksum = sum(raw) + sum(size_field) + _CHECKSUM_CONSTANT
    return b"".join((raw.ljust(100, b"\0"), _HEAD_AFTER_NAME, size_field, _MTIME, b"%06o\0 " % checksum, _HEAD_TAIL))


def _final_size(content_bytes: int) -> int:
    """Size of a tar holding ``content_bytes`` of members: end-of-archive blocks, record padding."""
    total = content_bytes + 2 * BLOCK
    return total + (-total % RECORD)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


@dataclass
class _OpenShard:
    url: str
    split: str
    domain: str
    writer: object
    samples: int = 0
    seconds: float = 0.0
    bytes: int = 0
    first_key: str = ""
    last_key: str = ""


@dataclass
class ShardWriter:
    """Writes samples into per-(split, domain) shard sequences on a store.

    ``write(split, domain, key, flac, meta, seconds)`` appends one sample and returns the url of
    the shard that holds it; ``close()`` finishes every open shard and returns the index rows.
    A sample larger than ``max_bytes`` still gets a shard of its own.
    """

    store: Store
    max_bytes: int = DEFAULT_MAX_BYTES
    max_samples: int = DEFAULT_MAX_SAMPLES
    _open: dict = field(default_factory=dict, init=False, repr=False)
    _counters: dict = field(default_factory=dict, init=False, repr=False)
    index: list[dict] = field(default_factory=list, init=False)

    def __post_init__(self):
        if self.max_bytes < 4 * BLOCK:
            raise ValueError(f"max_bytes must be at least {4 * BLOCK}, got {self.max_bytes}")
        if self.max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {self.max_samples}")

    def write(self, split: str, domain: str, key: str, flac: bytes, meta: dict, seconds: float) -> str:
        validate_name("split", split)
        validate_name("domain", domain)
        validate_key(key)
        meta_bytes = json.dumps(meta, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                                allow_nan=False).encode("utf-8")
        flac_name, json_name = f"{key}.flac", f"{key}.json"
        record = b"".join((
            _member_header(flac_name, len(flac)), flac, _padding(len(flac)),
            _member_header(json_name, len(meta_bytes)), meta_bytes, _padding(len(meta_bytes)),
        ))
        shard = self._open.get((split, domain))
        if shard is not None and (shard.samples >= self.max_samples
                                  or _final_size(shard.bytes + len(record)) > self.max_bytes):
            self._finish(shard)
            shard = None
        if shard is None:
            shard = self._start(split, domain)
        elif key <= shard.last_key:
            raise ValueError(f"sample keys must be written in increasing order within {split}/{domain}: "
                             f"{key!r} after {shard.last_key!r} (sorted input makes shards reproducible)")
        shard.writer.write(record)
        shard.bytes += len(record)
        shard.samples += 1
        shard.seconds += float(seconds)
        shard.first_key = shard.first_key or key
        shard.last_key = key
        return shard.url

    def _start(self, split: str, domain: str) -> _OpenShard:
        number = self._counters.get((split, domain), 0)
        self._counters[(split, domain)] = number + 1
        url = shard_url(split, domain, number)
        shard = _OpenShard(url=url, split=split, domain=domain, writer=self.store.open_write(url))
        self._open[(split, domain)] = shard
        return shard

    def _finish(self, shard: _OpenShard) -> None:
        shard.writer.write(b"\0" * (_final_size(shard.bytes) - shard.bytes))
        shard.writer.close()
        written = shard.writer.result
        self.index.append({
            "url": shard.url, "split": shard.split, "domain": shard.domain, "samples": shard.samples,
            "seconds": round(shard.seconds, 6), "bytes": written.bytes, "sha256": written.sha256,
            "first_key": shard.first_key, "last_key": shard.last_key,
        })
        del self._open[(shard.split, shard.domain)]

    def close(self) -> list[dict]:
        """Finish all open shards; returns the index rows sorted by url."""
        for shard in sorted(self._open.values(), key=lambda s: s.url):
            self._finish(shard)
        self.index.sort(key=lambda row: row["url"])
        return self.index

    def abort(self) -> None:
        """Discard open shards (nothing partial becomes visible)."""
        for shard in list(self._open.values()):
            shard.writer.abort()
        self._open.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Sample:
    """One decoded sample: 16 kHz mono float32 audio and its JSON metadata."""

    key: str
    audio: np.ndarray
    sample_rate: int
    meta: dict
    shard: str


class _HashingReader(io.RawIOBase):
    def __init__(self, raw):
        self._raw = raw
        self.sha = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self.sha.update(memoryview(buffer)[:n])
            self.bytes += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _split_name(name: str) -> tuple[str, str]:
    base, dot, ext = name.rpartition("/")[2].partition(".")
    if not dot:
        return base, ""
    return name[: len(name) - len(ext) - 1], ext


def iter_shard_raw(store: Store, url: str, *, sha256: str | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream ``(key, {ext: bytes})`` groups from a shard in one pass.

    The sha256 of the whole object is checked when the stream ends: a mismatch raises
    :class:`ShardError` after the last group (streaming cannot know it sooner), and so does a
    truncated or malformed tar.
    """
    hashing = _HashingReader(store.open_read(url))
    try:
        with tarfile.open(fileobj=io.BufferedReader(hashing, buffer_size=1 << 20), mode="r|") as tar:
            key, group = None, {}
            for member in tar:
                if not member.isfile():
                    continue
                member_key, ext = _split_name(member.name)
                data = tar.extractfile(member).read()
                if key is not None and member_key != key:
                    yield key, group
                    group = {}
                key = member_key
                group[ext] = data
            if key is not None:
                yield key, group
        while hashing.readinto(bytearray(1 << 20)):
            pass
    except tarfile.TarError as err:
        raise ShardError(f"shard {store.url(url)} is truncated or not a tar: {err}") from err
    finally:
        hashing.close()
    if sha256 is not None and hashing.sha.hexdigest() != sha256:
        raise ShardError(f"shard {store.url(url)} fails its checksum: sha256 {hashing.sha.hexdigest()}, "
                         f"index says {sha256} ({hashing.bytes} bytes read)")


def iter_shard(store: Store, url: str, *, sha256: str | None = None) -> Iterator[Sample]:
    """Decoded samples of one shard (see :func:`iter_shard_raw` for the checksum contract)."""
    for key, group in iter_shard_raw(store, url, sha256=sha256):
        if "flac" not in group or "json" not in group:
            raise ShardError(f"shard {store.url(url)}: sample {key!r} lacks .flac or .json (has {sorted(group)})")
        try:
            audio, rate = decode_flac(group["flac"])
        except (sf.LibsndfileError, RuntimeError) as err:
            raise ShardError(f"shard {store.url(url)}: sample {key!r} has FLAC that does not decode: {err}") from err
        yield Sample(key=key, audio=audio, sample_rate=rate, meta=json.loads(group["json"]), shard=url)
