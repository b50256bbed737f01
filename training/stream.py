"""The sample stream of one reader slot: verified shards, per-domain shuffle, curriculum mix, batches.

No torch here; :mod:`training.dataset` wraps a :class:`SlotStream` per DataLoader worker.

**Slots.** A reader slot is one (rank, DataLoader worker) pair; there are ``world_size x
num_workers`` of them. In epoch ``e`` of domain ``d`` the domain's shards are permuted by
``(seed, d, e)``; the ``T`` samples of that order, taken as one sequence, are cut into ``slots``
contiguous runs of ``floor(T / slots)`` or one more, and slot ``s`` reads run ``s``: the shards it
overlaps, from the run's first sample to its last (a shard on a boundary is read by both slots,
each taking its own part). So within an epoch every sample goes to exactly one slot, nothing is
dropped, and the slots' shares differ by at most one sample per domain whatever the shard sizes:
one shard for two ranks, or uneven shards, still give every rank its half.

**Checksums.** The sha256 of a streamed shard is known only at its end, so a shard is
downloaded whole (into memory up to ``spool_bytes``, a local temp file beyond; one GET, rather
than hashing and then reading it from the store a second time), its sha256 compared with the
index, and only then parsed: no sample of a shard that fails its checksum is ever yielded. Such
a shard (or a missing one) is skipped with a warning and counted, or raises
:class:`corpus.shards.ShardError` when ``fail_on_corrupt``. While a shard is being decoded, the
next one of its domain downloads on a helper thread.

**Order.** Each domain stream keeps a shuffle buffer of raw samples; which buffered sample a
draw takes, and which domain a draw comes from, are hashes of ``(seed, slot, domain, draw
number)``, so the whole stream is a pure function of the seed and its position.

**Position.** :meth:`SlotStream.state` is a small JSON-able dict: per domain the epoch, shard
position and sample offset read so far and the position of every sample in the shuffle buffer;
the sample carried over to the next batch; counters. :meth:`SlotStream.restore` re-reads the
few shards those positions name and continues exactly where the state was taken.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from corpus.shards import ShardError, iter_shard_raw
from corpus.store import ObjectNotFound, READ_CHUNK, Store

log = logging.getLogger(__name__)


class StreamError(RuntimeError):
    """The stream cannot go on (no readable or acceptable sample left); the message says why."""


FETCH_RETRIES = 2  # downloads of a shard that fails its checksum, before it is skipped as corrupt


def unit_hash(*parts) -> float:
    """A uniform number in [0, 1) that is a pure function of ``parts``."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def epoch_order(shards: list[dict], *, domain: str, epoch: int, seed: int, slot: int, slots: int) -> list[dict]:
    """What slot ``slot`` of ``slots`` reads in ``epoch`` of one domain, in reading order.

    Each entry is the shard's index row with ``start`` and ``stop``: the sample offsets in the
    shard this slot takes (``[start, stop)``). Entries of all slots together cover every sample of
    the domain exactly once; a slot's share is ``floor(T * (slot + 1) / slots) - floor(T * slot /
    slots)`` samples of the ``T`` in the index.
    """
    if not 0 <= slot < slots:
        raise ValueError(f"slot must be in [0, slots), got slot {slot} of {slots}")
    perm = np.random.default_rng([seed, zlib.crc32(domain.encode()), epoch]).permutation(len(shards))
    total = sum(int(r["samples"]) for r in shards)
    lo, hi = total * slot // slots, total * (slot + 1) // slots
    entries, first = [], 0
    for i in perm:
        row = shards[i]
        n = int(row["samples"])
        a, b = max(lo, first), min(hi, first + n)
        if a < b:
            entries.append({**row, "start": a - first, "stop": b - first})
        first += n
        if first >= hi:
            break
    return entries


@dataclass
class Item:
    """One raw sample: where it sits in its stream, its key, members and parsed JSON."""

    ref: tuple[int, int, int]  # (epoch, shard position in the epoch's order, sample offset in the shard)
    domain: str
    key: str
    group: dict[str, bytes]
    meta: dict

    @property
    def duration(self) -> float:
        return float(self.meta["duration"])


