"""Starting a local Ray node on a busy machine: a start that misses Ray's fixed 30 s window is
tried again, and the processes the failed attempt left are killed first."""
from __future__ import annotations

import subprocess

import psutil
import pytest

from pipelines.ray_local import STARTUP_TIMEOUT, init_local


class _SlowStartRay:
    """Stands in for the ``ray`` module's init/shutdown: the first start leaves a process behind
    and times out, as a real node does when its raylet registers too late."""

    def __init__(self, failures: int, message: str = f"The current node {STARTUP_TIMEOUT}."):
        self.failures, self.message = failures, message
        self.calls, self.leftovers, self.shutdowns = [], [], 0

    def init(self, **kwargs):
        self.calls.append(kwargs)
        if len(self.calls) <= self.failures:
            self.leftovers.append(subprocess.Popen(["sleep", "120"]))
            raise Exception(self.message)

    def shutdown(self):
        self.shutdowns += 1


def test_a_start_that_times_out_is_tried_again_and_its_processes_are_killed():
    fake = _SlowStartRay(failures=2)
    init_local(fake, attempts=3, num_cpus=1)
    assert len(fake.calls) == 3 and all(c == {"address": "local", "num_cpus": 1} for c in fake.calls)
    assert len(fake.leftovers) == 2
    for proc in fake.leftovers:  # killed and reaped by init_local, not left running (sleep 120)
        assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


def test_other_errors_and_the_last_timeout_are_raised():
    with pytest.raises(Exception, match="port in use"):
        init_local(_SlowStartRay(failures=1, message="port in use"), attempts=3)
    fake = _SlowStartRay(failures=5)
    with pytest.raises(Exception, match=STARTUP_TIMEOUT):
        init_local(fake, attempts=2)
    assert len(fake.calls) == 2
    for proc in fake.leftovers:
        proc.kill()
        proc.wait()
