"""Faults: a 127.0.0.1 fault proxy in front of the S3 endpoint (503 SlowDown, 500, reset
connections, truncated bodies, 403, added latency) at 10 % of requests: a build, a re-filter and
a training stream give the same release bytes / samples as without faults; a corrupted read is
caught by its checksum and fetched again, never decoded. The driver is killed with SIGKILL while
labelling, during a shard upload and just before RELEASE.json: no partial release is ever visible, and the rerun
gives the same release. Every test counts segments lost and duplicated (both must be 0)."""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import make_bucket
from corpus.release import Release, ReleaseError, verify_release
from corpus.store import open_store
from pipelines.build import run_build
from pipelines.config import load_config
from rel_helpers import local_ray  # noqa: F401  (fixture)
from s3_faults import FaultProxy

pytestmark = [pytest.mark.reliability, pytest.mark.s3]
FIXTURES = ("DeepSpeech/arctic_a0024.wav", "leopard/test.wav", "DeepSpeech/new-home-in-the-stars-16k.wav")
# what must be byte-identical (config.yaml names the endpoint and build_summary.json has timings)
CONTENT = ("manifest.parquet", "index.parquet", "recordings.parquet", "quarantine.parquet")
KINDS = ("503", "500", "reset", "truncate", "403", "latency")
THRESHOLDS = {"min_avg_logprob": -0.5}


@pytest.fixture(scope="module")
def proxy(s3_endpoint):
    with FaultProxy(s3_endpoint) as p:
        yield p


