"""Running the build job from a flow: in-process on a local Ray cluster, or submitted to an
existing cluster with the Ray Jobs API, its logs streamed into the Prefect run.

A submitted job's id is derived from the flow run id, so the flow's cancellation hook can stop
it without any state kept between them.
"""
from __future__ import annotations

import asyncio
import json
import os

import yaml

from corpus.store import open_store

JOB_ENV_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
                "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED")


def submission_id(flow_run_id) -> str:
    return f"stt-corpus-build-{flow_run_id}"


def run_local(config: dict) -> dict:
    from pipelines.build import run_build
    from pipelines.config import BuildConfig

    return run_build(BuildConfig.model_validate(config), progress=False)


def run_submitted(config: dict, address: str, job_id: str, log) -> dict:
    """Submit ``stt-corpus build`` to the cluster at ``address`` (its dashboard URL), stream its
    logs to ``log``, and return the build summary saved in the release."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    store = open_store(config["store"], endpoint_url=config.get("endpoint_url"))
    key = f"work/jobs/{config['release']}.yaml"
    store.put_bytes(key, yaml.safe_dump(config, sort_keys=True).encode())
    client = JobSubmissionClient(address)
    env = {k: os.environ[k] for k in JOB_ENV_VARS if k in os.environ}
    endpoint = f" --endpoint-url {config['endpoint_url']}" if config.get("endpoint_url") else ""
    client.submit_job(entrypoint=f"stt-corpus build --no-progress --config {store.url(key)}{endpoint}",
                      submission_id=job_id,
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


def stop_submitted(address: str, job_id: str) -> bool:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address).stop_job(job_id)