class _SpoolReader(io.RawIOBase):
    """A raw reader over a rewound spool file (what ``iter_shard_raw`` expects of ``open_read``)."""

    def __init__(self, spool):
        self._spool = spool
        self._spool.seek(0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._spool.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._spool.close()
        super().close()


class _Downloaded:
    """A verified shard held locally, seen through the one method ``iter_shard_raw`` uses."""

    def __init__(self, store: Store, spool):
        self._store, self._spool = store, spool

    def open_read(self, key: str):
        return _SpoolReader(self._spool)

    def url(self, key: str) -> str:
        return self._store.url(key)


class ShardReader:
    """Downloads a shard, checks its sha256 against the index, then yields its samples.

    ``prefetch(row)`` starts downloading a shard on a helper thread, so the next shard arrives
    while this one is decoded; ``fetch`` then takes it from there. ``corrupt`` counts, per shard
    url, how many times a shard was skipped because it failed its checksum or was missing.
    """

    def __init__(self, store: Store, *, fail_on_corrupt: bool = False, spool_bytes: int = 64 << 20):
        self.store, self.fail_on_corrupt, self.spool_bytes = store, fail_on_corrupt, spool_bytes
        self.corrupt: dict[str, int] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future] = {}

    def _download(self, row: dict):
        """(spool, sha256 hex) of the shard's bytes, or (None, error) when it is missing."""
        spool = tempfile.SpooledTemporaryFile(max_size=self.spool_bytes)
        sha = hashlib.sha256()
        try:
            with self.store.open_read(row["url"]) as reader:
                while chunk := reader.read(READ_CHUNK):
                    sha.update(chunk)
                    spool.write(chunk)
        except ObjectNotFound as err:
            spool.close()
            return None, err
        except BaseException:
            spool.close()
            raise
        return spool, sha.hexdigest()

    def prefetch(self, row: dict) -> None:
        if row["url"] not in self._pending:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-prefetch")
            self._pending[row["url"]] = self._pool.submit(self._download, row)

    def fetch(self, row: dict):
        """The shard's ``(key, members)`` iterator, or None when it was skipped as corrupt.

        A download whose sha256 differs from the index is fetched again (twice at most): bytes
        corrupted in transit are never decoded; only a shard corrupt in the store is skipped."""
        future = self._pending.pop(row["url"], None)
        spool, digest = future.result() if future is not None else self._download(row)
        for _ in range(FETCH_RETRIES):
            if spool is None or digest == row["sha256"]:
                break
            spool.close()
            log.warning("shard %s failed its checksum; fetching it again", self.store.url(row["url"]))
            spool, digest = self._download(row)
        if spool is None:
            return self._skip(row, f"is missing ({digest})")
        if digest != row["sha256"]:
            spool.close()
            return self._skip(row, f"fails its checksum: sha256 {digest}, the index says {row['sha256']}")
        return iter_shard_raw(_Downloaded(self.store, spool), row["url"])

    def _skip(self, row: dict, why: str):
        url = self.store.url(row["url"])
        if self.fail_on_corrupt:
            raise ShardError(f"shard {url} {why} (fail_on_corrupt_shard is set)")
        self.corrupt[row["url"]] = self.corrupt.get(row["url"], 0) + 1
        log.warning("skipping shard %s: it %s; none of its samples is used", url, why)
        return None

    def items(self, row: dict, domain: str, epoch: int, pos: int, *, skip: int = 0) -> Iterator[Item] | None:
        """The samples of the entry ``row`` from its ``start`` + ``skip`` up to its ``stop`` (whole shard if absent)."""
        samples = self.fetch(row)
        if samples is None:
            return None
        return _items(samples, row, domain, epoch, pos, row.get("start", 0) + skip, row.get("stop"))


