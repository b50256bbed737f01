"""The streaming reader on a real release: shard assignment, batching, checksums, positions."""
from __future__ import annotations

import logging
from collections import Counter

import pytest

from corpus.release import Release, release_store
from corpus.shards import ShardError
from corpus.store import open_store
from training.curriculum import Phase, CurriculumSpec, Filters, domain_stats, resolve, uniform_curriculum
from training.stream import epoch_order, make_slot_stream
from training_helpers import RELEASE, copy_release, local_store_with_release, s3_store_with_release, train_keys


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return local_store_with_release(tmp_path_factory)


@pytest.fixture(scope="module")
def release(store):
    return Release.open(store, RELEASE)


def _schedule(release, spec=None):
    stats = domain_stats(release.manifest().to_pylist())
    return resolve(spec or uniform_curriculum(), stats, release=RELEASE, max_steps=100, max_hours=None)


def _train_rows(release):
    return [r for r in release.index().to_pylist() if r["split"] == "train"]


def _stream(release, *, slot=0, slots=1, worker=0, workers=1, passes=1, batch_seconds=12.0, buffer=6,
            schedule=None, store=None, **kw):
    return make_slot_stream(store=store or release.store, shards=_train_rows(release),
                            schedule=schedule or _schedule(release), seed=11, slot=slot, slots=slots, worker=worker,
                            workers=workers, batch_seconds=batch_seconds, buffer_size=buffer, passes=passes, **kw)


@pytest.mark.parametrize("sizes,slots", [([5], 1), ([5], 2), ([1, 9, 2], 2), ([3] * 7, 3), ([4, 1, 1, 7], 4),
                                          ([2] * 9, 7), ([1, 1], 2)])
def test_epoch_order_gives_every_sample_to_exactly_one_slot_in_equal_shares(sizes, slots):
    shards = [{"url": f"s{i}", "samples": n} for i, n in enumerate(sizes)]
    total = sum(sizes)
    for epoch in range(3):
        taken, shares = [], []
        for slot in range(slots):
            entries = epoch_order(shards, domain="d", epoch=epoch, seed=5, slot=slot, slots=slots)
            assert all(0 <= e["start"] < e["stop"] <= e["samples"] for e in entries)
            taken += [(e["url"], k) for e in entries for k in range(e["start"], e["stop"])]
            shares.append(sum(e["stop"] - e["start"] for e in entries))
        assert sorted(taken) == sorted((r["url"], k) for r in shards for k in range(r["samples"]))
        assert max(shares) - min(shares) <= 1 and sum(shares) == total  # nothing dropped, nothing doubled
    first = epoch_order(shards, domain="d", epoch=0, seed=5, slot=0, slots=1)
    again = epoch_order(shards, domain="d", epoch=0, seed=5, slot=0, slots=1)
    assert first == again  # a pure function of (seed, domain, epoch)


def test_one_shard_is_shared_by_two_slots_without_overlap(release):
    """A domain with a single training shard, read by 2 slots: each takes its own half, once."""
    one = [r for r in _train_rows(release) if r["domain"] == "radio"][:1]
    spec = CurriculumSpec(name="radio", phases=[Phase(name="all", weights={"radio": 1})])
    got = []
    for slot in range(2):
        others = [r for r in _train_rows(release) if r["domain"] != "radio"]  # in the schedule, weight 0
        stream = make_slot_stream(store=release.store, shards=one + others, schedule=_schedule(release, spec), seed=1,
                                  slot=slot, slots=2, worker=0, workers=1, batch_seconds=12.0, buffer_size=3,
                                  passes=1)
        got.append([i.key for b in stream for i in b.items])
    from corpus.shards import iter_shard_raw

    keys = [k for k, _ in iter_shard_raw(release.store, one[0]["url"])]
    assert len(keys) >= 2 and abs(len(got[0]) - len(got[1])) <= 1
    assert sorted(got[0] + got[1]) == sorted(keys)


