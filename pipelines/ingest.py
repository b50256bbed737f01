"""Ingest: read a raw file from its store, decode to 16 kHz mono, hash and fingerprint it, or quarantine it.

Every file gives exactly one row: a recording (``status == "ok"``), a quarantine row
(``status == "quarantine"``) whose reason comes from the file's content or name, or a deferred
row (``status == "deferred"``) when the file could not be read (an error of access or
availability: permission denied, 403, 5xx past the retries, a read that timed out). A deferred
row is never cached, so the next run reads the file again; only content quarantines.

Quarantine reasons: ``too_large`` (not read), ``special_file`` (FIFO, device, socket, directory,
broken symlink, symlink loop: never opened), ``bad_name`` (not UTF-8, control characters, too
long: never read), ``size_mismatch`` (more or fewer bytes than listed), ``empty_file``,
``not_audio``, ``no_audio_stream``, ``truncated``, ``decode_error``, ``non_finite_samples``,
``too_short``, ``too_long``, ``silent``, and later ``duplicate`` and ``near_duplicate``.
Deferred reasons: ``unreadable`` (access denied, not a regular file), ``read_error`` (storage
unavailable), ``timeout`` (no result within ``read_timeout_s``), ``reader_crashed``,
``work_write_error`` (the recording's clips could not be written to the store).

Each file is read once, in a child process with a wall-clock bound (:mod:`pipelines.bounded`),
so no file can stall or crash a build: decoded chunk by chunk to a local spool, hashed,
fingerprinted and, in a build, segmented, with its speech clips written to the store
(:mod:`pipelines.recording`); nothing later reads the source again. Exact duplicates are found
later, across all files (see :func:`drop_exact_duplicates`), and near-duplicates after
labelling, from the fingerprints and the transcripts (see :func:`drop_near_duplicates`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from corpus.audio import AudioDecodeError
from corpus.schema import Recording
from corpus.store import ObjectUnreadable, StoreError, open_store
from pipelines.stages import Resources, Stage


# metadata a source declares for its files: taken from the current config, never from a cached row
SOURCE_METADATA = ("source_uri", "key", "uri", "domain", "language", "licence")


def rms_dbfs(pcm: np.ndarray) -> float:
    if pcm.size == 0:
        return float("-inf")
    step = 1 << 20  # in blocks: a float64 copy of a 4-hour recording would be 1.8 GB
    total = sum(float(np.dot(block, block)) for block in
                (pcm[i:i + step].astype(np.float64) for i in range(0, pcm.size, step)))
    rms = float(np.sqrt(total / pcm.size))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


@dataclass
class Ingest:
    """Stage: a source file (dict of :class:`SourceFile` fields) → one recording or quarantine row.

    With ``clips_store`` and ``segment`` set (the build sets them), a recording is also segmented
    (Silero VAD + packing) and its segments' samples written to ``<clips_prefix>/<recording_id>.parquet``
    in that store, in the same pass over the file (see :mod:`pipelines.recording`)."""

    min_seconds: float
    max_seconds: float
    max_bytes: int
    silence_dbfs: float
    read_timeout_s: float = 600.0
    on_read_error: str = "defer"  # what the build does with deferred rows (see BuildConfig.ingest)
    endpoint_url: str | None = None
    segment: dict | None = None
    clips_store: str | None = None
    clips_prefix: str | None = None
    vad_block_windows: int | None = None  # tests: a short VAD window

    def __call__(self, file: dict) -> dict:
        base = {k: file[k] for k in ("file_key", "source_uri", "key", "uri", "domain", "language", "licence", "size")}
        if file.get("problem"):
            return self._quarantine(base, file["problem"], f"{file['uri']}: {file.get('detail')}")
        if file["size"] > self.max_bytes:
            return self._quarantine(base, "too_large", f"{file['size']} bytes > max_bytes {self.max_bytes}")
        import shutil
        import tempfile

        from pipelines.bounded import WorkCrashed, WorkTimeout, call_bounded

        # the child's scratch (a copy of the file, its PCM spool): removed here even if the child is killed
        tmp = tempfile.mkdtemp(prefix="stt-ingest-")
        try:
            return call_bounded(self.read, file, base, tmp, timeout=self.read_timeout_s,
                                what=f"reading {file['uri']}")
        except WorkTimeout as err:
            return self._quarantine(base, "timeout", str(err), status="deferred")
        except WorkCrashed as err:
            return self._quarantine(base, "reader_crashed", str(err), status="deferred")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def read(self, file: dict, base: dict, tmp: str) -> dict:
        """Read, decode, measure, fingerprint and segment one file (runs in the bounded child process)."""
        from botocore.exceptions import BotoCoreError

        from pipelines.recording import decode_to_spool, fetch_source, spool_rms_dbfs

        try:
            path = fetch_source(file, self.endpoint_url, f"{tmp}/source")
            decoded = decode_to_spool(path, f"{tmp}/pcm", name=file["uri"], max_seconds=self.max_seconds)
        except AudioDecodeError as err:
            return self._quarantine(base, err.reason, str(err))
        except ObjectUnreadable as err:
            return self._quarantine(base, "unreadable", str(err), status="deferred")
        except (StoreError, OSError, BotoCoreError) as err:
            return self._quarantine(base, "read_error", f"{file['uri']}: {err}", status="deferred")
        spool = decoded.spool
        try:
            os.remove(path)  # decoded: the copy of the source is no longer needed
            duration = spool.duration
            if duration < self.min_seconds:
                return self._quarantine(base, "too_short", f"{duration:.3f} s < {self.min_seconds} s")
            if duration > self.max_seconds:
                return self._quarantine(base, "too_long", f"{duration:.1f} s > {self.max_seconds} s")
            level = spool_rms_dbfs(spool)
            if level < self.silence_dbfs:
                return self._quarantine(base, "silent", f"RMS {level:.1f} dBFS < {self.silence_dbfs} dBFS")
            from pipelines.fingerprint import fingerprint_spans

            sha = decoded.pcm_sha256
            row = {**base, "status": "ok", "reason": None, "detail": None, "recording_id": sha[:20],
                   "pcm_sha256": sha, "duration": round(duration, 6),
                   "orig_sample_rate": decoded.info.orig_sample_rate, "orig_channels": decoded.info.orig_channels,
                   "codec": decoded.info.codec, "rms_dbfs": round(level, 2),
                   "fingerprint": fingerprint_spans(spool.load, spool.samples).to_bytes()}
            if self.clips_store and self.segment is not None:
                from pipelines.recording import segment_spool, write_clips

                segments = segment_spool(spool, self.segment, block_windows=self.vad_block_windows)
                store = open_store(self.clips_store, endpoint_url=self.endpoint_url)
                try:
                    write_clips(store, f"{self.clips_prefix}/{row['recording_id']}.parquet", spool, segments, tmp)
                except (StoreError, OSError, BotoCoreError) as err:
                    return self._quarantine(base, "work_write_error", f"writing the clips of {file['uri']}: {err}",
                                            status="deferred")
            return row
        finally:
            spool.close()

    @staticmethod
    def _quarantine(base: dict, reason: str, detail: str, status: str = "quarantine") -> dict:
        return {**base, "status": status, "reason": reason, "detail": detail, "recording_id": None,
                "pcm_sha256": None, "duration": None, "orig_sample_rate": None, "orig_channels": None,
                "codec": None, "rms_dbfs": None, "fingerprint": None}


def listed(file) -> Recording:
    """A listed source file (:class:`pipelines.sources.SourceFile`) as the record ingest takes: status
    ``listed``; a file listed with a problem (special file, bad name) has it as its reason."""
    return Recording(file_key=file.file_key, source_uri=file.source_uri, key=file.key, uri=file.uri, domain=file.domain,
                     language=file.language, licence=file.licence, size=file.size, status="listed",
                     reason=file.problem, detail=file.detail)


class IngestStage(Stage):
    """Stage: a listed file → a recording (ids, duration, level, fingerprint; its clips written) or a
    quarantined / deferred file. Kept in ``work/ingest/<file_key>``; a deferred read is not kept."""

    name = "ingest"
    work = "ingest"
    unit = "file"

    def __init__(self, ingest: Ingest, *, workers: int, placement: dict, clips_done: set[str] | None = None):
        self.ingest = ingest
        self._resources = Resources(cpus=1, custom=dict(placement), workers=workers, blocks=64)
        self.clips_done = clips_done  # recordings whose clips exist for this segmentation (driver only)

    def __getstate__(self):
        return {**self.__dict__, "clips_done": None}  # the workers need not carry it

    def resources(self) -> Resources:
        return self._resources

    def wants(self, rec: Recording) -> bool:
        return True

    def part_name(self, rec: Recording) -> str:
        return rec.file_key

    def process(self, batch: list[Recording]) -> list[Recording]:
        return [Recording.from_row(self.ingest({**rec.file_row(), "problem": rec.reason})) for rec in batch]

    def encode(self, rec: Recording) -> list[dict]:
        return [rec.file_row(fingerprint=True)]

    def decode(self, rec: Recording, rows: list[dict]) -> Recording:
        # a stored row keeps what was read from the file; what the sources declare (licence…) is current
        stored = Recording.from_row(rows[0])
        return replace(stored, **{k: getattr(rec, k) for k in SOURCE_METADATA})

    def keep_part(self, rec: Recording) -> bool:
        return rec.status != "deferred"  # not kept: the next run reads the file again

    def reuse(self, rec: Recording, stored: Recording) -> bool:
        # a recording ingested before fingerprints existed is ingested again, so that it is compared
        # too; one whose clips for this segmentation are missing (new segment parameters) too
        if not stored.ok:
            return True
        return bool(stored.fingerprint) and (self.clips_done is None or stored.recording_id in self.clips_done)


class DropExactDuplicates(Stage):
    """Stage (driver): recordings with the same PCM hash: the first by uri is kept, the others
    quarantined (``duplicate``). Gives the records in uri order."""

    name = "exact_duplicates"
    on = "driver"

    def process(self, batch: list[Recording]) -> list[Recording]:
        first: dict[str, str] = {}
        out = []
        for rec in sorted(batch, key=lambda r: r.uri):
            if rec.ok:
                kept = first.setdefault(rec.recording_id, rec.uri)
                if kept != rec.uri:
                    rec = replace(rec, status="quarantine", reason="duplicate",
                                  detail=f"same decoded PCM as {kept} (recording {rec.recording_id})")
            out.append(rec)
        return out


class DropNearDuplicates(Stage):
    """Stage (driver, after labelling): near-duplicate recordings (re-encoded, trimmed, re-gained,
    resampled copies), by audio fingerprint and transcript similarity: the longest copy is kept, the
    others quarantined with reason ``near_duplicate`` naming the recording kept."""

    name = "near_duplicates"
    on = "driver"

    def process(self, batch: list[Recording]) -> list[Recording]:
        recordings = [r for r in batch if r.ok]
        texts = {r.recording_id: " ".join(s.label.text or "" for s in r.segments if s.label) for r in recordings}
        dropped = drop_near_duplicates(recordings, texts)
        return [replace(r, status="quarantine", reason="near_duplicate", detail=dropped[r.recording_id])
                if r.ok and r.recording_id in dropped else r for r in batch]


def drop_near_duplicates(recordings: list[Recording], texts: dict[str, str]) -> dict[str, str]:
    """Recording id → why it is a near-duplicate (of which kept recording, how similar), for the
    recordings that are (see :class:`DropNearDuplicates`)."""
    from pipelines.fingerprint import find_near_duplicates

    items = [{"id": r.recording_id, "uri": r.uri, "duration": r.duration, "fingerprint": r.fingerprint,
              "text": texts.get(r.recording_id)} for r in recordings]
    by_id = {r.recording_id: r for r in recordings}
    return {rid: f"near-duplicate of recording {kept_id} ({by_id[kept_id].uri}), audio similarity {score:.2f}"
            for rid, (kept_id, score) in find_near_duplicates(items).items()}
