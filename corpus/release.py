"""Releases: write one (manifest, shards, index, config, RELEASE.json last), read it, verify it.

Layout under ``<store>/releases/<name>/``::

    manifest.parquet   every segment, kept or rejected, with its decision and reasons
    shards/<split>/<domain>/<split>-<domain>-NNNNNN.tar
    index.parquet      url, split, domain, samples, seconds, bytes, sha256 per shard
    config.yaml        the resolved config that produced the release
    RELEASE.json       written last: the commit point; a release without it does not exist

A committed release is never overwritten: RELEASE.json is written with a conditional write
(S3 ``If-None-Match: *``, a hard link locally). One writer at a time: a writer holds a lease on
the name (:mod:`corpus.lease`) from its start to its commit; a second writer fails at once with a
message naming the first. Leftovers of a writer that died before committing (objects, temp files,
multipart uploads) are removed only by the next writer that holds the lease, so objects of a
live writer are never deleted.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import soundfile as sf
import pyarrow.parquet as pq
import yaml

from corpus.schema import (MANIFEST, SAMPLE_RATE, SCHEMA_VERSION, SHARD_INDEX, check_schema, table_from_rows,
                           validate_key, validate_name)
from corpus.shards import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, ShardError, ShardWriter, decode_flac,
                           encode_flac, iter_shard, iter_shard_raw, Sample)
from corpus.lease import Lease, LeaseHeld, LeaseLost
from corpus.store import ObjectNotFound, Store, StoreError

log = logging.getLogger(__name__)

RELEASES = "releases"
COMMIT_FILE = "RELEASE.json"
MANIFEST_FILE = "manifest.parquet"
INDEX_FILE = "index.parquet"
CONFIG_FILE = "config.yaml"


class ReleaseError(RuntimeError):
    """A release is missing, empty, already exists, or does not match its own records."""


def release_store(store: Store, name: str) -> Store:
    return store.at(f"{RELEASES}/{validate_name('release', name)}")


def acquire_release(store: Store, name: str, *, what: str = "write release", ttl: float | None = None) -> Lease:
    """Take the writer's lease on release ``name``, or raise ReleaseError (committed already, or
    another live writer). Leftovers of a dead writer are removed here, under the lease."""
    rstore = release_store(store, name)
    try:
        lease = Lease.acquire(store, name, what=what, **({"ttl": ttl} if ttl else {}))
    except LeaseHeld as err:
        raise ReleaseError(str(err)) from None
    try:
        if rstore.exists(COMMIT_FILE):
            raise ReleaseError(f"release {name!r} already exists at {rstore.uri}; choose another name "
                               "(a committed release is never overwritten)")
        leftovers, incomplete = rstore.list(), rstore.list_incomplete()
        if leftovers or incomplete:
            lease.check()
            log.warning("removing %d objects and %d unfinished writes left by a writer of release %s that died",
                        len(leftovers), len(incomplete), name)
            rstore.discard_incomplete()
            for key in leftovers:
                rstore.delete(key)
    except BaseException:
        lease.release()
        raise
    return lease


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _read_parquet(store: Store, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(store.get_bytes(key)))


def hours_by_domain_split(rows) -> dict[str, dict[str, float]]:
    hours: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        hours[row["domain"]][row["split"]] += (row["end"] - row["start"]) / 3600.0
    return {d: {s: round(h, 9) for s, h in sorted(by_split.items())} for d, by_split in sorted(hours.items())}


class ReleaseWriter:
    """Builds one release. ``add()`` each segment (kept ones with their audio), then ``commit()``.

    Kept samples go straight into their (split, domain) shard, so audio is never held for the
    whole release; add them in increasing ``segment_id`` order within each (split, domain) for
    reproducible shards (out-of-order input is an error, not a silent difference).
    """

    def __init__(self, store: Store, name: str, *, config: dict, max_shard_bytes: int = DEFAULT_MAX_BYTES,
                 max_shard_samples: int = DEFAULT_MAX_SAMPLES, lease: Lease | None = None):
        """``lease``: one taken earlier with :func:`acquire_release` (the caller releases it);
        without it the writer takes its own and releases it at commit or abort."""
        self.name = validate_name("release", name)
        self.store = release_store(store, name)
        self._own_lease = lease is None
        self.lease = lease or acquire_release(store, name)
        self.config = config
        self._shards = ShardWriter(self.store, max_bytes=max_shard_bytes, max_samples=max_shard_samples)
        self._rows: list[dict] = []
        self._ids: set[str] = set()

    def add(self, row: dict, *, pcm: np.ndarray | None = None, flac: bytes | None = None,
            extra: dict | None = None) -> dict:
        """Record one manifest row; a kept row needs its audio (``pcm`` 16 kHz mono, or ``flac``).

        ``extra`` holds further per-sample fields (word probabilities, decode parameters…) that go
        into the sample's JSON beside the manifest fields. Returns the row as recorded.
        """
        row = {**row}
        sid = validate_key(row["segment_id"])
        if sid in self._ids:
            raise ValueError(f"segment {sid} added twice to release {self.name}")
        if row["decision"] not in ("keep", "reject"):
            raise ValueError(f"segment {sid}: decision must be 'keep' or 'reject', got {row['decision']!r}")
        row.setdefault("reasons", [])
        if row["decision"] == "keep":
            if (pcm is None) == (flac is None):
                raise ValueError(f"kept segment {sid}: give its audio as exactly one of pcm= or flac=")
            data = flac if flac is not None else encode_flac(pcm)
            audio_seconds = len(pcm) / SAMPLE_RATE if pcm is not None else sf.info(io.BytesIO(flac)).duration
            if abs(audio_seconds - (row["end"] - row["start"])) > 0.002:
                raise ValueError(f"kept segment {sid}: {audio_seconds:.4f} s of audio for start..end = "
                                 f"{row['end'] - row['start']:.4f} s")
            meta = {**(extra or {}), **{k: v for k, v in row.items() if k != "shard"},
                    "duration": round(row["end"] - row["start"], 6)}
            row["shard"] = self._shards.write(row["split"], row["domain"], sid, data, meta, row["end"] - row["start"])
        else:
            row["shard"] = None
        self._ids.add(sid)
        self._rows.append(row)
        return row

    def abort(self) -> None:
        try:
            self._shards.abort()
        finally:
            if self._own_lease:
                self.lease.release()

    def commit(self, extra_files: dict[str, bytes] | None = None) -> dict:
        """Write index, manifest, config and ``extra_files``, then RELEASE.json; return what it says.

        Extra files (quarantine table, build summary …) are checksummed in RELEASE.json like the rest.
        """
        kept = [r for r in self._rows if r["decision"] == "keep"]
        try:
            self.lease.check()
        except LeaseLost as err:
            raise ReleaseError(str(err)) from None
        if not kept:
            self._shards.abort()
            raise ReleaseError(f"release {self.name!r} is empty: {len(self._rows)} segments added, none kept; "
                               "nothing was committed")
        index_rows = self._shards.close()
        manifest = table_from_rows(sorted(self._rows, key=lambda r: r["segment_id"]), MANIFEST)
        files = {}
        for key, data in ((INDEX_FILE, _parquet_bytes(table_from_rows(index_rows, SHARD_INDEX))),
                          (MANIFEST_FILE, _parquet_bytes(manifest)),
                          (CONFIG_FILE, yaml.safe_dump(self.config, sort_keys=True).encode()),
                          *sorted((extra_files or {}).items())):
            if key in (COMMIT_FILE,) or key.startswith("shards/"):
                raise ValueError(f"extra file {key!r} would replace a release's own object")
            written = self.store.put_bytes(key, data)
            files[key] = {"sha256": written.sha256, "bytes": written.bytes}
        info = {
            "name": self.name,
            "schema_version": SCHEMA_VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "counts": {
                "segments": len(self._rows),
                "kept": len(kept),
                "rejected": len(self._rows) - len(kept),
                "recordings": len({r["recording_id"] for r in self._rows}),
                "shards": len(index_rows),
            },
            "hours": {"kept": round(sum(r["end"] - r["start"] for r in kept) / 3600.0, 9),
                      "kept_by_domain_split": hours_by_domain_split(kept)},
            "files": files,
        }
        try:
            self.lease.check()
        except LeaseLost as err:
            raise ReleaseError(str(err)) from None
        if not self.store.put_bytes_if_absent(COMMIT_FILE, json.dumps(info, indent=2, sort_keys=True).encode()):
            raise ReleaseError(f"release {self.name!r} was committed by another writer meanwhile; "
                               "this one is discarded")
        if self._own_lease:
            self.lease.release()
        return info

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


@dataclass(frozen=True)
class Release:
    """A committed release, opened for reading."""

    name: str
    store: Store
    info: dict

    @classmethod
    def open(cls, store: Store, name: str) -> "Release":
        rstore = release_store(store, name)
        try:
            info = json.loads(rstore.get_bytes(COMMIT_FILE))
        except ObjectNotFound:
            raise ReleaseError(f"no release {name!r} at {rstore.uri}: {COMMIT_FILE} is missing "
                               "(never committed, or still being written)") from None
        return cls(name=name, store=rstore, info=info)

    def manifest(self) -> pa.Table:
        table = _read_parquet(self.store, MANIFEST_FILE)
        check_schema(table, MANIFEST, self.store.url(MANIFEST_FILE))
        return table

    def index(self) -> pa.Table:
        table = _read_parquet(self.store, INDEX_FILE)
        check_schema(table, SHARD_INDEX, self.store.url(INDEX_FILE))
        return table

    def config(self) -> dict:
        return yaml.safe_load(self.store.get_bytes(CONFIG_FILE))

    def shards(self, *, split: str | None = None, domain: str | None = None) -> list[dict]:
        rows = self.index().to_pylist()
        return [r for r in rows if (split is None or r["split"] == split) and (domain is None or r["domain"] == domain)]

    def samples(self, *, split: str | None = None, domain: str | None = None):
        """Decoded samples of the chosen shards, each shard's sha256 checked as it streams."""
        for shard in self.shards(split=split, domain=domain):
            yield from iter_shard(self.store, shard["url"], sha256=shard["sha256"])


