"""WebDataset shards: deterministic bytes, caps, key rules, and readers other than ours."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import webdataset as wds

from corpus.schema import as_int16
from corpus.shards import ShardError, ShardWriter, encode_flac, iter_shard, iter_shard_raw
from corpus.store import LocalStore


def _samples(n, seed=0, seconds=0.5):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = np.arange(int(16000 * seconds)) / 16000
        pcm = (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        out.append((f"rec{seed:02d}-{i:09d}-{i + 1:09d}", pcm, {"text": f"sample number {i}", "avg_logprob": -0.1 * i}))
    return out


def _write(store, samples, *, split="train", domain="phone", **caps):
    with ShardWriter(store, **caps) as writer:
        for key, pcm, meta in samples:
            writer.write(split, domain, key, encode_flac(pcm), {**meta, "segment_id": key}, len(pcm) / 16000)
    return writer.index


def test_same_input_gives_byte_identical_shards(store):
    samples = _samples(6)
    first = _write(store.at("one"), samples, max_samples=4)
    second = _write(store.at("two"), samples, max_samples=4)
    assert [r["sha256"] for r in first] == [r["sha256"] for r in second]
    for row in first:
        assert store.at("one").get_bytes(row["url"]) == store.at("two").get_bytes(row["url"])
        assert store.at("one").sha256(row["url"]) == row["sha256"]
        assert store.at("one").size(row["url"]) == row["bytes"]


def test_shards_are_capped_by_count_and_size(store):
    samples = _samples(7)
    index = _write(store, samples, max_samples=3)
    assert [r["samples"] for r in index] == [3, 3, 1]
    assert [r["url"] for r in index] == [f"shards/train/phone/train-phone-{n:06d}.tar" for n in range(3)]
    assert index[0]["first_key"] == samples[0][0] and index[0]["last_key"] == samples[2][0]
    assert index[0]["seconds"] == pytest.approx(1.5)
    one_sample = len(encode_flac(samples[0][1])) + 3 * 512
    cap = 3 * one_sample + 12 * 1024
    sized = _write(store.at("sized"), samples, max_bytes=cap)
    assert len(sized) >= 3 and sum(r["samples"] for r in sized) == 7
    assert all(r["bytes"] <= cap for r in sized)


def test_one_split_and_domain_per_shard(store):
    with ShardWriter(store) as writer:
        for i, (key, pcm, meta) in enumerate(_samples(6)):
            split, domain = ("train", "phone") if i % 2 else ("test", "radio")
            writer.write(split, domain, key, encode_flac(pcm), {**meta, "split": split, "domain": domain}, 0.5)
    assert {(r["split"], r["domain"]) for r in writer.index} == {("train", "phone"), ("test", "radio")}
    for row in writer.index:
        metas = [s.meta for s in iter_shard(store, row["url"], sha256=row["sha256"])]
        assert {(m["split"], m["domain"]) for m in metas} == {(row["split"], row["domain"])}


@pytest.mark.parametrize("key", ["a.b", "a/b", "..", "", "x y", "../up"])
def test_bad_keys_are_refused(store, key):
    writer = ShardWriter(store)
    with pytest.raises(ValueError, match="invalid sample key"):
        writer.write("train", "phone", key, b"", {}, 0.0)
    writer.abort()
    assert store.list() == []


def test_keys_must_increase_within_a_stream(store):
    samples = _samples(2)
    writer = ShardWriter(store)
    writer.write("train", "phone", samples[1][0], encode_flac(samples[1][1]), {}, 0.5)
    with pytest.raises(ValueError, match="increasing order"):
        writer.write("train", "phone", samples[0][0], encode_flac(samples[0][1]), {}, 0.5)
    writer.abort()
    assert store.list() == [], "an aborted writer leaves nothing visible"


def test_our_reader_round_trips_audio_and_metadata(store):
    samples = _samples(5)
    index = _write(store, samples, max_samples=2)
    got = [s for row in index for s in iter_shard(store, row["url"], sha256=row["sha256"])]
    assert [s.key for s in got] == [k for k, _, _ in samples]
    for sample, (key, pcm, meta) in zip(got, samples):
        assert sample.sample_rate == 16000
        np.testing.assert_array_equal(as_int16(sample.audio * 32768 / 32767), as_int16(pcm))
        assert sample.meta == {**meta, "segment_id": key}


def test_plain_webdataset_and_tar_read_the_same_shards(tmp_path):
    store = LocalStore(tmp_path)
    samples = _samples(5)
    index = _write(store, samples, max_samples=3)
    paths = [str(tmp_path / row["url"]) for row in index]
    plain = list(wds.WebDataset(paths, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in plain] == [k for k, _, _ in samples]
    ours = [(k, g) for row in index for k, g in iter_shard_raw(store, row["url"])]
    for p, (key, group) in zip(plain, ours):
        assert p["flac"] == group["flac"] and p["json"] == group["json"]
        assert json.loads(p["json"])["segment_id"] == key
    listing = subprocess.run(["tar", "tvf", paths[0]], capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line.split()[-1] for line in listing] == [f"{k}.{e}" for k, _, _ in samples[:3] for e in ("flac", "json")]
    assert all("1970-01-01" in line and line.startswith("-rw-r--r--") for line in listing)


def test_truncated_shard_is_a_clear_error(store):
    index = _write(store, _samples(3))
    url = index[0]["url"]
    data = store.get_bytes(url)
    store.put_bytes(url, data[: len(data) // 2])
    with pytest.raises(ShardError, match=f"{url}.*truncated"):
        list(iter_shard(store, url, sha256=index[0]["sha256"]))


def test_wrong_checksum_is_a_clear_error(store):
    index = _write(store, _samples(3))
    url = index[0]["url"]
    data = bytearray(store.get_bytes(url))
    data[-600] ^= 0xFF  # inside the end-of-archive padding: still a valid tar, other bytes
    store.put_bytes(url, bytes(data))
    with pytest.raises(ShardError, match=f"{url} fails its checksum"):
        list(iter_shard(store, url, sha256=index[0]["sha256"]))
