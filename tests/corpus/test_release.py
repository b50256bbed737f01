"""Releases end to end on a local dir and on moto S3: write, read (ours and plain webdataset), verify."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import boto3
import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from corpus.release import Release, ReleaseError, ReleaseWriter, acquire_release, verify_release
from corpus.schema import recording_id, segment_id
from corpus.store import S3Store


def _recording(seed: int, seconds: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.2 * np.sin(2 * np.pi * (150 + 10 * seed) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _segments():
    """Three recordings over two domains; every third segment rejected with a reason."""
    rows = []
    for seed, domain, split in ((1, "phone", "train"), (2, "radio", "train"), (3, "phone", "test")):
        pcm = _recording(seed)
        rec = recording_id(pcm)
        for n, (start, end) in enumerate(((0.0, 1.5), (1.5, 3.25), (3.5, 5.0))):
            reject = n == 2
            rows.append(({
                "segment_id": segment_id(rec, start, end), "recording_id": rec, "source_uri": f"file:///raw/{seed}.wav",
                "domain": domain, "split": split, "start": start, "end": end, "text": f"words {seed} {n}",
                "avg_logprob": -0.2 - n, "no_speech_prob": 0.01, "compression_ratio": 1.2,
                "decision": "reject" if reject else "keep", "reasons": ["low_avg_logprob"] if reject else [],
            }, pcm[int(start * 16000):int(end * 16000)]))
    return sorted(rows, key=lambda r: r[0]["segment_id"])


def _write_release(store, name, **options):
    with ReleaseWriter(store, name, config={"thresholds": {"avg_logprob": -1.0}}, **options) as writer:
        for row, pcm in _segments():
            writer.add(row, pcm=pcm if row["decision"] == "keep" else None, extra={"temperature": 0.0})
        return writer.commit()


def test_round_trip_with_our_reader(store):
    info = _write_release(store, "v1")
    assert info["counts"] == {"segments": 9, "kept": 6, "rejected": 3, "recordings": 3, "shards": 3}
    assert info["hours"]["kept"] == pytest.approx(6 * 1.625 / 3600)
    release = Release.open(store, "v1")
    manifest = release.manifest().to_pandas()
    assert len(manifest) == 9 and set(manifest.decision) == {"keep", "reject"}
    assert manifest[manifest.decision == "reject"].shard.isna().all()
    assert list(manifest[manifest.decision == "reject"].reasons.iloc[0]) == ["low_avg_logprob"]
    samples = list(release.samples())
    assert sorted(s.key for s in samples) == sorted(manifest[manifest.decision == "keep"].segment_id)
    for sample in samples:
        assert sample.meta["temperature"] == 0.0 and sample.meta["decision"] == "keep"
        assert len(sample.audio) / 16000 == pytest.approx(sample.meta["end"] - sample.meta["start"])
    assert release.config() == {"thresholds": {"avg_logprob": -1.0}}
    assert [s.key for s in release.samples(split="test")] == sorted(
        manifest[(manifest.split == "test") & (manifest.decision == "keep")].segment_id)
    assert verify_release(store, "v1") == []


def test_two_writes_of_the_same_input_are_byte_identical(store):
    _write_release(store, "a")
    _write_release(store, "b")
    a, b = Release.open(store, "a"), Release.open(store, "b")
    assert a.index().to_pylist() == b.index().to_pylist()
    for key in [r["url"] for r in a.shards()] + ["manifest.parquet", "index.parquet", "config.yaml"]:
        assert a.store.get_bytes(key) == b.store.get_bytes(key), key


def test_plain_webdataset_reads_the_release(store, tmp_path):
    _write_release(store, "v1")
    release = Release.open(store, "v1")
    if isinstance(store, S3Store):  # plain webdataset over presigned HTTP URLs of the moto endpoint
        client = boto3.client("s3", endpoint_url=store.endpoint_url, region_name="us-east-1")
        urls = [client.generate_presigned_url("get_object", Params={"Bucket": store.bucket,
                "Key": f"{release.store.prefix}/{row['url']}"}) for row in release.shards()]
    else:
        urls = [str(release.store.root / row["url"]) for row in release.shards()]
    plain = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    ours = list(release.samples())
    assert [p["__key__"] for p in plain] == [s.key for s in ours]
    for p, s in zip(plain, ours):
        assert json.loads(p["json"]) == s.meta
        audio, rate = sf.read(io.BytesIO(p["flac"]), dtype="float32")
        assert rate == 16000
        np.testing.assert_array_equal(audio, s.audio)


def test_verify_catches_a_corrupted_shard(store):
    _write_release(store, "v1")
    release = Release.open(store, "v1")
    url = release.shards()[1]["url"]
    data = bytearray(release.store.get_bytes(url))
    data[700] ^= 0x01  # a bit inside the first FLAC member
    release.store.put_bytes(url, bytes(data))
    problems = verify_release(store, "v1")
    assert problems and url in problems[0] and "fails its checksum" in problems[0]
    assert all(url in p for p in problems), "only the corrupted shard is reported"


def test_verify_catches_missing_and_unindexed_shards_and_tampered_manifest(store):
    _write_release(store, "v1")
    release = Release.open(store, "v1")
    url = release.shards()[0]["url"]
    data = release.store.get_bytes(url)
    release.store.delete(url)
    release.store.put_bytes("shards/train/phone/stray.tar", data)
    problems = verify_release(store, "v1")
    assert any(url in p and "missing" in p for p in problems)
    assert any("stray.tar is not in the index" in p for p in problems)
    release.store.put_bytes("manifest.parquet", b"not parquet")
    assert any("manifest.parquet: sha256" in p for p in verify_release(store, "v1"))


def test_cli_verify_exit_codes(store):
    _write_release(store, "v1")
    env_args = ["--endpoint-url", store.endpoint_url] if isinstance(store, S3Store) else []
    cmd = [sys.executable, "-m", "corpus.cli", "verify", "--store", store.uri, "--release", "v1", *env_args]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "verified: 6 kept / 9 segments, 3 shards" in ok.stdout
    release = Release.open(store, "v1")
    url = release.shards()[0]["url"]
    release.store.put_bytes(url, release.store.get_bytes(url)[:-20000])
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "FAILED verification" in bad.stderr and url in bad.stderr
    missing = subprocess.run(cmd[:-len(env_args) or None][:-1] + ["nope"] + env_args, capture_output=True, text=True)
    assert missing.returncode == 1 and "no release 'nope'" in missing.stderr


def test_empty_release_is_refused_and_nothing_committed(store):
    with pytest.raises(ReleaseError, match="release 'empty' is empty"):
        with ReleaseWriter(store, "empty", config={}) as writer:
            for row, _ in _segments():
                writer.add({**row, "decision": "reject", "reasons": ["test"]})
            writer.commit()
    with pytest.raises(ReleaseError, match="no release 'empty'"):
        Release.open(store, "empty")


def test_committed_release_is_never_overwritten(store):
    _write_release(store, "v1")
    before = store.list()
    with pytest.raises(ReleaseError, match="already exists"):
        ReleaseWriter(store, "v1", config={})
    assert store.list() == before and verify_release(store, "v1") == []


def test_leftovers_of_an_interrupted_write_are_replaced(store):
    lease = acquire_release(store, "v1", ttl=1.0)
    writer = ReleaseWriter(store, "v1", config={}, max_shard_samples=1, lease=lease)
    for row, pcm in _segments()[:4]:
        writer.add(row, pcm=pcm if row["decision"] == "keep" else None)
    # the writer dies here: finished shards are in the store, RELEASE.json is not, and its lease
    # is no longer renewed (a dead process renews nothing) and runs out
    lease._stop.set()
    time.sleep(1.1)
    assert store.list("releases/v1") and not store.exists("releases/v1/RELEASE.json")
    _write_release(store, "v1")
    assert verify_release(store, "v1") == []


def test_a_second_writer_is_refused_while_the_first_is_alive(store):
    first = ReleaseWriter(store, "v1", config={}, max_shard_samples=1)
    for row, pcm in _segments()[:4]:
        first.add(row, pcm=pcm if row["decision"] == "keep" else None)
    objects = store.list("releases/v1")
    with pytest.raises(ReleaseError, match="being written by writer"):
        ReleaseWriter(store, "v1", config={})
    assert store.list("releases/v1") == objects, "the refused writer must not touch the live one's objects"
    for row, pcm in _segments()[4:]:
        first.add(row, pcm=pcm if row["decision"] == "keep" else None)
    first.commit()
    assert verify_release(store, "v1") == [] and not store.list("work/leases")
    with pytest.raises(ReleaseError, match="already exists"):
        ReleaseWriter(store, "v1", config={})


def test_bad_rows_are_refused(store):
    row, pcm = next((r, p) for r, p in _segments() if r["decision"] == "keep")
    writer = ReleaseWriter(store, "v1", config={})
    with pytest.raises(ValueError, match="exactly one of pcm= or flac="):
        writer.add(row)
    with pytest.raises(ValueError, match="s of audio for start..end"):
        writer.add(row, pcm=pcm[:-800])
    with pytest.raises(ValueError, match="decision must be"):
        writer.add({**row, "decision": "maybe"}, pcm=pcm)
    with pytest.raises(ValueError, match="invalid sample key"):
        writer.add({**row, "segment_id": "a.b"}, pcm=pcm)
    writer.abort()