@pytest.fixture(scope="module")
def world(local_ray, s3_endpoint, fixtures_dir, tmp_path_factory):
    """Source audio in one bucket; a baseline release f0 built without faults in another."""
    raw = tmp_path_factory.mktemp("raw")
    bucket = make_bucket(s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for rel in FIXTURES:
        shutil.copy(fixtures_dir / rel, raw / rel.rsplit("/", 1)[-1])
        client.upload_file(str(raw / rel.rsplit("/", 1)[-1]), bucket, f"raw/{rel.rsplit('/', 1)[-1]}")
    world = {"source": f"s3://{bucket}/raw", "store_uri": f"s3://{make_bucket(s3_endpoint)}/corpus",
             "tmp": tmp_path_factory.mktemp("faults")}
    run_build(load_config(None, **_config("f0", world["store_uri"], world["source"], s3_endpoint)), progress=False)
    return world


def _config(release: str, store: str, source: str, endpoint: str) -> dict:
    # one sample per shard: more objects, so more requests for faults to land on
    return {"release": release, "store": store, "endpoint_url": endpoint, "resources": {"num_cpus": 2},
            "filter": THRESHOLDS, "shards": {"max_samples": 1}, "model": {"name": "tiny.en"},
            "sources": [{"uri": source, "domain": "talk", "licence": "CC0-1.0"}]}


def _fingerprint(store, name: str) -> dict:
    """sha256 of every content file and shard of a committed release, by key."""
    release = Release.open(store, name)
    out = {key: release.info["files"][key]["sha256"] for key in CONTENT}
    out.update({row["url"]: row["sha256"] for row in release.index().to_pylist()})
    return out


def _lost_and_duplicated(store, name: str, baseline: list[str]) -> tuple[int, int]:
    ids = Release.open(store, name).manifest().column("segment_id").to_pylist()
    return len(set(baseline) - set(ids)), len(ids) - len(set(ids))


def _baseline_ids(store) -> list[str]:
    return Release.open(store, "f0").manifest().column("segment_id").to_pylist()


def test_build_under_10_percent_faults_gives_the_same_release(world, s3_endpoint, proxy):
    clean = open_store(world["store_uri"], endpoint_url=s3_endpoint)
    fresh = f"s3://{make_bucket(s3_endpoint)}/corpus"  # nothing cached: every stage runs under faults
    before = dict(proxy.by_kind)
    proxy.chaos(0.10, KINDS, seed=13)
    try:
        run_build(load_config(None, **_config("f1", fresh, world["source"], proxy.url)), progress=False)
    finally:
        proxy.chaos(0)
    injected = {k: proxy.by_kind.get(k, 0) - before.get(k, 0) for k in KINDS}
    store = open_store(fresh, endpoint_url=s3_endpoint)
    assert verify_release(store, "f1") == []
    assert _fingerprint(store, "f1") == _fingerprint(clean, "f0")
    lost, duplicated = _lost_and_duplicated(store, "f1", _baseline_ids(clean))
    print(f"\nbuild under faults: injected {injected}; segments lost {lost}, duplicated {duplicated}")
    assert (lost, duplicated) == (0, 0) and sum(injected.values()) > 0


def test_refilter_under_10_percent_faults_gives_the_same_release(world, s3_endpoint, proxy):
    from pipelines.refilter import refilter_release

    store = open_store(world["store_uri"], endpoint_url=s3_endpoint)
    refilter_release(store, "f0", "f0-strict", thresholds={"min_avg_logprob": -0.3}, endpoint_url=s3_endpoint)
    before = dict(proxy.by_kind)
    proxy.chaos(0.10, KINDS, seed=17)
    try:
        faulty = open_store(world["store_uri"], endpoint_url=proxy.url)
        refilter_release(faulty, "f0", "f0-strict-faults", thresholds={"min_avg_logprob": -0.3},
                         endpoint_url=proxy.url)
    finally:
        proxy.chaos(0)
    injected = {k: proxy.by_kind.get(k, 0) - before.get(k, 0) for k in KINDS}
    assert verify_release(store, "f0-strict-faults") == []
    assert _fingerprint(store, "f0-strict-faults") == _fingerprint(store, "f0-strict")
    lost, duplicated = _lost_and_duplicated(store, "f0-strict-faults", _baseline_ids(store))
    print(f"\nrefilter under faults: injected {injected}; segments lost {lost}, duplicated {duplicated}")
    assert (lost, duplicated) == (0, 0) and sum(injected.values()) > 0


def _stream(store, name: str, reader) -> list[tuple[str, bytes, bytes]]:
    out = []
    for row in Release.open(store, name).index().to_pylist():
        samples = reader.fetch({**row, "url": f"releases/{name}/{row['url']}"})
        assert samples is not None, f"shard {row['url']} was skipped"
        out += [(key, members["flac"], members["json"]) for key, members in samples]
    return out


def test_training_stream_under_faults_and_a_corrupted_read(world, s3_endpoint, proxy):
    from training.stream import ShardReader

    clean = open_store(world["store_uri"], endpoint_url=s3_endpoint)
    expected = _stream(clean, "f0", ShardReader(clean))
    faulty = open_store(world["store_uri"], endpoint_url=proxy.url)
    before = dict(proxy.by_kind)
    proxy.chaos(0.10, KINDS, seed=19)
    try:
        for _ in range(12):  # passes until faults have landed on several requests
            reader = ShardReader(faulty, fail_on_corrupt=True)
            assert _stream(faulty, "f0", reader) == expected
            if sum(proxy.by_kind.get(k, 0) - before.get(k, 0) for k in KINDS) >= 4:
                break
    finally:
        proxy.chaos(0)
    injected = {k: proxy.by_kind.get(k, 0) - before.get(k, 0) for k in KINDS}
    # one byte flipped in transit (same length, a 200): the sha256 catches it, the shard is fetched again
    proxy.corrupt_next(1, "/shards/")
    reader = ShardReader(faulty, fail_on_corrupt=True)
    assert _stream(faulty, "f0", reader) == expected
    assert proxy.corrupted == 1 and reader.corrupt == {}
    print(f"\ntraining stream under faults: injected {injected}, corrupted reads 1; samples lost 0, duplicated 0")


def _cli_build(config: dict, folder: Path) -> subprocess.Popen:
    path = folder / f"{config['release']}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen([sys.executable, "-m", "corpus.cli", "build", "--config", str(path), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _kill_when_held(proc: subprocess.Popen, proxy, seconds: float = 600) -> None:
    try:
        deadline = time.time() + seconds
        while not proxy.held.wait(0.2):
            assert proc.poll() is None, f"the build ended before the kill point: {proc.stderr.read()[-3000:]}"
            assert time.time() < deadline, "the build never reached the kill point"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray processes the driver started
        except ProcessLookupError:
            pass
        proxy.release_held(drop=True)  # the dead driver's held request never lands


@pytest.mark.parametrize("point", ["PUT /shards/", "PUT /RELEASE.json"])
def test_driver_killed_at_a_point_then_rerun_gives_the_same_release(world, s3_endpoint, proxy, point):
    """A fresh release name over the store's cached work, so the build reaches the shard stage
    quickly; the proxy holds the first request of the kill point, the driver is SIGKILLed."""
    method, where = point.split(" ")
    name = "k-shards" if "shards" in where else "k-commit"
    store = open_store(world["store_uri"], endpoint_url=s3_endpoint)
    # at the shards: two shard uploads land, the third is where the driver dies
    proxy.hold(method, f"/releases/{name}{where}" if "shards" in where else f"/releases/{name}/RELEASE.json",
               after=2 if "shards" in where else 0)
    proc = _cli_build(_config(name, world["store_uri"], world["source"], proxy.url), world["tmp"])
    _kill_when_held(proc, proxy)
    with pytest.raises(ReleaseError, match="never committed"):
        Release.open(store, name)  # no partial release is ever visible
    assert store.list(f"releases/{name}"), "the killed build had written part of the release"
    run_build(load_config(None, **_config(name, world["store_uri"], world["source"], proxy.url)), progress=False)
    assert verify_release(store, name) == [] and store.at(f"releases/{name}").list_incomplete() == []
    assert _fingerprint(store, name) == _fingerprint(store, "f0")
    lost, duplicated = _lost_and_duplicated(store, name, _baseline_ids(store))
    print(f"\ndriver killed at {point}: rerun gives the same release; segments lost {lost}, duplicated {duplicated}")
    assert (lost, duplicated) == (0, 0)


def test_driver_killed_while_labelling_then_rerun_gives_the_same_release(world, s3_endpoint, proxy):
    """A fresh store, so the build ingests and labels: one recording's label part lands, the
    second is held and the driver SIGKILLed. The rerun labels only what is missing and gives the
    release built without a kill."""
    fresh = f"s3://{make_bucket(s3_endpoint)}/corpus"
    store = open_store(fresh, endpoint_url=s3_endpoint)
    proxy.hold("PUT", "/work/labels/", after=1)
    proc = _cli_build(_config("k-label", fresh, world["source"], proxy.url), world["tmp"])
    _kill_when_held(proc, proxy)
    labelled = [k for k in store.list("work/labels") if k.endswith(".parquet")]
    assert len(labelled) == 1, f"the kill was not mid-labelling: {labelled}"
    assert not store.exists("releases/k-label/RELEASE.json")  # no partial release is ever visible
    run_build(load_config(None, **_config("k-label", fresh, world["source"], proxy.url)), progress=False)
    clean = open_store(world["store_uri"], endpoint_url=s3_endpoint)
    assert verify_release(store, "k-label") == [] and store.at("releases/k-label").list_incomplete() == []
    assert _fingerprint(store, "k-label") == _fingerprint(clean, "f0")
    lost, duplicated = _lost_and_duplicated(store, "k-label", _baseline_ids(clean))
    print(f"\ndriver killed while labelling (1 of {len(FIXTURES)} recordings labelled): rerun gives the same "
          f"release; segments lost {lost}, duplicated {duplicated}")
    assert (lost, duplicated) == (0, 0)


def test_every_fault_kind_was_injected_and_survived(proxy):
    """Runs last in this module: over the build, re-filter and streams above, every kind landed."""
    print(f"\nfaults injected in this module, by kind: {proxy.by_kind}, corrupted reads {proxy.corrupted}")
    assert all(proxy.by_kind.get(k, 0) > 0 for k in KINDS), proxy.by_kind
