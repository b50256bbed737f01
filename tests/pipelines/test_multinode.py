"""The build on a real multi-node Ray cluster: a head and two worker nodes on this machine, each
its own raylet (``tests/ray_nodes.py``), sources and store on the moto S3 endpoint, no shared disk.

One worker declares ``asr: 1`` (it stands for a GPU node) and the label stage is placed by it;
the other declares ``cpu_pool`` and ingest, decode + VAD and FLAC cutting are placed by that.
The release equals a one-node build's byte for byte, and so does the release of a build whose
labelling node was killed (SIGKILL, raylet and workers at once) midway and replaced by a new
one: Ray restarts the label actor on the new node and the running build goes on (seen here), or,
if the driver fails, a rerun labels only what is left; either way the release is the same.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml

from conftest import make_bucket
from reference.gen_audio import generate
from corpus.release import verify_release
from corpus.store import open_store
from ray_nodes import LocalRayCluster

pytestmark = [pytest.mark.slow, pytest.mark.s3]

RELEASE = "mn"
# build_summary.json holds timings; compared without them (RELEASE.json without its commit time)
TIMING_KEYS = {"wall_seconds", "stage_seconds", "label_throughput_audio_s_per_s"}


@pytest.fixture(scope="module")
def sources(s3_endpoint, tmp_path_factory):
    """About 2 minutes of generated speech (4 recordings) uploaded to S3, one prefix per domain."""
    raw = tmp_path_factory.mktemp("raw")
    generate(raw, minutes=2.0, seed=5)
    bucket = make_bucket(s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    files = sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"))
    domains = sorted({f.name.split("-")[0] for f in files})
    for f in files:
        client.upload_file(str(f), bucket, f"raw/{f.name.split('-')[0]}/{f.name}")
    return bucket, domains, len(files)


def _write_config(path: Path, bucket: str, domains: list[str], endpoint: str) -> Path:
    config = {"release": RELEASE, "store": f"s3://{bucket}/corpus", "endpoint_url": endpoint,
              "filter": {"min_avg_logprob": -0.5},
              "sources": [{"uri": f"s3://{bucket}/raw/{d}", "domain": d, "licence": "CC0-1.0"} for d in domains],
              "model": {"name": "tiny.en", "device": "cpu", "cpu_threads": 1},
              "resources": {"num_cpus": 2, "decode_workers": 1, "label_actors": 1, "cpus_per_label_actor": 1,
                            "label_resources": {"asr": 1}, "cpu_resources": {"cpu_pool": 1}}}
    path.write_text(yaml.safe_dump(config))
    return path


def _build_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "corpus.cli", "build", "--config", str(config), "--no-progress"]


def _take_release(store_uri: str, endpoint: str) -> dict[str, bytes]:
    """Every object of the release (derived datasheet files aside), then the store emptied for the next build."""
    store = open_store(store_uri, endpoint_url=endpoint)
    assert verify_release(store, RELEASE) == []
    prefix = f"releases/{RELEASE}/"
    out = {}
    for key in store.list(prefix):
        name = key.removeprefix(prefix)
        if name.startswith(("datasheet.", "plots/")):
            continue
        data = store.get_bytes(key)
        if name == "RELEASE.json":  # the commit time and the checksum of the timings differ
            data = json.loads(data)
            del data["created"], data["files"]["build_summary.json"]
        elif name == "build_summary.json":
            data = {k: v for k, v in json.loads(data).items() if k not in TIMING_KEYS}
        out[name] = data
    for key in store.list(""):
        store.delete(key)
    return out


def _label_parts(client, bucket: str) -> int:
    listing = client.list_objects_v2(Bucket=bucket, Prefix="corpus/work/labels/")
    return sum(o["Key"].endswith(".parquet") for o in listing.get("Contents", []))


def test_multinode_build_places_stages_and_equals_the_one_node_release(sources, s3_endpoint, tmp_path):
    bucket, domains, n_files = sources
    config = _write_config(tmp_path / "build.yaml", bucket, domains, s3_endpoint)
    store_uri = f"s3://{bucket}/corpus"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    # the reference: the same config on one node that declares both resources
    with LocalRayCluster() as single:
        single.start_head(num_cpus=2, resources={"asr": 1, "cpu_pool": 2})
        one = subprocess.run(_build_cmd(config), capture_output=True, text=True, timeout=300,
                             env=single.driver_env())
    assert one.returncode == 0, one.stderr[-3000:]
    reference = _take_release(store_uri, s3_endpoint)
    assert any(name.startswith("shards/") for name in reference)

    with LocalRayCluster() as cluster:
        cluster.start_head(num_cpus=0)
        cpu = cluster.add_node("cpu", num_cpus=2, resources={"cpu_pool": 2})
        asr = cluster.add_node("asr", num_cpus=1, resources={"asr": 1})

        multi = subprocess.run(_build_cmd(config), capture_output=True, text=True, timeout=300,
                               env=cluster.driver_env())
        assert multi.returncode == 0, multi.stderr[-3000:]
        assert f"labelled now: {n_files} recordings" in multi.stdout
        assert _take_release(store_uri, s3_endpoint) == reference

        # placement, from what each node's workers ran (Ray names every task and actor in its logs)
        on_cpu, on_asr = cluster.logs(cpu), cluster.logs(asr)
        assert "LabelStage" in on_asr and "LabelStage" not in on_cpu
        for stage in ("IngestStage", "CutStage"):
            assert stage in on_cpu and stage not in on_asr, stage

        # the labelling node dies midway (SIGKILL: raylet and workers); a new one joins; rerun
        proc = subprocess.Popen(_build_cmd(config), env=cluster.driver_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline = time.time() + 600  # a hang guard only: a loaded machine is slow, not wrong
            while time.time() < deadline and proc.poll() is None and _label_parts(client, bucket) < 1:
                time.sleep(0.2)
            assert proc.poll() is None, f"the build ended before its labelling node could be killed:\n{proc.stdout.read()}"
            cluster.kill(asr)
            done_before = _label_parts(client, bucket)
            assert 1 <= done_before < n_files
            cluster.add_node("asr", num_cpus=1, resources={"asr": 1})
            try:
                out, _ = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                pytest.fail(f"the build did not go on after its labelling node was replaced:\n{out[-3000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
        print(f"\nlabelling node killed after {done_before} of {n_files} recordings; first run exit "
              f"{proc.returncode}:\n{out[-1500:]}")
        if proc.returncode != 0:
            rerun = subprocess.run(_build_cmd(config), capture_output=True, text=True, timeout=300,
                                   env=cluster.driver_env())
            assert rerun.returncode == 0, rerun.stderr[-3000:]
            assert f"labelled now: {n_files - done_before} recordings" in rerun.stdout
        assert _take_release(store_uri, s3_endpoint) == reference
