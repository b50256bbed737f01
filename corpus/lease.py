"""A writer's lease on a name (one release): at most one live writer, dead ones detected.

Leases are numbered objects ``<store>/work/leases/<name>/lease-NNNNNNNN.json``, each created with
a conditional write (S3 ``If-None-Match: *``, a hard link locally), so of two writers taking the
same number exactly one succeeds. A writer may take number n+1 only when lease n is released,
expired (its holder stopped renewing it) or held by a process on this host that no longer
exists (a SIGKILLed build is rerun at once, not after the expiry). No lease object is ever
deleted to take over, so no "delete, then create" race exists.

The holder renews its lease on a background thread (every ``ttl / 5`` seconds). Before it
deletes anything or commits, it checks that no later lease exists (:meth:`Lease.check`): a
writer that stalled past its expiry finds it has been replaced and stops.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from corpus.store import ObjectNotFound, Store

log = logging.getLogger(__name__)

LEASES = "work/leases"
DEFAULT_TTL = 300.0


class LeaseHeld(RuntimeError):
    """Another live writer holds the lease; the message says who and until when."""


class LeaseLost(RuntimeError):
    """This writer's lease was taken over (it stalled past its expiry); it must stop writing."""


def _process_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks
    except (OSError, IndexError):
        return None


def _holder_gone(info: dict) -> bool:
    """True when the lease's holder ran on this host and that process no longer exists."""
    if info.get("host") != socket.gethostname() or not info.get("pid"):
        return False
    return _process_start(int(info["pid"])) != info.get("pid_start")


def _describe(info: dict) -> str:
    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("expires", 0)))
    return (f"writer {info.get('owner', '?')[:8]} (pid {info.get('pid')} on {info.get('host')}, "
            f"since {info.get('acquired_at', '?')}; lease expires {expires} unless renewed)")


class Lease:
    def __init__(self, store: Store, name: str, number: int, info: dict, ttl: float, replaced: dict | None):
        self.store, self.name, self.number, self.info, self.ttl = store, name, number, info, ttl
        self.replaced = replaced  # the stale lease taken over (None: there was none)
        self.key = f"{LEASES}/{name}/lease-{number:08d}.json"
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{name}", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, store: Store, name: str, *, what: str = "write", ttl: float = DEFAULT_TTL) -> "Lease":
        prefix = f"{LEASES}/{name}"
        for _ in range(8):
            keys = [k for k in store.list(prefix) if k.rsplit("/", 1)[-1].startswith("lease-")]
            number, stale = 1, None
            if keys:
                latest = keys[-1]
                try:
                    info = json.loads(store.get_bytes(latest))
                except (ObjectNotFound, ValueError):
                    time.sleep(0.05)  # released (deleted) or being replaced between list and get: look again
                    continue
                number = int(latest.rsplit("-", 1)[-1].removesuffix(".json")) + 1
                if not info.get("released"):
                    if info.get("expires", 0) > time.time() and not _holder_gone(info):
                        raise LeaseHeld(f"cannot {what} {name!r}: it is being written by {_describe(info)}")
                    stale = info
            mine = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                    "pid_start": _process_start(os.getpid()), "what": what,
                    "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "expires": time.time() + ttl}
            if store.put_bytes_if_absent(f"{prefix}/lease-{number:08d}.json", json.dumps(mine).encode()):
                if stale is not None:
                    log.warning("taking over %r from a writer that is gone: %s", name, _describe(stale))
                return cls(store, name, number, mine, ttl, stale)
        raise LeaseHeld(f"cannot {what} {name!r}: another writer keeps taking its lease")

    def _later_exists(self) -> bool:
        prefix = f"{LEASES}/{self.name}"
        return any(k > self.key for k in self.store.list(prefix) if k.rsplit("/", 1)[-1].startswith("lease-"))

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this lease is still the latest and unexpired."""
        if self.lost or self._later_exists() or self.info["expires"] < time.time():
            self.lost = True
            raise LeaseLost(f"the lease on {self.name!r} was taken over by another writer (this one stalled past "
                            "its expiry); stopping without writing more")

    def renew(self) -> None:
        if self._later_exists():
            self.lost = True
            return
        info = {**self.info, "expires": time.time() + self.ttl}
        self.store.put_bytes(self.key, json.dumps(info).encode())
        self.info = info

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 5):
            try:
                self.renew()
            except Exception as err:  # noqa: BLE001 - a failed renewal is retried; check() decides
                log.warning("renewing the lease on %r failed (retried): %s", self.name, err)

    def release(self) -> None:
        """Stop renewing and remove this lease and the older ones (never a later one)."""
        if self._stop.is_set():
            return  # released already: a second release must not delete a successor's lease
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        if self.lost:
            return
        prefix = f"{LEASES}/{self.name}"
        for key in self.store.list(prefix):
            if key <= self.key:
                self.store.delete(key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False
