"""Secrets: build, verify, refilter, train (the CLI, with -v) and a flow submitted to a real Ray
Jobs API run with recognisable fake credentials; every output is grepped for them: stdout and
stderr, error messages, every object in the store, Prefect logs and artifacts, the Jobs API's job
records and every log file Ray wrote. Also: a hostile store URI reaches the Jobs API's shell
quoted, so it runs nothing."""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from conftest import make_bucket
from rel_helpers import FAKE_KEY_ID, FAKE_SECRET, FAKE_TOKEN, leaked, ray_head  # noqa: F401  (fixture)

pytestmark = [pytest.mark.reliability, pytest.mark.s3, pytest.mark.slow]
FIXTURES = ("DeepSpeech/arctic_a0024.wav", "leopard/test.wav")


@pytest.fixture(scope="module")
def source(s3_endpoint, fixtures_dir):
    bucket = make_bucket(s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for rel in FIXTURES:
        client.upload_file(str(fixtures_dir / rel), bucket, f"raw/{rel.rsplit('/', 1)[-1]}")
    return f"s3://{bucket}/raw"


def _objects(endpoint: str, bucket: str) -> bytes:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    out = b""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            out += obj["Key"].encode() + b"\n" + client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _files_text(folder: Path) -> str:
    parts = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 50 << 20:
            try:
                parts.append(path.read_bytes().decode("utf-8", "replace"))
            except OSError:
                pass
    return "\n".join(parts)


def test_cli_commands_publish_no_credentials(source, s3_endpoint, tmp_path):
    bucket = make_bucket(s3_endpoint)
    store = f"s3://{bucket}/corpus"
    ray_tmp = Path(f"/tmp/rs-{uuid.uuid4().hex[:6]}")  # short: Ray's socket paths must fit
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": FAKE_SECRET, "AWS_SESSION_TOKEN": FAKE_TOKEN, "RAY_TMPDIR": str(ray_tmp)}
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump({"release": "s1", "store": store, "endpoint_url": s3_endpoint,
                                      "filter": {"min_avg_logprob": -0.5}, "resources": {"num_cpus": 2},
                                      "sources": [{"uri": source, "domain": "talk"}]}))
    cli = [sys.executable, "-m", "corpus.cli", "-v"]
    endpoint = ["--endpoint-url", s3_endpoint]
    commands = {
        "build": cli + ["build", "--config", str(config), "--no-progress"],
        "verify": cli + ["verify", "--store", store, "--release", "s1"] + endpoint,
        "refilter": cli + ["refilter", "--store", store, "--from", "s1", "--release", "s1-strict",
                           "--set", "min_avg_logprob=-0.3"] + endpoint,
        "train": cli + ["train", "--store", store, "--release", "s1", "--run", "r1", "--max-steps", "2",
                        "--device", "cpu", "--num-workers", "0", "--eval-every", "2"] + endpoint,
        "error": cli + ["verify", "--store", store, "--release", "nope"] + endpoint,
        "unreachable": cli + ["build", "--config", str(config), "--endpoint-url", "http://127.0.0.1:9"],
    }
    outputs = {}
    try:
        for name, cmd in commands.items():
            start = time.monotonic()
            run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            outputs[name] = (run.returncode, run.stdout + run.stderr)
            print(f"{name}: exit {run.returncode} in {time.monotonic() - start:.1f} s")
        ray_logs = _files_text(ray_tmp)
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)
    assert [outputs[n][0] for n in ("build", "verify", "refilter", "train")] == [0, 0, 0, 0], \
        {n: o[1][-2000:] for n, o in outputs.items() if o[0]}
    assert outputs["error"][0] == 1 and outputs["unreachable"][0] != 0
    assert "DEBUG" in outputs["build"][1], "-v must log at DEBUG, or the check proves little"
    for name, (_, text) in outputs.items():
        assert not leaked(text), f"{name} printed a credential"
    assert ray_logs and not leaked(ray_logs), "a Ray log holds a credential"
    assert not leaked(_objects(s3_endpoint, bucket)), "a store object holds a credential"


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_submitted_flow_publishes_no_credentials(prefect_api, ray_head, source, s3_endpoint, monkeypatch):
    from flows.build_corpus import SourceSpec, build_corpus

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", FAKE_TOKEN)
    bucket = make_bucket(s3_endpoint)
    state = build_corpus(release="sub1", store=f"s3://{bucket}/corpus", endpoint_url=s3_endpoint,
                         sources=[SourceSpec(uri=source, domain="talk")], thresholds={"min_avg_logprob": -0.5},
                         ray="submit", ray_address=ray_head.url, return_state=True)
    result = state.result()
    assert result["release"] == "sub1"
    jobs = urllib.request.urlopen(f"{ray_head.url}/api/jobs/", timeout=30).read().decode()
    assert "stt-corpus build" in jobs and not leaked(jobs), "the Jobs API returns a credential"
    assert not leaked(ray_head.all_logs()), "a Ray log holds a credential"
    assert not leaked(_objects(s3_endpoint, bucket)), "a store object holds a credential"
    assert not leaked(str(result))
    logs, artifacts = asyncio.run(_prefect_records(state.state_details.flow_run_id))
    assert logs and not leaked(logs), "a Prefect log holds a credential"
    assert artifacts and not leaked(artifacts), "a Prefect artifact holds a credential"


async def _prefect_records(flow_run_id) -> tuple[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs), "\n".join(str(a.data) for a in artifacts)


def test_submitted_entrypoint_is_not_interpreted_by_the_shell(ray_head, s3_endpoint, monkeypatch):
    """Flow validation bypassed on purpose: the quoting alone keeps the cluster's shell out of it."""
    from flows import ray_runner

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    marker = Path(f"/tmp/INJECTED-{uuid.uuid4().hex[:8]}")
    bucket = make_bucket(s3_endpoint)
    config = {"release": "r", "store": f"s3://{bucket}/x;touch${{IFS}}{marker};#", "endpoint_url": s3_endpoint,
              "sources": [{"uri": f"s3://{bucket}/raw", "domain": "phone"}]}
    try:
        with pytest.raises(RuntimeError, match="ended FAILED"):
            ray_runner.run_submitted(config, ray_head.url, f"inject-{uuid.uuid4().hex[:8]}", logging.getLogger("t"))
        assert not marker.exists(), "the store URI ran a command on the cluster"
    finally:
        marker.unlink(missing_ok=True)