def _items(samples, row: dict, domain: str, epoch: int, pos: int, skip: int, stop: int | None) -> Iterator[Item]:
    for offset, (key, group) in enumerate(samples):
        if offset < skip:
            continue
        if stop is not None and offset >= stop:
            return
        if "json" not in group or "flac" not in group:
            raise ShardError(f"shard {row['url']}: sample {key!r} lacks .flac or .json (has {sorted(group)})")
        yield Item((epoch, pos, offset), domain, key, group, json.loads(group["json"]))


@dataclass
class DomainStream:
    """One domain's shards for one slot: epochs of shuffled shards through a shuffle buffer.

    ``passes=None`` repeats epochs forever; ``passes=n`` stops after ``n`` epochs.
    """

    domain: str
    shards: list[dict]
    reader: ShardReader
    seed: int
    slot: int
    slots: int
    buffer_size: int
    passes: int | None = None
    epoch: int = 0
    pos: int = 0
    offset: int = 0  # samples of the current entry read so far (from its ``start``)
    draws: int = 0
    filtered: int = 0
    buffer: list[Item] = field(default_factory=list)
    _current: Iterator[Item] | None = field(default=None, repr=False)
    _yielded_this_epoch: int = field(default=0, repr=False)

    def __post_init__(self):
        self.shards = sorted(self.shards, key=lambda r: r["url"])
        self._total_samples = sum(r["samples"] for r in self.shards)
        self._orders: dict[int, list[dict]] = {}

    def order(self, epoch: int) -> list[dict]:
        cached = self._orders.get(epoch)
        if cached is None:
            if len(self._orders) > 4:
                self._orders.clear()
            cached = self._orders[epoch] = epoch_order(self.shards, domain=self.domain, epoch=epoch, seed=self.seed,
                                                       slot=self.slot, slots=self.slots)
        return cached

    def _next_raw(self) -> Item | None:
        while True:
            if self.passes is not None and self.epoch >= self.passes:
                return None
            order = self.order(self.epoch)
            if self.pos >= len(order):
                if self._yielded_this_epoch == 0 and self.offset == 0:
                    raise StreamError(f"domain {self.domain!r}: slot {self.slot} of {self.slots} read no sample "
                                      f"in a whole epoch ({len(order)} shards, all skipped)")
                self.epoch, self.pos, self.offset, self._yielded_this_epoch = self.epoch + 1, 0, 0, 0
                continue
            if self._current is None:
                self._current = self.reader.items(order[self.pos], self.domain, self.epoch, self.pos, skip=self.offset)
                following = self._following(order)
                if following is not None:
                    self.reader.prefetch(following)
                if self._current is None:  # skipped as corrupt
                    self.pos, self.offset = self.pos + 1, 0
                    continue
            item = next(self._current, None)
            if item is None:
                self._current = None
                self.pos, self.offset = self.pos + 1, 0
                continue
            self.offset += 1
            self._yielded_this_epoch += 1
            return item

    def _following(self, order: list[dict]) -> dict | None:
        """The shard read after the current one."""
        if self.pos + 1 < len(order):
            return order[self.pos + 1]
        if self.passes is not None and self.epoch + 1 >= self.passes:
            return None
        return self.order(self.epoch + 1)[0]

    def prefetch_next(self) -> None:
        """Start downloading the shard this stream reads next, unless one is open already."""
        if self._current is None and (self.passes is None or self.epoch < self.passes):
            order = self.order(self.epoch)
            if self.pos < len(order):
                self.reader.prefetch(order[self.pos])

    def _fill(self) -> None:
        while len(self.buffer) < self.buffer_size:
            item = self._next_raw()
            if item is None:
                return
            self.buffer.append(item)

    def take(self, accepts: Callable[[dict], bool]) -> Item | None:
        """The next sample that ``accepts`` its JSON (others are dropped); None once finished."""
        rejected = 0
        while True:
            self._fill()
            if not self.buffer:
                return None
            j = int(unit_hash(self.seed, "take", self.slot, self.domain, self.draws) * len(self.buffer))
            self.draws += 1
            item = self.buffer[j]
            self.buffer[j] = self.buffer[-1]
            self.buffer.pop()
            if accepts(item.meta):
                return item
            self.filtered += 1
            rejected += 1
            if rejected > self._total_samples + self.buffer_size:
                raise StreamError(f"domain {self.domain!r}: slot {self.slot} drew {rejected} samples in a row and "
                                  "the phase's filters rejected every one")

    def fetch_refs(self, refs: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], Item]:
        """Re-read the samples at ``refs`` (positions from a saved state)."""
        wanted: dict[tuple[int, int], set[int]] = {}
        for epoch, pos, offset in refs:
            wanted.setdefault((epoch, pos), set()).add(offset)
        found: dict[tuple[int, int, int], Item] = {}
        for (epoch, pos), offsets in sorted(wanted.items()):
            row = {**self.order(epoch)[pos], "start": min(offsets)}
            items = self.reader.items(row, self.domain, epoch, pos)
            if items is None:
                raise StreamError(f"cannot restore the stream position: shard {row['url']} no longer verifies")
            last = max(offsets)
            for item in items:
                if item.ref[2] in offsets:
                    found[item.ref] = item
                if item.ref[2] >= last:
                    break
        missing = [r for r in refs if tuple(r) not in found]
        if missing:
            raise StreamError(f"cannot restore the stream position of domain {self.domain!r}: samples {missing[:3]} "
                              "are not in their shards (did the release change?)")
        return found

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "offset": self.offset, "draws": self.draws,
                "filtered": self.filtered, "yielded_this_epoch": self._yielded_this_epoch,
                "buffer": [list(item.ref) for item in self.buffer]}

    def restore(self, state: dict) -> None:
        self.epoch, self.pos, self.offset = state["epoch"], state["pos"], state["offset"]
        self.draws, self.filtered = state["draws"], state["filtered"]
        self._yielded_this_epoch = state["yielded_this_epoch"]
        refs = [tuple(r) for r in state["buffer"]]
        found = self.fetch_refs(refs) if refs else {}
        self.buffer = [found[r] for r in refs]
        self._current = None  # the current shard is re-read from the start, skipping `offset` samples


