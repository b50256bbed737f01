"""Shared pieces of the reliability suite: fake credentials anyone can grep for, a loopback-only
local Ray cluster per module, a Ray head with the Jobs API started as a separate process, and
small builds."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# recognisable fake credentials: moto accepts any; no test output may ever contain them
FAKE_KEY_ID = "AKIAFAKEKEYID7QX2RELIAB"
FAKE_SECRET = "fakeSecretKey+Reliability/9f3c2e1d0b8a7z6y5x4w"
FAKE_TOKEN = "FAKESESSIONTOKEN-rel13-7c1e5a9b3d2f4e6a8c0b1d3f5e7a9c1e"
SECRETS = (FAKE_KEY_ID, FAKE_SECRET, FAKE_TOKEN)


@pytest.fixture
def fake_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", FAKE_TOKEN)
    return SECRETS


def leaked(text: str | bytes) -> list[str]:
    """Which of the fake credentials occur in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in SECRETS if s in text]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster per module, new (never someone else's) and bound to 127.0.0.1."""
    import ray

    from pipelines.ray_local import init_local, loopback_only

    if ray.is_initialized():
        ray.shutdown()
    with loopback_only():
        init_local(ray, num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
        yield ray
        ray.shutdown()


class RayHead:
    """``ray start --head --block`` in its own session (Jobs API on 127.0.0.1), stopped by its pid."""

    def __init__(self, folder: Path, env: dict):
        self.port, self.dashboard_port = free_port(), free_port()
        self.folder = folder
        # Ray's unix socket paths must fit in 107 bytes: a short temp dir, removed in stop()
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))
        self.log = open(folder / "ray-head.log", "wb")
        ray_bin = Path(sys.executable).with_name("ray")
        self.proc = subprocess.Popen(
            [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
             "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
             "--dashboard-port", str(self.dashboard_port), "--num-cpus", "2", "--disable-usage-stats",
             # every port free, not Ray's fixed defaults (another cluster on this machine may hold them)
             "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
             "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
             "--ray-client-server-port", str(free_port()),
             "--temp-dir", str(self.temp_dir)],
            env={**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # jobs find `stt-corpus` on PATH
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"},
            stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.url = f"http://127.0.0.1:{self.dashboard_port}"

    def wait(self, seconds: float = 120) -> None:
        import urllib.request

        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited: {(self.folder / 'ray-head.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/api/version", timeout=2).read()
                break
            except OSError:
                time.sleep(1)
        else:
            raise TimeoutError(f"ray dashboard did not answer at {self.url}")
        # the dashboard answers before its job agent can take jobs: submit a no-op until one is taken
        from ray.job_submission import JobSubmissionClient

        while True:
            try:
                JobSubmissionClient(self.url).submit_job(entrypoint="true")
                return
            except RuntimeError:
                if time.time() > deadline:
                    raise
                time.sleep(1)

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def all_logs(self) -> str:
        """Every file Ray wrote for this cluster (session logs, job logs)."""
        out = []
        for path in self.temp_dir.rglob("*"):
            if path.is_file() and path.suffix in (".log", ".out", ".err", ".txt", ".json", ""):
                try:
                    out.append(path.read_text(errors="replace"))
                except OSError:
                    pass
        return "\n".join(out)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rayhead")
    # the cluster's own environment carries the credentials jobs use (here: moto's fake ones)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
           "AWS_SESSION_TOKEN": FAKE_TOKEN, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    head = RayHead(folder, env)
    try:
        head.wait()
        yield head
    finally:
        head.stop()
