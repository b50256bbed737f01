"""The real local stack from infra/local.sh: `prefect server`, a Ray head (Jobs API) and an S3
endpoint on 127.0.0.1. `stt-corpus flows serve` serves the deployments; a run of
build-corpus/manual is triggered through the API client, submits the build to Ray with the Jobs
API, and must finish with a verified release on S3 and its artifacts. Then headless Chromium
opens the Prefect UI on that flow run and keeps a screenshot under the test's temp dir."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from reference.gen_audio import DOMAINS, generate
from corpus.release import verify_release
from corpus.store import open_store

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.s3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_file(path: Path) -> dict:
    env = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].removeprefix("export ").strip()
        for part in line.split():
            key, _, value = part.partition("=")
            if key and not value.startswith("${"):
                env[key] = value
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for attempt in range(3):  # a free port can be taken by another process before its server binds it
        folder = tmp_path_factory.mktemp("stack")
        ports = {"PREFECT_PORT": _free_port(), "RAY_PORT": _free_port(), "RAY_DASHBOARD_PORT": _free_port(),
                 "S3_PORT": _free_port()}
        env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "NUM_CPUS": "2"}
        env.pop("PREFECT_API_URL", None)
        start = subprocess.run(["bash", str(ROOT / "infra/local.sh"), "start", "--dir", str(folder), "--s3"],
                               env=env, capture_output=True, text=True, timeout=300)
        if start.returncode == 0 or "exited before it answered" not in start.stderr or attempt == 2:
            break
        subprocess.run(["bash", str(ROOT / "infra/local.sh"), "stop", "--dir", str(folder)], env=env,
                       capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        yield {**env, **_env_file(folder / "env"), "_dir": str(folder), **{k: str(v) for k, v in ports.items()}}
    finally:
        raytmp = (folder / "ray.tmpdir").read_text().strip() if (folder / "ray.tmpdir").exists() else None
        subprocess.run(["bash", str(ROOT / "infra/local.sh"), "stop", "--dir", str(folder)], env=env,
                       capture_output=True, text=True, timeout=120)
        if raytmp:  # stop stops this stack's Ray, all of it, and no other Ray on the machine
            left = subprocess.run(["pgrep", "-f", "--", f"{raytmp}/"], capture_output=True, text=True).stdout.split()
            assert not left, f"Ray processes of the stack outlived `local.sh stop`: {left}"


async def _wait_for_deployment(name: str, api: str, seconds: float):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api) as client:
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                return await client.read_deployment_by_name(name)
            except Exception:  # noqa: BLE001 - not registered yet
                await asyncio.sleep(1)
    raise TimeoutError(f"deployment {name} never appeared")


async def _trigger_and_wait(api: str, deployment_id, parameters: dict, seconds: float):
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with PrefectClient(api) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        deadline = time.time() + seconds
        while time.time() < deadline:
            run = await client.read_flow_run(run.id)
            if run.state and run.state.is_final():
                break
            await asyncio.sleep(2)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
        return run, artifacts


@pytest.fixture(scope="module")
def served(stack, tmp_path_factory):
    """Raw audio on the stack's S3, a build config, and `stt-corpus flows serve` running (Ray Jobs API)."""
    env, work = stack, tmp_path_factory.mktemp("served")
    endpoint = env["AWS_ENDPOINT_URL"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="corpus")
    generate(work / "raw", minutes=1.5, seed=4)
    for f in (work / "raw").iterdir():
        s3.upload_file(str(f), "corpus", f"raw/{f.name}")
    config = work / "build.yaml"
    config.write_text(yaml.safe_dump({
        "release": "unused", "store": "s3://corpus/stt", "endpoint_url": endpoint,
        "sources": [{"uri": "s3://corpus/raw", "include": f"{d}-*", "domain": d} for d in DOMAINS],
        # what is tested is Prefect, Ray Jobs and cancellation, not labels: the small English model
        "model": {"name": "tiny.en"}, "resources": {"num_cpus": 2}}))
    log = work / "serve.log"
    serve = subprocess.Popen([sys.executable, "-m", "corpus.cli", "flows", "serve", "--config", str(config),
                              "--ray", "submit", "--ray-address", env["RAY_DASHBOARD_URL"]],
                             env={**env, "PATH": f"{ROOT / '.venv/bin'}:{env['PATH']}"}, stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # a hang guard only: on a loaded machine `flows serve` has taken over 2 minutes to register
        deployment = asyncio.run(_wait_for_deployment("build-corpus/manual", env["PREFECT_API_URL"], 600))
        yield {"env": env, "deployment": deployment, "log": log, "endpoint": endpoint}
    finally:
        serve.terminate()
        serve.wait(timeout=60)


@pytest.mark.timeout(3000)  # the stack, `flows serve` and a whole build; the waits below are hang guards
def test_deployment_run_on_prefect_server_builds_a_verified_release(served, tmp_path):
    env, endpoint = served["env"], served["endpoint"]
    run, artifacts = asyncio.run(_trigger_and_wait(env["PREFECT_API_URL"], served["deployment"].id,
                                                   {"release": "served-v1"}, 1800))
    assert run.state.is_completed(), (run.state, served["log"].read_text()[-4000:])
    store = open_store("s3://corpus/stt", endpoint_url=endpoint)
    assert verify_release(store, "served-v1") == []
    assert store.exists("work/jobs/served-v1.yaml"), "the build went through the Ray Jobs API"
    assert "[ray job]" in served["log"].read_text(), "the Ray job's logs were streamed into the Prefect run"
    by_key = {a.key: a for a in artifacts}
    from flows.artifacts import release_datasheet

    # the release's own datasheet, published as it is (its plots linked where the store keeps them)
    assert by_key["release-served-v1"].data == release_datasheet(store, "served-v1")
    assert "Hours per domain and split" in by_key["release-served-v1"].data
    assert "s3://corpus/stt/releases/served-v1/RELEASE.json" in by_key["release-served-v1-link"].data

    page = f"http://127.0.0.1:{env['PREFECT_PORT']}/runs/flow-run/{run.id}"
    shot = _screenshot(page, tmp_path)
    assert shot.stat().st_size > 20_000, "a rendered page, not a blank one"
    dom = _dump_dom(page, tmp_path)
    assert "build-corpus" in dom and run.name in dom and "Completed" in dom


# no wall-clock limit tighter than the job's own progress: on a machine busy with other work the
# job has taken 7 minutes to start; what is asserted does not depend on how long anything took
@pytest.mark.timeout(3000)
def test_cancelling_the_flow_run_stops_the_ray_job(served, tmp_path):
    """Cancelled while provably mid-labelling, the Ray job ends STOPPED; whatever the timing, no
    partial release is ever visible (none at all, or a complete one that verifies).

    Deterministic by construction: the run gets its own store (no work parts cached by the other
    test) and 12 minutes of fresh audio; the cancel is sent only once the first label work part is
    written and while fewer parts exist than recordings, so labelling is still going on and takes
    far longer than the cancel takes to arrive (more so on a loaded machine, which slows labelling,
    not the cancel)."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    from flows.ray_runner import submission_id

    env, endpoint = served["env"], served["endpoint"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    raw = tmp_path / "raw-cancel"
    generate(raw, minutes=12, seed=11)
    audio = sorted(f for f in raw.iterdir() if f.name != "truth.jsonl")
    for f in audio:
        s3.upload_file(str(f), "corpus", f"raw-cancel/{f.name}")  # the same bytes again when repeated
    fresh = f"stt-cancel-{uuid.uuid4().hex[:8]}"  # a store of its own, even when the test is repeated
    store = open_store(f"s3://corpus/{fresh}", endpoint_url=endpoint)
    parameters = {"release": "cancelled-v1", "store": f"s3://corpus/{fresh}",
                  "sources": [{"uri": "s3://corpus/raw-cancel", "include": f"{d}-*", "domain": d} for d in DOMAINS]}

    def job_status(job: str) -> str | None:
        """The Ray job's status, asked with the stack's environment (token auth on)."""
        code = ("import sys\nfrom flows.ray_runner import jobs_client\n"
                "try:\n    print(jobs_client(sys.argv[1]).get_job_status(sys.argv[2]).value)\n"
                "except RuntimeError:\n    print('NONE')")
        out = subprocess.run([sys.executable, "-c", code, env["RAY_DASHBOARD_URL"], job], env=env,
                             capture_output=True, text=True, timeout=60).stdout.strip().splitlines()
        return None if not out or out[-1] == "NONE" else out[-1]

    def label_parts() -> int:
        return sum(1 for key in store.list("work/labels") if key.endswith(".parquet"))

    async def run_then_cancel():
        async with PrefectClient(env["PREFECT_API_URL"]) as client:
            run = await client.create_flow_run_from_deployment(served["deployment"].id, parameters=parameters)
            # a generous bound, only so that a job that never starts cannot hang the suite
            job, deadline = submission_id(run.id), time.time() + 2400
            while time.time() < deadline and not (job_status(job) == "RUNNING" and label_parts() >= 1):
                run = await client.read_flow_run(run.id)
                assert not run.state.is_final(), (run.state, _serve_log(served))
                await asyncio.sleep(0.5)
            parts_at_cancel = label_parts()
            assert job_status(job) == "RUNNING" and 1 <= parts_at_cancel < len(audio), \
                (job_status(job), parts_at_cancel, run.state, _serve_log(served))
            await client.set_flow_run_state(run.id, Cancelling(), force=True)
            deadline = time.time() + 600
            while time.time() < deadline:
                run = await client.read_flow_run(run.id)
                if run.state.type == StateType.CANCELLED and job_status(job) in ("STOPPED", "SUCCEEDED", "FAILED"):
                    break
                await asyncio.sleep(1)
            return run, job

    run, job = asyncio.run(run_then_cancel())
    assert run.state.type.value == "CANCELLED"
    assert job_status(job) == "STOPPED"
    # Whatever the timing: never a partial release.
    if store.exists("releases/cancelled-v1/RELEASE.json"):
        assert verify_release(store, "cancelled-v1") == []


def _serve_log(served: dict) -> str:
    """The end of `flows serve`'s log without the runner's polling requests."""
    lines = served["log"].read_text().splitlines()
    return "\n".join(line for line in lines if "httpx: HTTP Request" not in line)[-6000:]


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    chromium = shutil.which("chromium") or pytest.fail("chromium is not installed (infra/install-system-deps.sh)")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000",
            "--virtual-time-budget=20000"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


def _screenshot(url: str, tmp_path: Path) -> Path:
    out = tmp_path / "prefect-ui-flow-run.png"
    done = _chromium([f"--screenshot={out}", url], tmp_path)
    assert out.exists(), done.stderr[-2000:]
    return out


def _dump_dom(url: str, tmp_path: Path) -> str:
    return _chromium(["--dump-dom", url], tmp_path).stdout
