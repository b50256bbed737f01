"""Ranks: the process group of a multi-process run, and the launcher behind ``train --nproc N``.

A run is distributed when ``WORLD_SIZE`` > 1 is in the environment, as ``torchrun`` and
:func:`launch` set it (with ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). The
backend is NCCL when the run trains on CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on CPU.

:func:`launch` starts N copies of ``python -m training.cli train ...`` on this machine with a
rendezvous on 127.0.0.1, waits for them, and when one rank fails stops the others at once (a
rank blocked in a collective on a dead peer would otherwise wait out the process group's
timeout). Its exit code is the first failing rank's, else 0.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

log = logging.getLogger(__name__)


@dataclass
class Dist:
    """This process's place in the run: rank, world size, local rank; collectives as no-ops for one rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """The element-wise sum of ``values`` over all ranks (float64, on the CPU for gloo)."""
        if not self.enabled:
            return list(values)
        import torch
        import torch.distributed as dist

        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def from_env() -> Dist:
    """The ranks as the environment describes them (one rank when WORLD_SIZE is unset or 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return Dist(rank=rank, world_size=world, local_rank=local, local_world_size=local_world)


def init(dist_info: Dist, *, cuda: bool, timeout_s: float) -> None:
    """Join the process group (once per process); NCCL on CUDA, gloo on CPU."""
    if not dist_info.enabled:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if cuda:
        torch.cuda.set_device(dist_info.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://", rank=dist_info.rank,
                            world_size=dist_info.world_size, timeout=timedelta(seconds=timeout_s))
    log.info("rank %d of %d joined the process group (%s)", dist_info.rank, dist_info.world_size,
             dist.get_backend())


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], nproc: int, *, grace_s: float = 10.0) -> int:
    """Run ``python -m training.cli`` with ``argv`` as ``nproc`` ranks on this machine; see the module doc."""
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc)}
    base.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the rendezvous and gloo's pairs stay on loopback
    procs = [subprocess.Popen([sys.executable, "-m", "training.cli", *argv], preexec_fn=_die_with_parent,
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    stop = {"signal": None}

    def forward(signum, _frame):
        stop["signal"] = signum
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(p.poll() is None for p in procs):
            failed = [r for r, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed:
                log.error("rank %d %s: stopping the other ranks", failed[0], _outcome(procs[failed[0]].returncode))
                break
            time.sleep(0.1)
    finally:
        _stop(procs, grace_s)
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode]
    if not failed:
        return 0
    log.error("the run failed: %s", ", ".join(f"rank {r} {_outcome(c)}" for r, c in failed))
    # a rank killed by a signal is the likelier cause (its peers then fail on the lost connection)
    rank, code = next(((r, c) for r, c in failed if c < 0), failed[0])
    return 128 - code if code < 0 else code


def _outcome(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"


def _die_with_parent() -> None:
    """In a rank, before exec: the kernel sends it SIGKILL when the launcher dies (Linux), so no rank outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
