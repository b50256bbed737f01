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
from dataclasses import dataclass

import numpy as np

from corpus.audio import AudioDecodeError
from corpus.store import ObjectUnreadable, StoreError, open_store


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


def with_source_metadata(row: dict, file: dict) -> dict:
    """A cached ingest row with the metadata the sources declare now (licence, domain, language…)."""
    return {**row, **{k: file[k] for k in SOURCE_METADATA if k in file}}


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


def drop_exact_duplicates(rows: list[dict]) -> list[dict]:
    """Recordings with the same PCM hash: the first by uri is kept, the others quarantined."""
    first: dict[str, str] = {}
    out = []
    for row in sorted(rows, key=lambda r: r["uri"]):
        if row["status"] == "ok":
            kept = first.setdefault(row["recording_id"], row["uri"])
            if kept != row["uri"]:
                row = {**row, "status": "quarantine", "reason": "duplicate",
                       "detail": f"same decoded PCM as {kept} (recording {row['recording_id']})"}
        out.append(row)
    return out




def drop_near_duplicates(recordings: list[dict], texts: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Near-duplicate recordings (re-encoded, trimmed, re-gained, resampled copies): by audio
    fingerprint and transcript similarity the longest copy is kept, the others are quarantined
    with reason ``near_duplicate`` naming the recording kept. Returns (kept, quarantined)."""
    from pipelines.fingerprint import find_near_duplicates

    items = [{"id": r["recording_id"], "uri": r["uri"], "duration": r["duration"],
              "fingerprint": r.get("fingerprint"), "text": texts.get(r["recording_id"])} for r in recordings]
    dropped = find_near_duplicates(items)
    by_id = {r["recording_id"]: r for r in recordings}
    kept, quarantined = [], []
    for rec in recordings:
        hit = dropped.get(rec["recording_id"])
        if hit is None:
            kept.append(rec)
            continue
        kept_id, score = hit
        quarantined.append({**rec, "status": "quarantine", "reason": "near_duplicate",
                            "detail": f"near-duplicate of recording {kept_id} ({by_id[kept_id]['uri']}), "
                                      f"audio similarity {score:.2f}"})
    return kept, quarantined