def verify_release(store: Store, name: str) -> list[str]:
    """Re-read a whole release and return every mismatch found (empty list: it is sound)."""
    try:
        release = Release.open(store, name)
    except (ReleaseError, StoreError, ValueError) as err:
        return [str(err)]
    problems: list[str] = []
    rstore, info = release.store, release.info
    for key, expected in info.get("files", {}).items():
        try:
            actual = rstore.sha256(key)
        except ObjectNotFound:
            problems.append(f"{rstore.url(key)} is missing")
            continue
        if actual != expected["sha256"]:
            problems.append(f"{rstore.url(key)}: sha256 {actual}, RELEASE.json says {expected['sha256']}")
    if problems:
        return problems
    try:
        manifest = release.manifest().to_pylist()
        index = release.index().to_pylist()
    except ValueError as err:
        return [str(err)]
    kept = [r for r in manifest if r["decision"] == "keep"]
    counts = info["counts"]
    for what, actual in (("segments", len(manifest)), ("kept", len(kept)),
                         ("rejected", len(manifest) - len(kept)), ("shards", len(index)),
                         ("recordings", len({r["recording_id"] for r in manifest}))):
        if counts.get(what) != actual:
            problems.append(f"RELEASE.json counts {counts.get(what)} {what}, the manifest/index have {actual}")
    if not kept:
        problems.append(f"release {name!r} is empty: no kept segments")
    if hours_by_domain_split(kept) != info["hours"]["kept_by_domain_split"]:
        problems.append("RELEASE.json hours per domain/split differ from the manifest's kept segments")
    expected_keys = defaultdict(list)
    for row in kept:
        expected_keys[row["shard"]].append(row["segment_id"])
    for url in sorted(set(expected_keys) - {r["url"] for r in index}):
        problems.append(f"manifest places segments in {rstore.url(url)}, which the index does not list")
    listed = set(rstore.list("shards"))
    for url in sorted(listed - {r["url"] for r in index}):
        problems.append(f"{rstore.url(url)} is not in the index")
    for item in rstore.list_incomplete():
        problems.append(f"an unfinished write is left inside the release: {rstore.uri.rstrip('/')}/{item}")
    for shard in index:
        problems.extend(_verify_shard(rstore, shard, sorted(expected_keys.get(shard["url"], []))))
    return problems


