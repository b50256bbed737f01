"""The one runner: maps stages (:mod:`pipelines.stages`) over recordings; the only code that imports
Ray and the only code that knows the ``work/`` layout.

- :func:`ray_session`: ``ray.init()`` a new local cluster (loopback only) or join ``ray_address``.
- :class:`RayExecutor`: a ``workers`` stage as a Ray Data ``map`` (tasks, or an actor pool for
  ``actors=True``) with the stage's CPUs, GPUs and custom resources (node placement); a streamed
  stage as Ray tasks, a window in flight, each result within a wall-clock bound.
- :class:`LocalExecutor`: the same stages in this process, one after another (a re-filter: no
  model, little work; no cluster to start).
- :class:`Runner`: for each stage, the recordings it has work for; those whose work part exists
  are read back (``decode``), the rest run on the executor and their parts are written
  atomically (the part is the completion marker); recordings travel between driver and workers
  as pickled records in one binary column.

Work layout (one store, beside the releases): ``work/<stage.work>/<part>.parquet``; e.g.
``work/ingest/<file_key>.parquet``, ``work/clips/<segment_key>/<recording_id>.parquet``,
``work/labels/<label_key>/<recording_id>.parquet``.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from corpus.schema import Recording
from corpus.store import Store
from pipelines.stages import Resources, Stage

log = logging.getLogger(__name__)

WORK = "work"


# --------------------------------------------------------------------------- work parts


def work_prefix(relative: str) -> str:
    """The store prefix of a stage's work folder (``relative``: e.g. ``labels/<label_key>``)."""
    return f"{WORK}/{relative}"


def part_bytes(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="zstd")
    return buf.getvalue()


def part_rows(data: bytes) -> list[dict]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


def read_part(store: Store, key: str) -> list[dict]:
    return part_rows(store.get_bytes(key))


def done_parts(store: Store, prefix: str) -> set[str]:
    return {k.rsplit("/", 1)[-1].removesuffix(".parquet") for k in store.list(prefix) if k.endswith(".parquet")}


