"""Data lost or wrong (the audit's second group), each with the test that guards it: a file
that cannot be read is deferred and read again by the next run (never quarantined for good);
changed source metadata reaches the release; a writer killed mid-shard leaves no temp file or
multipart upload in the committed release; two writers of one release: one wins, the other
fails with a clear message, and `verify` passes on what exists."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import make_bucket
from corpus.release import Release, ReleaseError, ReleaseWriter, verify_release
from corpus.schema import recording_id, segment_id
from corpus.store import open_store
from pipelines.build import run_build
from pipelines.config import load_config
from rel_helpers import local_ray  # noqa: F401  (fixture)
from s3_faults import FaultProxy

pytestmark = [pytest.mark.reliability, pytest.mark.s3]
FIXTURES = ("DeepSpeech/arctic_a0024.wav", "leopard/test.wav")


@pytest.fixture(scope="module")
def raw(tmp_path_factory, fixtures_dir) -> Path:
    out = tmp_path_factory.mktemp("raw")
    for rel in FIXTURES:
        shutil.copy(fixtures_dir / rel, out / rel.rsplit("/", 1)[-1])
    return out


@pytest.fixture(scope="module")
def proxy(s3_endpoint):
    with FaultProxy(s3_endpoint) as p:
        yield p


def _upload(raw: Path, endpoint: str) -> str:
    bucket = make_bucket(endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for f in sorted(raw.iterdir()):
        client.upload_file(str(f), bucket, f"raw/{f.name}")
    return bucket


def _config(release: str, store: str, source: str, endpoint=None, **source_fields) -> dict:
    return {"release": release, "store": store, "endpoint_url": endpoint, "resources": {"num_cpus": 2},
            "model": {"name": "tiny.en"},
            "sources": [{"uri": source, "domain": source_fields.pop("domain", "talk"), **source_fields}]}


def _table(release: Release, name: str) -> list[dict]:
    return pq.read_table(io.BytesIO(release.store.get_bytes(name))).to_pylist()


# --------------------------------------------------------------------------- transient errors


@pytest.fixture(scope="module")
def s3_world(local_ray, raw, s3_endpoint, proxy):
    """A source bucket and a store; build t1 while one file answers 403 on every attempt (an
    outage that outlasts the retries), then t2 after the outage. Later tests reuse the store."""
    bucket = _upload(raw, s3_endpoint)
    world = {"bucket": bucket, "store_uri": f"s3://{bucket}/corpus", "source": f"s3://{bucket}/raw"}
    proxy.deny("raw/arctic_a0024.wav")
    try:
        world["t1"] = run_build(load_config(None, **_config("t1", world["store_uri"], world["source"], proxy.url)),
                                progress=False)
    finally:
        proxy.allow_all()
    world["ingest_parts_after_t1"] = len(open_store(world["store_uri"], endpoint_url=s3_endpoint).list("work/ingest"))
    world["t2"] = run_build(load_config(None, **_config("t2", world["store_uri"], world["source"], proxy.url)),
                            progress=False)
    return world


def test_an_unreadable_file_is_deferred_and_the_next_run_reads_it(s3_world, s3_endpoint):
    store = open_store(s3_world["store_uri"], endpoint_url=s3_endpoint)
    first, second = s3_world["t1"], s3_world["t2"]
    assert verify_release(store, "t1") == [] and verify_release(store, "t2") == []
    assert first["deferred_by_reason"] == {"unreadable": 1} and "unreadable" not in first["quarantine_by_reason"]
    rows = _table(Release.open(store, "t1"), "quarantine.parquet")
    assert [(r["status"], r["uri"].rsplit("/", 1)[-1]) for r in rows] == [("deferred", "arctic_a0024.wav")]
    assert s3_world["ingest_parts_after_t1"] == len(FIXTURES) - 1, "a deferred file must not be cached"
    # the outage is over: the next run reads the file, as new work
    assert second["ingested_now"] == 1 and second["recordings_labelled_now"] == 1 and not second["deferred_by_reason"]
    labelled = {u.rsplit("/", 1)[-1] for u in Release.open(store, "t2").manifest().column("source_uri").to_pylist()}
    assert "arctic_a0024.wav" in labelled


# --------------------------------------------------------------------------- changed metadata


def test_changed_licence_and_domain_reach_the_release(local_ray, raw, tmp_path):
    store_uri = str(tmp_path / "store")
    run_build(load_config(None, **_config("m1", store_uri, str(raw), licence="CC-BY-4.0", domain="talk")),
              progress=False)
    summary = run_build(load_config(None, **_config("m2", store_uri, str(raw), licence="CC0-1.0", domain="speech")),
                        progress=False)
    assert summary["ingested_now"] == 0 and summary["recordings_labelled_now"] == 0, "the work is reused"
    release = Release.open(open_store(store_uri), "m2")
    recordings = _table(release, "recordings.parquet")
    assert {(r["licence"], r["domain"]) for r in recordings} == {("CC0-1.0", "speech")}
    manifest = release.manifest().to_pylist()
    assert {r["domain"] for r in manifest} == {"speech"}
    samples = list(release.samples())
    assert samples and {s.meta["licence"] for s in samples} == {"CC0-1.0"}
    assert verify_release(open_store(store_uri), "m2") == []


# --------------------------------------------------------------------------- leftovers

_KILLED_WRITER = r"""
import os, signal, sys
from corpus.release import acquire_release
from corpus.store import open_store
store = open_store(sys.argv[1], endpoint_url=sys.argv[2] or None, part_size=5 * 1024 * 1024)
acquire_release(store, "k1")
store.put_bytes("releases/k1/shards/train/phone/train-phone-000000.tar", b"a finished shard of the dead writer")
writer = store.open_write("releases/k1/shards/train/phone/train-phone-000001.tar")
writer.write(os.urandom(6 * 1024 * 1024))  # past one S3 part: a multipart upload is under way
os.kill(os.getpid(), signal.SIGKILL)
"""


def _segments():
    rows = []
    t = np.arange(16000 * 4) / 16000
    pcm = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    rec = recording_id(pcm)
    for start, end in ((0.0, 1.5), (1.5, 3.0)):
        rows.append(({"segment_id": segment_id(rec, start, end), "recording_id": rec, "source_uri": "file:///r.wav",
                      "domain": "phone", "split": "train", "start": start, "end": end, "text": "a tone",
                      "avg_logprob": -0.2, "no_speech_prob": 0.01, "compression_ratio": 1.2, "decision": "keep",
                      "reasons": []}, pcm[int(start * 16000):int(end * 16000)]))
    return rows


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_writer_killed_mid_shard_leaves_nothing_in_the_committed_release(where, tmp_path, s3_endpoint):
    uri = str(tmp_path / "store") if where == "local" else f"s3://{make_bucket(s3_endpoint)}/corpus"
    endpoint = s3_endpoint if where == "s3" else ""
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, uri, endpoint], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    store = open_store(uri, endpoint_url=endpoint or None)
    unfinished = store.at("releases/k1").list_incomplete()
    assert unfinished, "the killed writer should have left a temp file / multipart upload"
    with ReleaseWriter(store, "k1", config={}) as writer:  # the dead writer's lease is taken over
        for row, pcm in _segments():
            writer.add(row, pcm=pcm)
        writer.commit()
    assert store.at("releases/k1").list_incomplete() == [] and verify_release(store, "k1") == []
    # verify reports an unfinished write inside a committed release
    leftover = store.open_write("releases/k1/shards/train/phone/stray.tar")
    leftover.write(b"x" * (6 * 1024 * 1024 if where == "s3" else 10))
    if where == "s3":
        leftover._send_part(bytes(leftover._buf))
    try:
        assert any("unfinished write" in p for p in verify_release(store, "k1"))
    finally:
        leftover.abort()


# --------------------------------------------------------------------------- two writers


def _wait_for_lease(store, name: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if store.list(f"work/leases/{name}"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no writer took the lease on {name}")


def test_two_builds_and_a_refilter_of_one_release_one_wins(s3_world, s3_endpoint, proxy):
    """Build c1 runs with every S3 request 0.05 s slower (seconds of overlap); a second build and
    a re-filter of c1 started meanwhile fail at once, naming the first writer; then a re-filter
    holds c2 and a build of c2 fails. `verify` passes on both."""
    from pipelines.refilter import refilter_release

    store_uri, source = s3_world["store_uri"], s3_world["source"]
    store = open_store(store_uri, endpoint_url=s3_endpoint)
    refused: list[str] = []

    def second_writers():
        _wait_for_lease(store, "c1")
        for attempt in (lambda: run_build(load_config(None, **_config("c1", store_uri, source, proxy.url)),
                                          progress=False),
                        lambda: refilter_release(store, "t2", "c1", thresholds={"min_avg_logprob": -0.5})):
            try:
                attempt()
                refused.append("NOT REFUSED")
            except ReleaseError as err:
                refused.append(str(err))

    proxy.delay(0.05)
    try:
        helper = threading.Thread(target=second_writers, daemon=True)
        helper.start()
        run_build(load_config(None, **_config("c1", store_uri, source, proxy.url)), progress=False)
        helper.join(timeout=120)
    finally:
        proxy.delay(0)
    assert len(refused) == 2 and all(re.search(r"cannot .* 'c1': it is being written by writer \w+ \(pid \d+", m)
                                     for m in refused), refused
    assert verify_release(store, "c1") == []

    holder_error: list[BaseException] = []

    def refilter_c2():
        try:
            refilter_release(open_store(store_uri, endpoint_url=proxy.url), "t2", "c2",
                             thresholds={"min_avg_logprob": -0.5}, endpoint_url=s3_endpoint)
        except BaseException as err:  # noqa: BLE001 - reported below
            holder_error.append(err)

    proxy.delay(0.05)
    try:
        holder = threading.Thread(target=refilter_c2, daemon=True)
        holder.start()
        _wait_for_lease(store, "c2")
        with pytest.raises(ReleaseError, match=r"being written by writer \w+ \(pid"):
            run_build(load_config(None, **_config("c2", store_uri, source, proxy.url)), progress=False)
        holder.join(timeout=300)
    finally:
        proxy.delay(0)
    assert not holder_error and verify_release(store, "c2") == []
    with pytest.raises(ReleaseError, match="already exists"):
        run_build(load_config(None, **_config("c2", store_uri, source, s3_endpoint)), progress=False)
