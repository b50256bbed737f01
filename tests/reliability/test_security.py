"""Security holes of the audit, each with the test that guards it: shell injection through a flow
parameter, credentials in logs and job metadata, Ray listening beyond loopback."""
from __future__ import annotations

import os
import subprocess
import sys
import pytest

from conftest import make_bucket
from rel_helpers import fake_credentials  # noqa: F401  (fixture)
from corpus.logs import redact
from corpus.store import validate_endpoint_url, validate_store_uri
from pipelines.config import ConfigError, load_config

pytestmark = pytest.mark.reliability
HOSTILE_STORE = "s3://corpus/x;touch${IFS}/tmp/INJECTED;#"


@pytest.mark.parametrize("bad", [HOSTILE_STORE, "s3://corpus/$(id)", "s3://corpus/a`id`", "/tmp/x;rm -rf ~",
                                 "s3://corpus/x\nrm", "s3://Not_A_Bucket/x", "ftp://host/x"])
def test_hostile_store_uris_are_refused(bad):
    with pytest.raises(ValueError):
        validate_store_uri(bad)


def test_flow_parameters_are_validated_as_strictly_as_the_cli(tmp_path):
    from flows.build_corpus import resolve_build_config, validate_refilter

    sources = [{"uri": str(tmp_path), "domain": "phone"}]
    with pytest.raises(ConfigError, match="invalid store URI"):
        load_config(None, release="r", store=HOSTILE_STORE, sources=sources)
    with pytest.raises(ConfigError, match="endpoint URL"):
        load_config(None, release="r", store=str(tmp_path), endpoint_url="http://127.0.0.1:1/;id", sources=sources)
    with pytest.raises(ConfigError, match="invalid store URI"):
        resolve_build_config.fn(None, "r", HOSTILE_STORE, None, None, None)
    with pytest.raises(ValueError, match="invalid store URI"):
        validate_refilter.fn(HOSTILE_STORE, "v1", None, None, None)
    with pytest.raises(ValueError, match="endpoint URL"):
        validate_refilter.fn(str(tmp_path), "v1", None, None, "http://127.0.0.1:9/x y")
    assert validate_endpoint_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def test_local_build_ray_listens_on_loopback_only(tmp_path):
    import psutil
    import ray

    from pipelines.runner import ray_session
    from pipelines.ray_local import listening_addresses

    from ray._private import ray_constants

    if ray.is_initialized():
        ray.shutdown()
    before = (os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER)
    with ray_session(num_cpus=1) as r:
        assert r.get(r.remote(lambda: 1).remote()) == 1  # a worker process is up too
        me = psutil.Process()
        pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
        listening = listening_addresses(pids)
    assert listening, "no listening socket found: the check would prove nothing"
    wide = [(pid, ip, port) for pid, ip, port in listening if ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not wide, f"Ray listens beyond loopback: {wide}"
    # single-machine mode ends with the session: a cluster node started later by this process joins
    assert (os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER) == before


def test_verbose_cli_logs_no_credentials(s3_endpoint, fake_credentials, tmp_path):
    bucket = make_bucket(s3_endpoint)
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint}
    run = subprocess.run([sys.executable, "-m", "corpus.cli", "-v", "verify", "--store", f"s3://{bucket}/corpus",
                          "--release", "nope"], env=env, capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 1 and "no release 'nope'" in out
    assert "DEBUG" in out or "INFO" in out or "FAILED" in out
    for secret in fake_credentials:
        assert secret not in out, f"a credential reached the output: ...{secret[-6:]}"


def test_redaction_covers_signed_headers_and_env_values(fake_credentials):
    line = (f"headers={{'X-Amz-Security-Token': b'{fake_credentials[2]}', 'Authorization': b'AWS4-HMAC-SHA256 "
            f"Credential={fake_credentials[0]}/20261129/us-east-1/s3/aws4_request, Signature=abc123'}} "
            f"secret {fake_credentials[1]}")
    clean = redact(line)
    assert not any(s in clean for s in fake_credentials) and "abc123" not in clean
