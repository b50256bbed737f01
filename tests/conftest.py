"""Shared fixtures: a real S3 HTTP endpoint (moto's server on 127.0.0.1) and stores over it.

AWS credentials and the region are set to dummies before anything imports boto3, and the EC2
metadata lookup is switched off, so no test can reach any address but loopback.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_var, None)
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    # nothing phones home: Prefect's server telemetry and Ray's usage stats stay off in tests
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1",
})

sys.path.insert(0, str(Path(__file__).resolve().parent / "pipelines"))
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "audio"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "MANIFEST.tsv").is_file():
        pytest.fail(f"shared audio fixtures not found at {FIXTURES} (clone the project next to ../shared)")
    return FIXTURES


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """URL of a moto S3 server on 127.0.0.1, alive for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_bucket(endpoint: str) -> str:
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_store_uri(s3_endpoint):
    return f"s3://{make_bucket(s3_endpoint)}/corpus"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path):
    """The same tests over a local directory and over the moto S3 endpoint."""
    from corpus.store import open_store

    if request.param == "local":
        return open_store(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_store(f"s3://{make_bucket(endpoint)}/corpus", endpoint_url=endpoint)


@pytest.fixture(autouse=True)
def _cli_logging_ends_with_its_test():
    """A command run in-process (``cli_main([...])``) installs a root handler on the stderr of the
    moment, which pytest closes after the test; left in place, a later test's log records fail to
    write there, and under Prefect's ``log_prints`` the error report is logged again, without end.
    So the handlers ``corpus.logs.configure_logging`` installs go away with the test that ran it."""
    import logging

    from corpus.logs import RedactingFormatter

    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if isinstance(handler.formatter, RedactingFormatter):
            root.removeHandler(handler)
    root.setLevel(level)
