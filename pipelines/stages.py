"""What a build stage is: a small class over typed records, free of Ray.

A stage takes a list of :class:`corpus.schema.Recording` s and gives them back, each with what
the stage adds (a recording's ids, its segments, their labels, decisions, audio). It never knows
how it is run: :mod:`pipelines.runner` (the only code that imports Ray) calls ``setup()`` once
per worker and ``process(batch)`` for each batch, on Ray workers or in this process, and keeps
the output of the stages that say where (``work``) as work parts, so a rerun skips what is done.

``build`` and ``refilter`` are lists of these stages (:mod:`pipelines.build`,
:mod:`pipelines.refilter`).

Two kinds:

- ``on = "workers"``: one recording at a time (a batch of one), in parallel, with the stage's
  :class:`Resources` (CPUs, GPUs, the custom Ray resources that place it on a node pool);
  ``actors=True`` keeps a worker's state (a loaded model) between recordings.
- ``on = "driver"``: the whole list at once, in the driver (duplicates, which need every
  recording; the cheap rules).

A stage whose output is kept names its work folder (``work``, relative; the runner places it)
and says how one recording's output becomes rows of its part (``encode``) and back
(``decode``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from corpus.schema import Recording


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0
    custom: dict = field(default_factory=dict)   # Ray custom resources, e.g. {"asr": 1}: node placement
    workers: int = 1                            # at once
    actors: bool = False                        # long-lived workers that keep state (a model) between batches
    blocks: int = 256                           # at most this many Ray Data blocks (tasks) for the stage


class Stage:
    """Base class: override ``process``; optionally ``setup``, ``resources`` and the work-part hooks."""

    name = "stage"
    on = "workers"          # "workers": a recording at a time, in parallel; "driver": the whole list here
    work: str | None = None  # the work folder this stage's output is kept in (relative); None: not kept
    unit = "rec"            # progress bar unit, and ``weight(rec)`` of each recording in it

    def weight(self, rec: Recording) -> float:
        return 1

    def resources(self) -> Resources:
        return Resources()

    def setup(self) -> None:
        """Once per worker, before its first batch (load a model, open a store)."""

    def process(self, batch: list[Recording]) -> list[Recording]:
        raise NotImplementedError

    def wants(self, rec: Recording) -> bool:
        """Whether this stage has work for a recording; the others pass through unchanged."""
        return rec.ok

    # ---- work parts (stages with ``work``)
    def part_name(self, rec: Recording) -> str:
        return rec.recording_id

    def encode(self, rec: Recording) -> list[dict]:
        raise NotImplementedError

    def decode(self, rec: Recording, rows: list[dict]) -> Recording:
        raise NotImplementedError

    def keep_part(self, rec: Recording) -> bool:
        """Whether this output is final (kept as a part); False: made again on the next run."""
        return True

    def reuse(self, rec: Recording, stored: Recording) -> bool:
        """Whether a stored output can stand (False: made again, e.g. made by older code)."""
        return True
