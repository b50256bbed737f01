"""The one data model of stt-corpus: Arrow schemas, ids and the rules that keep them valid.

Every table the project writes (recordings, segments, labels and decisions, the release
manifest, the shard index, quarantine) has its schema here, tagged with ``SCHEMA_VERSION`` in
the Arrow metadata, so pyarrow, pandas and duckdb read them with no code of ours.

Times are seconds (float64). Ids are derived from content and parents, so the same input
always gives the same id:

- ``recording_id``: the first 20 hex digits of the sha256 of the decoded 16 kHz mono PCM
  (int16 little-endian), so a re-encoded copy of a file with identical samples gets the same id;
- ``segment_id``: ``f"{recording_id}-{start_ms:09d}-{end_ms:09d}"``.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "3"  # 2: manifest gained language, declared_language, mean_word_prob, pass_used, group
# 3: manifest gained parent_segment_id (trimmed pieces), rms_dbfs, agreement_cer
SAMPLE_RATE = 16_000
SPLITS = ("train", "validation", "test")
DECISIONS = ("keep", "reject")

_RECORDING_ID_HEX = 20
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def _versioned(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"stt_corpus.table": name, "stt_corpus.schema_version": SCHEMA_VERSION})


RECORDINGS = _versioned("recordings", [
    pa.field("recording_id", pa.string(), nullable=False),
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("language", pa.string()),
    pa.field("licence", pa.string()),
    pa.field("duration", pa.float64(), nullable=False),
    pa.field("orig_sample_rate", pa.int32()),
    pa.field("orig_channels", pa.int16()),
    pa.field("codec", pa.string()),
    pa.field("pcm_sha256", pa.string(), nullable=False),
])

QUARANTINE = _versioned("quarantine", [
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("domain", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string()),
    pa.field("bytes", pa.int64()),
])

SEGMENTS = _versioned("segments", [
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("recording_id", pa.string(), nullable=False),
    pa.field("start", pa.float64(), nullable=False),
    pa.field("end", pa.float64(), nullable=False),
])

WORD = pa.struct([
    pa.field("word", pa.string()),
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
    pa.field("probability", pa.float64()),
])

LABELS = _versioned("labels", [
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("text", pa.string()),
    pa.field("language", pa.string()),
    pa.field("language_probability", pa.float64()),
    pa.field("avg_logprob", pa.float64()),
    pa.field("no_speech_prob", pa.float64()),
    pa.field("compression_ratio", pa.float64()),
    pa.field("temperature", pa.float64()),
    pa.field("words", pa.list_(WORD)),
    pa.field("model_id", pa.string()),
    pa.field("decode_params", pa.string()),  # JSON, so any decoder's parameters fit
])

MANIFEST = _versioned("manifest", [
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("recording_id", pa.string(), nullable=False),
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("start", pa.float64(), nullable=False),
    pa.field("end", pa.float64(), nullable=False),
    pa.field("text", pa.string()),
    pa.field("avg_logprob", pa.float64()),
    pa.field("no_speech_prob", pa.float64()),
    pa.field("compression_ratio", pa.float64()),
    pa.field("decision", pa.string(), nullable=False),
    pa.field("reasons", pa.list_(pa.string()), nullable=False),
    pa.field("shard", pa.string()),  # release-relative key of the shard holding it; null if rejected
    pa.field("language", pa.string()),               # what the model says was spoken
    pa.field("language_probability", pa.float64()),
    pa.field("declared_language", pa.string()),      # what the source declares
    pa.field("mean_word_prob", pa.float64()),        # mean of the label's word probabilities
    pa.field("pass_used", pa.int8()),                # 1: first (batched) pass, 2: second pass
    pa.field("group", pa.string()),                  # what the split was assigned by (recording or declared group)
    pa.field("parent_segment_id", pa.string()),      # a trimmed piece: the segment it was cut from; else null
    pa.field("rms_dbfs", pa.float64()),              # loudness of the (parent) segment's audio
    pa.field("agreement_cer", pa.float64()),         # CER between the label and a second opinion; null: none asked
])

SHARD_INDEX = _versioned("shard_index", [
    pa.field("url", pa.string(), nullable=False),  # release-relative key, e.g. shards/train/phone/train-phone-000000.tar
    pa.field("split", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("samples", pa.int64(), nullable=False),
    pa.field("seconds", pa.float64(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("first_key", pa.string(), nullable=False),
    pa.field("last_key", pa.string(), nullable=False),
])


def recording_id(pcm: np.ndarray) -> str:
    """Id of a recording: sha256 prefix of its 16 kHz mono PCM as int16 little-endian."""
    return pcm_sha256(pcm)[:_RECORDING_ID_HEX]


def pcm_sha256(pcm: np.ndarray) -> str:
    sha = hashlib.sha256()
    step = 1 << 20  # in blocks: as_int16 of a whole 4-hour recording would copy it to float64 (1.8 GB)
    for i in range(0, max(len(pcm), 1), step):
        sha.update(as_int16(pcm[i:i + step]).astype("<i2", copy=False).tobytes())
    return sha.hexdigest()


def as_int16(pcm: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] (or int16 already) as int16, clipped, the one quantisation we use."""
    if pcm.dtype == np.int16:
        return pcm
    return np.clip(np.round(np.asarray(pcm, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def segment_id(recording: str, start: float, end: float) -> str:
    if not (0 <= start < end):
        raise ValueError(f"segment times must satisfy 0 <= start < end, got start={start}, end={end}")
    return f"{recording}-{round(start * 1000):09d}-{round(end * 1000):09d}"


def validate_key(key: str) -> str:
    """A WebDataset sample key: letters, digits, '-' and '_' only (no dots, '/', or '..')."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(
            f"invalid sample key {key!r}: use letters, digits, '-' and '_' only "
            "(a dot would split the key from its extension, '/' would make a directory)")
    return key


def validate_name(kind: str, name: str) -> str:
    """A release, split or domain name usable as one path component."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '-', '_' and '.' (not leading)")
    return name


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) as a table of exactly ``schema``; a missing non-null column is an error."""
    names = set(schema.names)
    for i, row in enumerate(rows):
        extra = set(row) - names
        if extra:
            raise ValueError(f"{schema.metadata[b'stt_corpus.table'].decode()} row {i}: unknown columns {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=schema)


def check_schema(table: pa.Table, schema: pa.Schema, what: str) -> None:
    """Raise naming ``what`` when ``table`` lacks a column of ``schema`` or has another version."""
    version = (table.schema.metadata or {}).get(b"stt_corpus.schema_version", b"?").decode()
    if version != SCHEMA_VERSION:
        raise ValueError(f"{what}: schema version {version}, this code reads version {SCHEMA_VERSION}")
    missing = [f.name for f in schema if f.name not in table.schema.names]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}")
