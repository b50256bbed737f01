"""A training run's folder on the store, ``<store>/runs/<run>/``, every object written atomically.

    config.json                 the resolved config (the curriculum inline), written at start
    curriculum.yaml             the curriculum as given, and the schedule it resolved to
    vocab.json                  the character vocabulary
    checkpoints/step-NNNNNNNN.pt  model, optimiser, scaler, data position, counters
    checkpoints/latest.json     the commit point of a checkpoint: its key, step and sha256
    metrics.parquet             train and eval rows (see training.loop.METRICS)
    samples/steps-A-B.parquet   every trained sample's key per step, one part per checkpoint
    summary.json                written at the end (training.summary)
    report.md, report.html, *.png  the report, written after the run by its caller (presentation.training_report)
"""
from __future__ import annotations

import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.schema import validate_name
from corpus.store import ObjectNotFound, Store

RUNS = "runs"
LATEST = "checkpoints/latest.json"
_CHECKPOINT = re.compile(r"^checkpoints/step-(\d{8})\.pt$")
_SAMPLES = re.compile(r"^samples/steps-(\d{8})-(\d{8})\.parquet$")


class RunError(RuntimeError):
    """A run cannot start or resume as asked; the message says why."""


def run_store(store: Store, run: str) -> Store:
    return store.at(f"{RUNS}/{validate_name('run', run)}")


class RunDir:
    def __init__(self, store: Store):
        self.store = store

    def started(self) -> bool:
        return bool(self.store.list())

    def put_json(self, key: str, data) -> None:
        self.store.put_bytes(key, json.dumps(data, indent=2, sort_keys=True, default=str).encode())

    def get_json(self, key: str):
        return json.loads(self.store.get_bytes(key))

    def put_table(self, key: str, rows: list[dict], schema: pa.Schema) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf, compression="zstd")
        self.store.put_bytes(key, buf.getvalue())

    def get_rows(self, key: str) -> list[dict]:
        try:
            return pq.read_table(io.BytesIO(self.store.get_bytes(key))).to_pylist()
        except ObjectNotFound:
            return []

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, step: int, payload: dict, *, keep: int) -> str:
        """Write ``payload`` (torch.save) at ``step``, then point latest.json at it; keep the last ``keep``."""
        import torch

        buf = io.BytesIO()
        torch.save(payload, buf)
        key = f"checkpoints/step-{step:08d}.pt"
        written = self.store.put_bytes(key, buf.getvalue())
        self.put_json(LATEST, {"step": step, "key": key, "sha256": written.sha256, "bytes": written.bytes})
        steps = sorted(int(m.group(1)) for k in self.store.list("checkpoints") if (m := _CHECKPOINT.match(k)))
        for old in steps[:-keep]:
            if old != step:
                self.store.delete(f"checkpoints/step-{old:08d}.pt")
        return self.store.url(key)

    def load_checkpoint(self) -> dict | None:
        """The latest committed checkpoint (sha256 checked), or None when the run has none."""
        import hashlib

        import torch

        try:
            latest = self.get_json(LATEST)
        except ObjectNotFound:
            return None
        data = self.store.get_bytes(latest["key"])
        if hashlib.sha256(data).hexdigest() != latest["sha256"]:
            raise RunError(f"checkpoint {self.store.url(latest['key'])} does not match the sha256 in {LATEST}")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    # ------------------------------------------------------------------ per-step sample log

    def put_samples(self, rows: list[dict], schema: pa.Schema) -> None:
        if rows:
            self.put_table(f"samples/steps-{rows[0]['step']:08d}-{rows[-1]['step']:08d}.parquet", rows, schema)

    def drop_samples_after(self, step: int) -> None:
        """Remove sample parts that reach past ``step`` (written after the checkpoint a resume starts from)."""
        for key in self.store.list("samples"):
            m = _SAMPLES.match(key)
            if m and int(m.group(2)) > step:
                self.store.delete(key)

    def samples(self) -> list[dict]:
        """Every logged sample row, in step order."""
        rows = []
        for key in sorted(k for k in self.store.list("samples") if _SAMPLES.match(k)):
            rows.extend(self.get_rows(key))
        return rows
