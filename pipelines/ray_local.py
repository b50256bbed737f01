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


def listening_addresses(pids) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every TCP socket in LISTEN state owned by ``pids``."""
    import psutil

    pids = set(pids)
    out = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            out.append((conn.pid, conn.laddr.ip, conn.laddr.port))
    return sorted(out)