# --------------------------------------------------------------------------- Ray


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, resources: dict | None = None):
    """``ray.init()`` a local cluster (or join ``address``); SIGTERM shuts it down cleanly.

    A local cluster is a new one (never a cluster someone else started on this machine) and listens
    on 127.0.0.1 only (see :func:`pipelines.ray_local.loopback_only`)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine unless asked
    address = address or os.environ.get("RAY_ADDRESS")
    with ExitStack() as scope:
        if not address:
            from pipelines.ray_local import loopback_only

            scope.enter_context(loopback_only())
        import ray

        started = not ray.is_initialized()
        if started and address:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        elif started:
            from pipelines.ray_local import init_local

            init_local(ray, num_cpus=num_cpus, _node_ip_address="127.0.0.1", resources=resources or None,
                       include_dashboard=False, logging_level=logging.WARNING)
        for name in ("ray.data", "ray.data._internal"):
            logging.getLogger(name).setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
        previous = signal.getsignal(signal.SIGTERM)

        def _terminate(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _terminate)
        try:
            yield ray
        finally:
            signal.signal(signal.SIGTERM, previous)
            if started:
                ray.shutdown()


# a worker process's stages, set up once: keyed by the pickled stage
_SET_UP: dict[bytes, Stage] = {}


def _stage_in_worker(stage_bytes: bytes) -> Stage:
    stage = _SET_UP.get(stage_bytes)
    if stage is None:
        stage = pickle.loads(stage_bytes)
        stage.setup()
        _SET_UP[stage_bytes] = stage
    return stage


def _process_one(stage: Stage, item: bytes) -> bytes:
    (out,) = stage.process([pickle.loads(item)])
    out.audio = None  # a span reader stays where it was opened
    return pickle.dumps(out)


def _apply_in_task(row: dict, *, stage_bytes: bytes) -> dict:
    return {"i": row["i"], "item": _process_one(_stage_in_worker(stage_bytes), row["item"])}


class _ApplyInActor:
    """A Ray Data actor: one stage set up once (e.g. a model loaded), then batch after batch."""

    def __init__(self, stage_bytes: bytes):
        self.stage = _stage_in_worker(stage_bytes)

    def __call__(self, row: dict) -> dict:
        return {"i": row["i"], "item": _process_one(self.stage, row["item"])}


def _apply_remote(stage_bytes: bytes, item: bytes) -> bytes:
    return _process_one(_stage_in_worker(stage_bytes), item)


def _named(fn, name: str):
    """``fn`` under the stage's name, so Ray's task names, process titles and logs say which stage ran."""
    def run(*args, **kwargs):
        return fn(*args, **kwargs)

    run.__name__ = run.__qualname__ = name
    return run


def _stage_bytes(stage: Stage) -> bytes:
    from ray import cloudpickle  # a stage class defined outside an importable module travels by value

    return cloudpickle.dumps(stage)


class RayExecutor:
    def __init__(self, ray):
        self.ray = ray

    @staticmethod
    def _placement(res: Resources) -> dict:
        return {"resources": dict(res.custom)} if res.custom else {}

    def map(self, stage: Stage, items: list[Recording]) -> Iterator[tuple[int, Recording]]:
        """(index, output) for each item, in the order they finish."""
        ray = self.ray
        res = stage.resources()
        stage_bytes = _stage_bytes(stage)
        name = type(stage).__name__
        rows = [{"i": i, "item": pickle.dumps(item)} for i, item in enumerate(items)]
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), res.blocks))
        options = dict(num_cpus=res.cpus, **self._placement(res))
        if res.gpus:
            options["num_gpus"] = res.gpus
        if res.actors:
            actor = type(name, (_ApplyInActor,), {"__module__": __name__})
            ds = ds.map(actor, fn_constructor_kwargs={"stage_bytes": stage_bytes},
                        compute=ray.data.ActorPoolStrategy(size=res.workers), **options)
        else:
            ds = ds.map(_named(_apply_in_task, name), fn_kwargs={"stage_bytes": stage_bytes},
                        compute=ray.data.TaskPoolStrategy(size=res.workers), **options)
        for row in ds.iter_rows():
            yield row["i"], pickle.loads(row["item"])

    def stream(self, stage: Stage, items: list[Recording], *, timeout: float) -> Iterator[Recording]:
        """Outputs in the items' order, a window of them in flight (twice the cluster's CPUs), each
        within ``timeout`` seconds, else its task is cancelled and a TimeoutError raised."""
        from ray.exceptions import GetTimeoutError

        ray = self.ray
        res = stage.resources()
        remote = ray.remote(num_cpus=res.cpus, num_gpus=res.gpus,
                            **self._placement(res))(_named(_apply_remote, type(stage).__name__))
        stage_ref = ray.put(_stage_bytes(stage))
        window = max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
        pending: dict[int, object] = {}

        def submit(i: int) -> None:
            if i < len(items):
                pending[i] = remote.remote(stage_ref, pickle.dumps(items[i]))

        for i in range(min(window, len(items))):
            submit(i)
        for i, item in enumerate(items):
            ref = pending.pop(i)
            try:
                out = pickle.loads(ray.get(ref, timeout=timeout))
            except GetTimeoutError:
                ray.cancel(ref, force=True)
                raise TimeoutError(f"{stage.name} of recording {item.recording_id}: no result within {timeout:g} s;"
                                   " nothing committed, rerun to resume") from None
            submit(i + window)
            yield out


class LocalExecutor:
    """The stages in this process, in order (set up once each)."""

    def __init__(self):
        self._set_up: dict[int, Stage] = {}

    def _ready(self, stage: Stage) -> Stage:
        if id(stage) not in self._set_up:
            stage.setup()
            self._set_up[id(stage)] = stage
        return stage

    def map(self, stage: Stage, items: list[Recording]) -> Iterator[tuple[int, Recording]]:
        for i, item in enumerate(items):
            (out,) = self._ready(stage).process([item])
            yield i, out

    def stream(self, stage: Stage, items: list[Recording], *, timeout: float) -> Iterator[Recording]:
        for _, out in self.map(stage, items):
            yield out


# --------------------------------------------------------------------------- the runner


def _travelling(rec: Recording) -> Recording:
    """What of a recording goes to a worker: all but its fingerprint (tens of KB to MB for hours of
    audio), which only the driver's near-duplicate stage reads."""
    return replace(rec, fingerprint=None, audio=None) if rec.fingerprint is not None or rec.audio is not None else rec


