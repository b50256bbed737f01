"""Ingest: read a raw file from its store, decode to 16 kHz mono, hash and fingerprint it, or quarantine it.

Every file gives exactly one row: a recording (``status == "ok"``) or a quarantine row with a
reason code: ``too_large`` (not read), ``empty_file``, ``not_audio``, ``no_audio_stream``,
``decode_error``, ``too_short``, ``too_long``, ``silent``, ``read_error``. Exact duplicates are
found later, across all files (see :func:`drop_exact_duplicates`), and near-duplicates after
labelling, from the fingerprints and the transcripts (see :func:`drop_near_duplicates`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from corpus.audio import AudioDecodeError, DecodedAudio, decode
from corpus.schema import pcm_sha256
from corpus.store import StoreError, open_store


def read_source_bytes(file: dict, endpoint_url: str | None) -> bytes:
    store = open_store(file["source_uri"], endpoint_url=endpoint_url)
    return store.get_bytes(file["key"])


def rms_dbfs(pcm: np.ndarray) -> float:
    if pcm.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def decode_file(file: dict, endpoint_url: str | None) -> DecodedAudio:
    """The file's audio (raises AudioDecodeError / StoreError): the one way stages read sources."""
    data = read_source_bytes(file, endpoint_url)
    if not data:
        raise AudioDecodeError("empty_file", f"{file['uri']}: zero bytes")
    return decode(io.BytesIO(data), name=file["uri"])


@dataclass
class Ingest:
    """Stage: a source file (dict of :class:`SourceFile` fields) → one recording or quarantine row."""

    min_seconds: float
    max_seconds: float
    max_bytes: int
    silence_dbfs: float
    endpoint_url: str | None = None

    def __call__(self, file: dict) -> dict:
        base = {k: file[k] for k in ("file_key", "source_uri", "key", "uri", "domain", "language", "licence", "size")}
        if file["size"] > self.max_bytes:
            return self._quarantine(base, "too_large", f"{file['size']} bytes > max_bytes {self.max_bytes}")
        try:
            audio = decode_file(file, self.endpoint_url)
        except AudioDecodeError as err:
            return self._quarantine(base, err.reason, str(err))
        except StoreError as err:
            return self._quarantine(base, "read_error", str(err))
        duration = audio.duration
        if duration < self.min_seconds:
            return self._quarantine(base, "too_short", f"{duration:.3f} s < {self.min_seconds} s")
        if duration > self.max_seconds:
            return self._quarantine(base, "too_long", f"{duration:.1f} s > {self.max_seconds} s")
        level = rms_dbfs(audio.pcm)
        if level < self.silence_dbfs:
            return self._quarantine(base, "silent", f"RMS {level:.1f} dBFS < {self.silence_dbfs} dBFS")
        from pipelines.fingerprint import fingerprint

        sha = pcm_sha256(audio.pcm)
        return {**base, "status": "ok", "reason": None, "detail": None, "recording_id": sha[:20], "pcm_sha256": sha,
                "duration": round(duration, 6), "orig_sample_rate": audio.orig_sample_rate,
                "orig_channels": audio.orig_channels, "codec": audio.codec, "rms_dbfs": round(level, 2),
                "fingerprint": fingerprint(audio.pcm).to_bytes()}

    @staticmethod
    def _quarantine(base: dict, reason: str, detail: str) -> dict:
        return {**base, "status": "quarantine", "reason": reason, "detail": detail, "recording_id": None,
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