@dataclass
class Batch:
    """The samples of one batch and where the slot's stream stood right after it."""

    index: int  # global batch index: the training step this batch is for
    position: float  # curriculum position the batch was drawn at (a step, or estimated hours)
    phase: int
    items: list[Item]
    state: dict


class SlotStream:
    """Mixes a slot's domain streams by the curriculum and cuts the mix into duration-budget batches.

    Batch ``k`` of the slot with logical worker id ``worker`` (of ``workers``) is global batch
    ``k * workers + worker``, which the DataLoader's round-robin over workers delivers in order.
    The curriculum position of a batch is its index (a steps schedule) or the audio the slot has
    given out times the number of slots (an hours schedule). A batch holds whole samples whose
    durations add up to at most ``batch_seconds``; a sample longer than that alone is dropped and
    counted (``too_long``).
    """

    def __init__(self, *, reader: ShardReader, streams: dict[str, DomainStream], schedule, seed: int, slot: int,
                 slots: int, worker: int, workers: int, batch_seconds: float):
        self.reader, self.streams, self.schedule, self.seed = reader, streams, schedule, seed
        self.slot, self.slots, self.worker, self.workers = slot, slots, worker, workers
        self.batch_seconds = batch_seconds
        self.batches = 0
        self.draws = 0
        self.audio_seconds = 0.0
        self.too_long = 0
        self.pending: Item | None = None
        self.finished: set[str] = set()

    def position(self, index: int) -> float:
        if self.schedule.unit == "steps":
            return float(index)
        return self.audio_seconds * self.slots / 3600.0

    def _choose(self, weights: dict[str, float]) -> str | None:
        active = [(d, w) for d, w in weights.items() if w > 0 and d not in self.finished]
        if not active:
            return None
        total = sum(w for _, w in active)
        u = unit_hash(self.seed, "mix", self.slot, self.draws) * total
        self.draws += 1
        for domain, weight in active:
            u -= weight
            if u < 0:
                return domain
        return active[-1][0]

    def __iter__(self) -> Iterator[Batch]:
        _, weights = self.schedule.at(self.position(self.batches * self.workers + self.worker))
        for domain, weight in weights.items():  # the first shards of the domains in use, all at once
            if weight > 0:
                self.streams[domain].prefetch_next()
        while True:
            index = self.batches * self.workers + self.worker
            position = self.position(index)
            phase_index, weights = self.schedule.at(position)
            accepts = self.schedule.phases[phase_index].filters.accepts
            items: list[Item] = []
            total = 0.0
            if self.pending is not None:
                items, total, self.pending = [self.pending], self.pending.duration, None
            while True:
                domain = self._choose(weights)
                if domain is None:
                    break
                item = self.streams[domain].take(accepts)
                if item is None:
                    self.finished.add(domain)
                    continue
                if item.duration > self.batch_seconds:
                    self.too_long += 1
                    log.warning("dropping sample %s: %.1f s is longer than a whole batch (%.1f s)",
                                item.key, item.duration, self.batch_seconds)
                    continue
                if total + item.duration > self.batch_seconds:
                    self.pending = item
                    break
                items.append(item)
                total += item.duration
            if not items:
                return
            self.batches += 1
            self.audio_seconds += total
            yield Batch(index=index, position=position, phase=phase_index, items=items, state=self.state())

    def state(self) -> dict:
        return {
            "slot": self.slot, "slots": self.slots, "batches": self.batches, "draws": self.draws,
            "audio_seconds": self.audio_seconds, "too_long": self.too_long,
            "pending": None if self.pending is None else [self.pending.domain, list(self.pending.ref)],
            "finished": sorted(self.finished),
            "corrupt": dict(self.reader.corrupt),
            "streams": {d: s.state() for d, s in self.streams.items()},
        }

    def restore(self, state: dict) -> None:
        if (state["slot"], state["slots"]) != (self.slot, self.slots):
            raise StreamError(f"saved stream position is for slot {state['slot']} of {state['slots']}, "
                              f"this is slot {self.slot} of {self.slots} (same world size and workers needed)")
        self.batches, self.draws = state["batches"], state["draws"]
        self.audio_seconds, self.too_long = state["audio_seconds"], state["too_long"]
        self.finished = set(state["finished"])
        for domain, stream_state in state["streams"].items():
            self.streams[domain].restore(stream_state)
        self.reader.corrupt.update(state["corrupt"])
        self.pending = None
        if state["pending"] is not None:
            domain, ref = state["pending"]
            self.pending = self.streams[domain].fetch_refs([tuple(ref)])[tuple(ref)]