def _home(out: Recording, sent: Recording) -> Recording:
    return out if out.fingerprint is not None or sent.fingerprint is None else replace(out, fingerprint=sent.fingerprint)


class Runner:
    """Runs stages over recordings on an executor, keeping and reusing the stages' work parts."""

    def __init__(self, executor, store: Store, *, progress: bool = False):
        self.executor = executor
        self.store = store
        self.progress = progress
        self.ran: dict[str, int] = {}        # stage name → recordings processed now (not reused)
        self.ran_weight: dict[str, float] = {}
        self.made_now: dict[str, list[int]] = {}  # stage name → positions of the recordings processed now

    def run(self, stages: list[Stage], items: list[Recording]) -> list[Recording]:
        for stage in stages:
            items = self.apply(stage, items)
        return items

    def apply(self, stage: Stage, items: list[Recording], *, reuse_only: bool = False) -> list[Recording]:
        """The stage over ``items``: recordings it has no work for pass through; stored outputs are
        reused; the others are processed (``reuse_only``: left as they are)."""
        if stage.on == "driver":
            stage.setup()
            return stage.process(items)
        out = list(items)
        todo: list[int] = []
        prefix = work_prefix(stage.work) if stage.work else None
        done = done_parts(self.store, prefix) if prefix else set()
        for i, rec in enumerate(items):
            if not stage.wants(rec):
                continue
            name = stage.part_name(rec) if prefix else None
            if name in done:
                stored = stage.decode(rec, read_part(self.store, f"{prefix}/{name}.parquet"))
                if stage.reuse(rec, stored):
                    out[i] = stored
                    continue
            todo.append(i)
        self.ran[stage.name] = 0 if reuse_only else len(todo)
        self.made_now[stage.name] = [] if reuse_only else list(todo)
        if not todo or reuse_only:
            return out
        weight = stage.weight
        total = sum(weight(items[i]) for i in todo)
        self.ran_weight[stage.name] = total
        with tqdm(total=round(total), desc=stage.name, unit=stage.unit,
                  disable=not self.progress) as bar:
            for j, result in self.executor.map(stage, [_travelling(items[i]) for i in todo]):
                i = todo[j]
                result = _home(result, items[i])
                if prefix and stage.keep_part(result):
                    data = part_bytes(stage.encode(result))
                    self.store.put_bytes(f"{prefix}/{stage.part_name(result)}.parquet", data)
                    result = stage.decode(items[i], part_rows(data))  # what a rerun would read, not read back
                out[i] = result
                bar.update(round(weight(items[i])))
        return out

    def stream(self, stage: Stage, items: list[Recording], *, timeout: float) -> Iterator[Recording]:
        """The stage's outputs in the items' order, as they come (not kept: e.g. cut audio)."""
        results = self.executor.stream(stage, [_travelling(rec) for rec in items if stage.wants(rec)], timeout=timeout)
        with tqdm(total=len(items), desc=stage.name, unit="rec", disable=not self.progress) as bar:
            for rec in items:
                yield _home(next(results), rec) if stage.wants(rec) else rec
                bar.update()
