"""A local Ray cluster that listens on 127.0.0.1 only.

``ray.init(_node_ip_address="127.0.0.1")`` is not enough: Ray turns a loopback node address
into the machine's routable one (``resolve_ip_for_localhost``) and its gRPC servers (GCS,
raylet, workers) then listen on every interface. Ray keeps loopback only where
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (meant for laptops: single-node, loopback). It is read
from the environment by the processes Ray starts, and once, at import, into
``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` in this one, so both are set.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def loopback_only():
    """Within this block, a local ``ray.init()`` (and the processes it starts) binds to 127.0.0.1 only.

    Both settings are restored on exit, so nothing started later by this process (a worker node
    of a real cluster, a subprocess) inherits single-machine mode. Keep the Ray session inside
    the block: the driver's copy of the flag is read again while it runs."""
    previous_env = os.environ.get(LOOPBACK_ENV)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is None:
        import ray._private.ray_constants as constants  # read at import: set it after
    previous_flag = constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = previous_flag
        if previous_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = previous_env


STARTUP_TIMEOUT = "timed out during startup"  # Ray gives a new node a fixed 30 s to register


def init_local(ray, attempts: int = 3, **kwargs) -> None:
    """``ray.init(address="local", **kwargs)``, tried again when the new node misses Ray's fixed
    30 s startup window (a machine busy with other work). The processes a failed attempt started
    (GCS, raylet, agents) are killed before the next, so nothing is left behind."""
    import logging

    import psutil

    me = psutil.Process()
    for attempt in range(1, attempts + 1):
        before = {p.pid for p in me.children(recursive=True)}
        try:
            ray.init(address="local", **kwargs)
            return
        except Exception as err:  # Ray raises a bare Exception for this
            if STARTUP_TIMEOUT not in str(err) or attempt == attempts:
                raise
            started = [p for p in me.children(recursive=True) if p.pid not in before]
            logging.getLogger(__name__).warning(
                "the local Ray node did not start within Ray's 30 s (attempt %d of %d; a busy machine?): "
                "stopping its %d processes and starting again", attempt, attempts, len(started))
            ray.shutdown()
            for proc in started:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(started, timeout=30)


def listening_addresses(pids) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every TCP socket in LISTEN state owned by ``pids``."""
    import psutil

    pids = set(pids)
    out = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            out.append((conn.pid, conn.laddr.ip, conn.laddr.port))
    return sorted(out)