def test_ranks_times_workers_read_every_sample_exactly_once_per_pass(store, release):
    """2 ranks x 2 real DataLoader worker processes, one pass: every training sample once."""

    from training.dataset import StreamingDataset, data_loader
    from training.features import CharVocab

    schedule = _schedule(release)
    vocab = CharVocab.from_texts(r["text"] for r in release.manifest().to_pylist())
    seen = []
    steps = []
    for rank in range(2):
        dataset = StreamingDataset(store_uri=store.uri, endpoint_url=None, release=RELEASE,
                                   shards=_train_rows(release), schedule=schedule, vocab=vocab, seed=3,
                                   batch_seconds=15.0, shuffle_buffer=4, rank=rank, world_size=2, passes=1)
        for batch in data_loader(dataset, num_workers=2):
            seen.extend(batch["keys"])
            steps.append((rank, batch["index"], batch["worker"]))
            assert batch["feats"].shape[0] == len(batch["keys"]) and batch["feats"].shape[2] == 80
    counts = Counter(seen)
    assert sorted(counts) == train_keys(store)
    assert max(counts.values()) == 1
    for rank in range(2):  # each rank's batches arrive as steps 0, 1, 2 ... from alternating workers
        indices = [i for r, i, _ in steps if r == rank]
        assert indices[: len(indices) // 2 * 2] == list(range(len(indices) // 2 * 2))


def test_batches_respect_the_duration_budget(release):
    durations = {r["segment_id"]: r["end"] - r["start"] for r in release.manifest().to_pylist()}
    budget = 9.0
    stream = _stream(release, batch_seconds=budget)
    batches = list(stream)
    sizes = [len(b.items) for b in batches]
    totals = [sum(durations[i.key] for i in b.items) for b in batches]
    assert all(t <= budget + 1e-9 for t in totals)
    assert max(sizes) >= 2 and len(set(sizes)) > 1  # by duration, not by count
    # every batch but the last was closed by a sample that did not fit
    for batch, total, following in zip(batches, totals, batches[1:]):
        assert total + following.items[0].duration > budget
    assert sum(sizes) + stream.too_long == len(train_keys_of(release))


def train_keys_of(release):
    return [r["segment_id"] for r in release.manifest().to_pylist() if r["split"] == "train"]


def test_samples_longer_than_a_batch_are_dropped_and_counted(release):
    durations = sorted(r["end"] - r["start"] for r in release.manifest().to_pylist() if r["split"] == "train")
    budget = durations[len(durations) // 2]
    stream = _stream(release, batch_seconds=budget)
    kept = sum(len(b.items) for b in stream)
    longer = sum(d > budget for d in durations)
    assert longer > 0 and stream.too_long == longer
    assert kept == len(durations) - longer


def test_phase_filters_apply_to_the_samples_drawn(release):
    spec = CurriculumSpec(phases=[Phase(name="short", weights="hours", filters=Filters(max_duration=3.2))])
    stream = _stream(release, schedule=_schedule(release, spec))
    items = [i for b in stream for i in b.items]
    assert items and all(i.duration <= 3.2 for i in items)
    assert sum(s.filtered for s in stream.streams.values()) == len(train_keys_of(release)) - len(items)


def _corrupt_copy(store, tmp_path):
    """A copy of the release with one training shard's bytes changed (same size, same index)."""
    copy = copy_release(store, open_store(tmp_path / "corrupt-store"))
    row = next(r for r in copy.shards(split="train", domain="phone"))
    data = bytearray(copy.store.get_bytes(row["url"]))
    data[len(data) // 3] ^= 0xFF
    copy.store.put_bytes(row["url"], bytes(data))
    keys = set()
    from corpus.shards import iter_shard_raw

    for key, _ in iter_shard_raw(copy.store, row["url"]):  # still a readable tar: only the checksum tells
        keys.add(key)
    return copy, row, keys


def test_a_corrupt_shard_is_skipped_logged_and_counted(store, release, tmp_path, caplog):
    copy, row, bad_keys = _corrupt_copy(store, tmp_path)
    with caplog.at_level(logging.WARNING, logger="training.stream"):
        stream = _stream(copy)
        got = [i.key for b in stream for i in b.items]
    assert bad_keys and not bad_keys & set(got)
    assert sorted(got) == sorted(set(train_keys_of(release)) - bad_keys)
    assert stream.state()["corrupt"] == {row["url"]: 1}
    assert any("fails its checksum" in r.getMessage() and row["url"] in r.getMessage() for r in caplog.records)


def test_a_corrupt_shard_is_fatal_with_the_flag(store, tmp_path):
    copy, row, _ = _corrupt_copy(store, tmp_path)
    stream = _stream(copy, fail_on_corrupt=True)
    with pytest.raises(ShardError, match="fails its checksum.*fail_on_corrupt_shard"):
        for _ in stream:
            pass


def _keys(batches):
    return [[i.key for i in b.items] for b in batches]


@pytest.mark.parametrize("cut", [1, 4, 9])
def test_a_restored_position_continues_exactly(release, cut):
    """Infinite stream (epochs repeat), phases with filters: state after `cut` batches, restore, compare."""
    spec = CurriculumSpec(phases=[
        Phase(name="a", steps=6, weights={"audiobook": 2, "radio": 1}, filters=Filters(max_duration=4.0)),
        Phase(name="b", weights="equal")])
    schedule = _schedule(release, spec)
    reference = _stream(release, passes=None, schedule=schedule, buffer=5)
    ref_batches = [b for _, b in zip(range(16), reference)]
    assert {i.domain for b in ref_batches[:6] for i in b.items} == {"audiobook", "radio"}
    state = ref_batches[cut - 1].state
    resumed = _stream(release, passes=None, schedule=schedule, buffer=5)
    resumed.restore(state)
    again = [b for _, b in zip(range(16 - cut), resumed)]
    assert _keys(again) == _keys(ref_batches[cut:])
    assert [b.index for b in again] == list(range(cut, 16))


@pytest.mark.s3
def test_stream_from_s3_matches_local(release, s3_endpoint, tmp_path_factory):
    s3_store, _ = s3_store_with_release(s3_endpoint, tmp_path_factory)
    s3_release = Release.open(s3_store, RELEASE)
    local = _keys(_stream(release))
    remote = _keys(_stream(s3_release, store=release_store(s3_store, RELEASE)))
    assert local == remote and sum(map(len, local)) == len(train_keys_of(release))
