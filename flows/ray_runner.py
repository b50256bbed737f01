"""Running the build job from a flow: in-process on a local Ray cluster, or submitted to an
existing cluster with the Ray Jobs API, its logs streamed into the Prefect run.

A submitted job's id is derived from the flow run id, so the flow's cancellation hook can stop
it without any state kept between them.

Ray runs a job's entrypoint with a shell, so every argument is quoted (``shlex.join``) after the
config has been validated; nothing user-supplied is interpreted by that shell. Credentials are
never put into the job's ``runtime_env``: the Jobs API (``GET /api/jobs/``) returns it to anyone
who can reach the dashboard, and Ray writes it to its logs. The job gets its credentials the way
the cluster provides them (the nodes' own environment, an instance role, a mounted secret).
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import time

import yaml

from corpus.store import open_store

# settings a job may take from the submitter; never credentials (see the module docstring)
JOB_ENV_VARS = ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED")


def submission_id(flow_run_id) -> str:
    return f"stt-corpus-build-{flow_run_id}"


def entrypoint(config_uri: str, endpoint_url: str | None) -> str:
    """The job's command line, every argument quoted for the shell Ray runs it with."""
    args = ["stt-corpus", "build", "--no-progress", "--config", config_uri]
    if endpoint_url:
        args += ["--endpoint-url", endpoint_url]
    return shlex.join(args)


def run_local(config: dict) -> dict:
    """The build in this process, then its datasheet (what ``stt-corpus build`` does in a submitted job)."""
    from pipelines.build import run_build
    from pipelines.config import BuildConfig
    from presentation.datasheet import write_build_datasheet

    resolved = BuildConfig.model_validate(config)
    summary = run_build(resolved, progress=False)
    return write_build_datasheet(open_store(resolved.store, endpoint_url=resolved.endpoint_url), summary)


def run_submitted(config: dict, address: str, job_id: str, log) -> dict:
    """Submit ``stt-corpus build`` to the cluster at ``address`` (its dashboard URL), stream its
    logs to ``log``, and return the build summary saved in the release."""
    from ray.job_submission import JobStatus

    store = open_store(config["store"], endpoint_url=config.get("endpoint_url"))
    key = f"work/jobs/{config['release']}.yaml"
    store.put_bytes(key, yaml.safe_dump(config, sort_keys=True).encode())
    client = jobs_client(address)
    env = {k: os.environ[k] for k in JOB_ENV_VARS if k in os.environ}
    _submit(client, entrypoint=entrypoint(store.url(key), config.get("endpoint_url")), submission_id=job_id,
            runtime_env={"env_vars": env})
    log.info("submitted Ray job %s to %s", job_id, address)

    async def tail():
        async for lines in client.tail_job_logs(job_id):
            for line in lines.rstrip("\n").splitlines():
                log.info("[ray job] %s", line)

    asyncio.run(tail())
    status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        info = client.get_job_info(job_id)
        raise RuntimeError(f"Ray job {job_id} ended {status}: {info.message}")
    summary = json.loads(store.get_bytes(f"releases/{config['release']}/build_summary.json"))
    summary["ray_job_id"] = job_id
    return summary


NO_AGENT = "No available agent to submit job"


def jobs_client(address: str):
    """A Ray Jobs API client for exactly ``address`` (a dashboard URL).

    Ray lets ``RAY_API_SERVER_ADDRESS`` and then ``RAY_ADDRESS`` in the environment override the
    address a client is given; with ``RAY_ADDRESS`` set for local builds (infra/local.sh writes
    it), a flow would then ask the GCS of whatever cluster that names, or the newest one on the
    machine, instead of the cluster it was pointed at. The address given wins."""
    from ray.job_submission import JobSubmissionClient

    saved = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = address
    try:
        return JobSubmissionClient(address)
    finally:
        if saved is None:
            del os.environ["RAY_API_SERVER_ADDRESS"]
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved


def _submit(client, *, seconds: float = 120.0, **job) -> None:
    """``submit_job``, retried while the cluster answers that no job agent is up yet (a head that
    has just started, or a loaded one, says so for a while); any other refusal is raised at once.
    The same submission id makes a retry safe: a job that did start is refused as a duplicate."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as err:
            if NO_AGENT not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def stop_submitted(address: str, job_id: str) -> bool:
    return jobs_client(address).stop_job(job_id)