def _verify_shard(rstore: Store, shard: dict, expected_keys: list[str]) -> list[str]:
    url = rstore.url(shard["url"])
    keys, seconds, undecodable = [], 0.0, []
    try:
        size = rstore.size(shard["url"])
        if size != shard["bytes"]:
            return [f"{url}: {size} bytes, the index says {shard['bytes']}"]
        for key, group in iter_shard_raw(rstore, shard["url"], sha256=shard["sha256"]):
            if set(group) != {"flac", "json"}:
                return [f"{url}: sample {key!r} has members {sorted(group)}, expected flac and json"]
            meta = json.loads(group["json"])
            try:
                audio, rate = decode_flac(group["flac"])
            except (sf.LibsndfileError, RuntimeError) as err:
                undecodable.append(f"{url}: sample {key!r} has FLAC that does not decode: {err}")
                keys.append(key)
                seconds += meta["duration"]
                continue
            if meta.get("split") != shard["split"] or meta.get("domain") != shard["domain"]:
                return [f"{url}: sample {key!r} is {meta.get('split')}/{meta.get('domain')}, "
                        f"the shard is {shard['split']}/{shard['domain']}"]
            keys.append(key)
            seconds += meta["duration"]
            if abs(len(audio) / rate - meta["duration"]) > 0.002:
                return [f"{url}: sample {key!r} has {len(audio) / rate:.3f} s of audio, its JSON says {meta['duration']}"]
    except ObjectNotFound:
        return [f"{url} is missing"]
    except ShardError as err:
        return [str(err), *undecodable]
    except (json.JSONDecodeError, KeyError) as err:
        return [f"{url}: sample metadata is unreadable: {err!r}"]
    problems = list(undecodable)
    if len(keys) != shard["samples"]:
        problems.append(f"{url}: {len(keys)} samples, the index says {shard['samples']}")
    if abs(seconds - shard["seconds"]) > 1e-3:
        problems.append(f"{url}: {seconds:.3f} s of audio, the index says {shard['seconds']:.3f}")
    if keys != expected_keys:
        problems.append(f"{url}: its sample keys differ from the manifest's kept segments in it "
                        f"({len(keys)} in shard, {len(expected_keys)} in manifest)")
    return problems


__all__ = ["ReleaseWriter", "Release", "ReleaseError", "verify_release", "release_store", "Sample"]
