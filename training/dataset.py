"""The streaming ``IterableDataset``: one :class:`training.stream.SlotStream` per (rank, worker).

Use it with ``DataLoader(dataset, batch_size=None, num_workers=W)``: it yields whole batches
(dynamic batching by duration happens in the stream), features already computed. Each batch
carries ``index`` (the training step it is for) and ``state`` (its worker's stream position
right after it); :meth:`StreamingDataset.position` gathers those into what a checkpoint keeps,
and :meth:`StreamingDataset.load_position` makes a new DataLoader continue from it exactly.

Resuming after ``n`` batches, physical worker ``w`` plays logical worker ``(w + n) % W``, so
the DataLoader's round-robin (worker 0 first) carries on with the worker whose turn it was.
"""
from __future__ import annotations

import json

import torch
from torch.utils.data import IterableDataset, get_worker_info

from corpus.release import release_store
from corpus.shards import decode_flac
from corpus.store import open_store
from training.curriculum import Schedule
from training.features import CharVocab, LogMel, pad_features
from training.stream import Item, ShardReader, epoch_order, make_slot_stream


def collate(items: list[Item], vocab: CharVocab, logmel: LogMel) -> dict:
    """Decode FLAC, compute features, encode labels: the tensors of one batch."""
    feats, targets, target_lengths = [], [], []
    for item in items:
        audio, rate = decode_flac(item.group["flac"])
        if rate != 16000 or audio.ndim != 1:
            raise ValueError(f"sample {item.key}: expected 16 kHz mono, got {rate} Hz, shape {audio.shape}")
        feats.append(logmel(audio))
        ids = vocab.encode(item.meta.get("text", ""))
        targets.extend(ids)
        target_lengths.append(len(ids))
    padded, lengths = pad_features(feats)
    return {
        "feats": padded, "feat_lengths": lengths,
        "targets": torch.tensor(targets, dtype=torch.long),
        "target_lengths": torch.tensor(target_lengths, dtype=torch.long),
        "keys": [i.key for i in items], "domains": [i.domain for i in items],
        "durations": [i.duration for i in items], "texts": [i.meta.get("text", "") for i in items],
        "epochs": [i.ref[0] for i in items],
    }


class StreamingDataset(IterableDataset):
    """Training batches streamed from a release's shards on a store (local dir or S3).

    ``shards`` are the release's training index rows; ``schedule`` the resolved curriculum.
    ``passes=None`` streams forever (epochs repeat); ``passes=1`` reads each sample once.
    The store is opened inside each worker (boto3 clients do not survive a fork).
    """

    def __init__(self, *, store_uri: str, endpoint_url: str | None, release: str, shards: list[dict],
                 schedule: Schedule, vocab: CharVocab, n_mels: int = 80, seed: int = 0, batch_seconds: float = 60.0,
                 shuffle_buffer: int = 256, rank: int = 0, world_size: int = 1, passes: int | None = None,
                 fail_on_corrupt: bool = False, spool_bytes: int = 64 << 20):
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank}, world_size {world_size}")
        self.store_uri, self.endpoint_url, self.release = store_uri, endpoint_url, release
        self.shards, self.schedule, self.vocab, self.n_mels = shards, schedule, vocab, n_mels
        self.seed, self.batch_seconds, self.shuffle_buffer = seed, batch_seconds, shuffle_buffer
        self.rank, self.world_size, self.passes = rank, world_size, passes
        self.fail_on_corrupt, self.spool_bytes = fail_on_corrupt, spool_bytes
        self._position: dict | None = None

    def load_position(self, position: dict | None) -> None:
        """Continue from ``position`` (what :meth:`position` returned) on the next ``iter()``."""
        self._position = position

    @staticmethod
    def position(consumed: int, workers: int, rank: int, states: dict[int, dict]) -> dict:
        """A checkpoint's data position: batches consumed and each logical worker's latest state."""
        return {"batches": consumed, "workers": workers, "rank": rank,
                "states": {str(k): v for k, v in sorted(states.items())}}

    def __iter__(self):
        info = get_worker_info()
        workers, physical = (info.num_workers, info.id) if info else (1, 0)
        position = self._position or {"batches": 0, "workers": workers, "rank": self.rank, "states": {}}
        if position["workers"] != workers or position["rank"] != self.rank:
            raise ValueError(f"the saved data position is for {position['workers']} worker(s) on rank "
                             f"{position['rank']}; this loader has {workers} on rank {self.rank}: "
                             "resume with the same num_workers")
        worker = (physical + position["batches"]) % workers
        store = release_store(open_store(self.store_uri, endpoint_url=self.endpoint_url), self.release)
        stream = make_slot_stream(store=store, shards=self.shards, schedule=self.schedule, seed=self.seed,
                                  slot=self.rank * workers + worker, slots=self.world_size * workers, worker=worker,
                                  workers=workers, batch_seconds=self.batch_seconds, buffer_size=self.shuffle_buffer,
                                  passes=self.passes, fail_on_corrupt=self.fail_on_corrupt,
                                  spool_bytes=self.spool_bytes)
        saved = position["states"].get(str(worker))
        if saved is not None:
            stream.restore(saved)
        logmel = LogMel(self.n_mels)
        for batch in stream:
            out = collate(batch.items, self.vocab, logmel)
            # the position travels as JSON text: the DataLoader passes strings through untouched
            out.update(index=batch.index, position=batch.position, phase=batch.phase, worker=worker,
                       state=json.dumps(batch.state, separators=(",", ":")))
            yield out


