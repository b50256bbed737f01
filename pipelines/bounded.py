"""Run one file's reading work in a child process with a wall-clock bound.

A bad file must not stall or kill a build: a read that blocks (a stalled mount, a network
read past its timeouts), a decoder that loops, or one that crashes the process (a segfault in
a codec, the kernel's OOM killer) would take the whole Ray worker with it. The work runs in a
child forked from a per-worker fork server (never a fork of the multi-threaded Ray worker
itself); if no result arrives in time the child is killed and :class:`WorkTimeout` raised; if
the child dies, :class:`WorkCrashed`. Ray Data runs tasks off the main thread, where
``signal.alarm`` cannot be used, hence a process.
"""
from __future__ import annotations

import multiprocessing
import pickle
import sys
import types

_CONTEXT = None
# pandas: pyarrow imports it on the first pa.array() of Python objects (writing a clips part)
PRELOAD = ["numpy", "pandas", "av", "soundfile", "pyarrow.parquet", "corpus.audio", "pipelines.ingest", "pipelines.fingerprint",
           "pipelines.recording", "pipelines.vad", "pipelines.segment", "botocore.exceptions", "faster_whisper.vad",
           "pipelines.reader_warm"]


class WorkTimeout(RuntimeError):
    """The work did not finish within its bound and was stopped."""


class WorkCrashed(RuntimeError):
    """The process doing the work died (signal or exit) before returning a result."""


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CONTEXT = ctx
    return _CONTEXT


def _child(conn, fn, args) -> None:
    try:
        result = (True, fn(*args))
    except BaseException as err:  # noqa: BLE001 - handed to the parent, which raises it
        try:
            pickle.dumps(err)
            result = (False, err)
        except Exception:  # noqa: BLE001 - an exception that cannot cross processes
            result = (False, RuntimeError(f"{type(err).__name__}: {err}"))
    conn.send(result)
    conn.close()


def call_bounded(fn, *args, timeout: float, what: str):
    """``fn(*args)`` in a child process; its result, or its exception re-raised here."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    # the child must not re-import the parent's main script (in a Ray worker that is Ray's own
    # worker entry point): multiprocessing reads sys.modules["__main__"] while starting it
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        proc.start()
    finally:
        sys.modules["__main__"] = main
    child.close()
    try:
        if not parent.poll(timeout):
            raise WorkTimeout(f"{what}: no result within {timeout:g} s; stopped")
        try:
            ok, value = parent.recv()
        except EOFError:
            proc.join(10)
            raise WorkCrashed(f"{what}: the reading process died (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        parent.close()
    if not ok:
        raise value
    return value
