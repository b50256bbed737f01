"""A real multi-node Ray cluster on this machine: one head and worker nodes, each its own raylet.

Each node is a ``ray start --block`` process in its own session, with its own ``--temp-dir`` and
every port chosen free on 127.0.0.1 (GCS, node manager, object manager, agents, metrics, worker
ports), so it never collides with another Ray on the same host. Nodes are stopped by their
process ids only (SIGTERM to the ``ray start`` process, which stops what it started, then SIGKILL
to any descendant left): never ``ray stop``, which would stop every Ray of the user on the machine.

``kill(node)`` sends SIGKILL to a node's raylet and all its workers at once: a node lost as when
a spot instance disappears.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


# `ray start` with the node's address kept at 127.0.0.1 and a patient raylet registration
RAY_START = [sys.executable, str(Path(__file__).with_name("ray_start.py")), "start"]

_WAIT_FOR_NODES = """
import sys, time
from ray._raylet import GcsClient
address, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline, last = time.time() + timeout, None
while time.time() < deadline:
    try:
        infos = GcsClient(address=address).get_all_node_info(timeout=5)
        last = sum(i.state == 0 for i in infos.values())  # 0: ALIVE
        if last >= count:
            sys.exit(0)
    except Exception as err:  # the GCS is not up yet
        last = err
    time.sleep(0.5)
print(f"last: {last}")
sys.exit(1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (children, theirs, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.time() + timeout
    left = pids
    while left and time.time() < deadline:
        left = [p for p in left if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        if left:
            time.sleep(0.1)
    return left


def _raylet_died(node) -> bool:
    """The node's raylet exited (a zombie under ``ray start``, which may still wait for it)."""
    for pid in node.descendants():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet" and _state(pid) == "Z":
                return True
        except OSError:
            continue
    return False


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2:].split()[0]
    except OSError:
        return "Z"


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    temp_dir: Path
    resources: dict
    log: Path
    killed: bool = False

    def descendants(self) -> list[int]:
        return descendants(self.proc.pid)


@dataclass
class LocalRayCluster:
    """Start with ``start_head``; ``add_node`` for workers; ``stop`` always (a context manager)."""

    nodes: list[Node] = field(default_factory=list)
    address: str | None = None
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp")))

    def __post_init__(self):
        # token auth with this cluster's own token: nothing else on the machine can join or drive it
        token = self.root / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        # cluster mode on for the nodes, whatever the environment says: a worker node started with
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 refuses to join ("Multi-node Ray clusters are not supported")
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
        self.env.pop("RAY_AUTH_TOKEN", None)
        self.env.pop("RAY_ADDRESS", None)

    def driver_env(self) -> dict:
        """Environment for a driver process of this cluster (``stt-corpus build``, a script)."""
        # a driver that is not a node may resolve addresses as on a one-machine cluster: 127.0.0.1
        return {**self.env, "RAY_ADDRESS": self.address, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _start(self, name: str, num_cpus: int, resources: dict, head: bool) -> Node:
        temp_dir = self.root / name  # short: Ray's unix socket paths must stay under 107 bytes
        temp_dir.mkdir(parents=True)
        args = [*RAY_START, "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
                f"--num-cpus={num_cpus}", "--num-gpus=0", f"--resources={json.dumps(resources)}",
                f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                "--min-worker-port=0", "--max-worker-port=0", "--object-store-memory=150000000",
                "--disable-usage-stats", "--log-style=record", "--log-color=false",
                "--include-log-monitor=false"]  # one Python process less per node; worker logs stay on disk
        if head:
            port = free_port()
            args += ["--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
                     f"--ray-client-server-port={free_port()}"]
            self.address = f"127.0.0.1:{port}"
        else:
            args += [f"--address={self.address}"]
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        node = Node(name.rstrip("0123456789") or name, proc, temp_dir, resources, log)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: int = 0, resources: dict | None = None) -> Node:
        return self._start_and_wait("head", num_cpus, resources or {}, head=True)

    def add_node(self, name: str, num_cpus: int, resources: dict | None = None) -> Node:
        return self._start_and_wait(name, num_cpus, resources or {}, head=False)

    def _start_and_wait(self, name: str, num_cpus: int, resources: dict, head: bool, attempts: int = 3) -> Node:
        # ray_start.py waits 3 minutes for the raylet to register; a node that still gives up
        # (a very loaded machine) is started once more
        for attempt in range(attempts):
            taken = {n.temp_dir.name for n in self.nodes}
            node = self._start(next(f"{name}{i or ''}" for i in range(len(taken) + 1) if f"{name}{i or ''}" not in taken),
                               num_cpus, resources, head)
            try:
                self.wait_for_nodes(len(self.alive()))
                return node
            except RuntimeError:
                node.killed = True
                self._reap(node)
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if not n.killed]

    def wait_for_nodes(self, count: int, timeout: float = 200) -> None:
        """Until ``count`` nodes are alive in the GCS (asked by a client process with the token)."""
        proc = subprocess.Popen([sys.executable, "-c", _WAIT_FOR_NODES, self.address, str(count), str(timeout)],
                                env=self.driver_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + timeout + 30
        while proc.poll() is None:
            for node in self.nodes:
                if node.killed:
                    continue
                if node.proc.poll() is not None or _raylet_died(node):
                    proc.kill()
                    proc.wait()
                    raise RuntimeError(f"ray node {node.name} failed: {node.log.read_text()[-3000:]}")
            if time.time() > deadline:
                proc.kill()
            time.sleep(0.2)
        if proc.returncode != 0:
            raise TimeoutError(f"{count} ray nodes not alive after {timeout} s: {proc.stdout.read()[-3000:]}")

    def logs(self, node: Node) -> str:
        """Everything the node's workers wrote (``worker-*.out`` name each task and actor they ran)."""
        return "".join(p.read_text(errors="replace") for p in node.temp_dir.glob("session_*/logs/worker-*.out"))

    def kill(self, node: Node) -> None:
        """SIGKILL the node's raylet, workers and agents at once (its ``ray start`` process too)."""
        procs = node.descendants()
        _signal_all([node.proc.pid, *procs], signal.SIGKILL)
        node.proc.wait(timeout=30)
        _wait_gone(procs, 30)
        node.killed = True

    def stop(self) -> None:
        """Stop every node this object started (workers first, head last), by process id only."""
        for node in reversed(self.nodes):
            if not node.killed:
                node.killed = True
                self._reap(node)
        if not os.environ.get("KEEP_RAY_LOGS"):
            shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _reap(node: Node) -> None:
        """SIGTERM the node's ``ray start`` (it stops what it started), then SIGKILL what is left."""
        procs = node.descendants()
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)
        _signal_all(_wait_gone(procs, 10), signal.SIGKILL)