class EvalSet:
    """Up to ``max_samples`` samples of one (split, domain), read once (verified) and kept raw.

    Shards are taken in a seeded order until enough samples are in, so a large split is
    sampled across its shards rather than from its first few.
    """

    def __init__(self, *, store, shards: list[dict], split: str, domain: str, max_samples: int, seed: int,
                 fail_on_corrupt: bool = False, spool_bytes: int = 64 << 20):
        self.split, self.domain = split, domain
        rows = sorted((r for r in shards if r["split"] == split and r["domain"] == domain), key=lambda r: r["url"])
        reader = ShardReader(store, fail_on_corrupt=fail_on_corrupt, spool_bytes=spool_bytes)
        self.items: list[Item] = []
        order = epoch_order(rows, domain=domain, epoch=0, seed=seed, slot=0, slots=1)
        for pos, row in enumerate(order):
            if pos + 1 < len(order) and len(self.items) + row["samples"] < max_samples:
                reader.prefetch(order[pos + 1])
            items = reader.items(row, domain, 0, pos)
            if items is None:
                continue
            for item in items:
                self.items.append(item)
                if len(self.items) >= max_samples:
                    break
            if len(self.items) >= max_samples:
                break
        self.corrupt = reader.corrupt
        self.seconds = sum(i.duration for i in self.items)

    def batches(self, batch_seconds: float):
        """The samples in key order, cut into batches of at most ``batch_seconds`` (one sample at least)."""
        batch, total = [], 0.0
        for item in sorted(self.items, key=lambda i: i.key):
            if batch and total + item.duration > batch_seconds:
                yield batch
                batch, total = [], 0.0
            batch.append(item)
            total += item.duration
        if batch:
            yield batch


WORKER_PRELOAD = ("__main__", "torch", "training.dataset", "boto3")  # boto3: S3 clients, made in workers


def _preload_forkserver() -> None:
    """Name the modules the fork server imports when it starts (no effect once it is running)."""
    import multiprocessing.forkserver

    multiprocessing.forkserver.set_forkserver_preload(list(WORKER_PRELOAD))


def data_loader(dataset, *, num_workers: int, pin_memory: bool = False, prefetch_factor: int | None = None):
    """The one way to wrap a :class:`StreamingDataset` in a DataLoader (it yields whole batches).

    Worker processes start from a fork server, not by forking this process: a trainer may hold
    threads (S3 clients, prefetchers, an embedding application's own), and a fork copies their
    locks in whatever state they are in, which can leave a worker dead at start. The fork server
    imports torch and this module once, when it starts (a clean single-threaded process), so
    each worker forked from it starts in about 0.1 s instead of importing torch anew (5-10 s on
    a busy 2-core machine, for every DataLoader: see bench/stream.py in docs/PERFORMANCE.md).
    """
    from torch.utils.data import DataLoader

    _preload_forkserver()
    if not num_workers:
        return DataLoader(dataset, batch_size=None, num_workers=0, pin_memory=pin_memory)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      prefetch_factor=prefetch_factor, multiprocessing_context="forkserver", persistent_workers=False)