def make_slot_stream(*, store: Store, shards: list[dict], schedule, seed: int, slot: int, slots: int, worker: int,
                     workers: int, batch_seconds: float, buffer_size: int, passes: int | None = None,
                     fail_on_corrupt: bool = False, spool_bytes: int = 64 << 20) -> SlotStream:
    """A slot's stream over the training ``shards`` (index rows) of every domain of ``schedule``."""
    reader = ShardReader(store, fail_on_corrupt=fail_on_corrupt, spool_bytes=spool_bytes)
    streams = {}
    for domain in schedule.domains:
        rows = [r for r in shards if r["domain"] == domain]
        if sum(int(r["samples"]) for r in rows) < slots:
            raise StreamError(f"domain {domain!r} has {sum(int(r['samples']) for r in rows)} training sample(s), "
                              f"fewer than the {slots} reader slots (world size x DataLoader workers): every slot "
                              "needs one sample per epoch; use fewer ranks or workers")
        streams[domain] = DomainStream(domain=domain, shards=rows, reader=reader, seed=seed, slot=slot, slots=slots,
                                       buffer_size=buffer_size, passes=passes)
    return SlotStream(reader=reader, streams=streams, schedule=schedule, seed=seed, slot=slot, slots=slots,
                      worker=worker, workers=workers, batch_seconds=batch_seconds)
