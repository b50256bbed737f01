"""The one data model of stt-corpus: the typed records, the Arrow schemas the release writes, ids.

Records: a :class:`Recording` (a source file and, when it decoded, its recording; ``load(start,
end)`` reads one span) holds its :class:`Segment` s, each with its :class:`Label` and
:class:`Decision`. Every build stage takes and gives recordings (pipelines.stages); the release's
rows are made from them by one function each: :func:`manifest_row` (the manifest and the
datasheet's input), :func:`sample_fields` (a kept sample's JSON beside its manifest fields) and
:meth:`Recording.file_row` (recordings.parquet, quarantine.parquet).

Every table a release holds (manifest, shard index, recordings, quarantine) is written with its
schema here, tagged with ``SCHEMA_VERSION`` in the Arrow metadata, so pyarrow, pandas and duckdb
read them with no code of ours.

Times are seconds (float64). Ids are derived from content and parents, so the same input
always gives the same id:

- ``recording_id``: the first 20 hex digits of the sha256 of the decoded 16 kHz mono PCM
  (int16 little-endian), so a re-encoded copy of a file with identical samples gets the same id;
- ``segment_id``: ``f"{recording_id}-{start_ms:09d}-{end_ms:09d}"``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields
from typing import Protocol

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


# the columns of a file's row from ingest (pipelines.ingest): what recordings.parquet (files that
# gave a recording) and quarantine.parquet (files that did not: quarantined or deferred) hold
_FILE_FIELDS = [
    pa.field("file_key", pa.string(), nullable=False),   # hash of uri, size and version (mtime / ETag)
    pa.field("source_uri", pa.string(), nullable=False),  # the source folder / prefix it was listed under
    pa.field("key", pa.string(), nullable=False),         # path relative to the source
    pa.field("uri", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("language", pa.string()),                    # declared by the source
    pa.field("licence", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("status", pa.string(), nullable=False),      # ok / quarantine / deferred
    pa.field("reason", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("recording_id", pa.string()),
    pa.field("pcm_sha256", pa.string()),
    pa.field("duration", pa.float64()),
    pa.field("orig_sample_rate", pa.int64()),
    pa.field("orig_channels", pa.int64()),
    pa.field("codec", pa.string()),
    pa.field("rms_dbfs", pa.float64()),
]
RECORDINGS = _versioned("recordings", _FILE_FIELDS)
QUARANTINE = _versioned("quarantine", _FILE_FIELDS)

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


# --------------------------------------------------------------------------- the typed records


class SpanReader(Protocol):
    """Where a recording's samples can be read by span (a local spool, the build's stored clips)."""

    def load(self, start: float, end: float) -> np.ndarray: ...


@dataclass
class Label:
    """What the ASR model said about one segment (pipelines.asr), and the signals the filter reads."""

    text: str = ""
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    temperature: float | None = None
    language: str | None = None            # detected (multilingual model) or the decode language
    language_probability: float | None = None
    decode_language: str | None = None
    language_probs: str | None = None       # JSON: top languages of the clip
    phrase_languages: str | None = None     # JSON: [[first word, last word + 1, language, p, p(declared)], …]
    words: list[dict] = field(default_factory=list)  # word, start, end (recording times), probability
    model_id: str | None = None
    decode_params: str | None = None        # JSON
    pass_used: int | None = None            # 1: first (batched) pass, 2: second pass
    first_pass: str | None = None           # JSON summaries when a second pass ran
    second_pass: str | None = None
    rms_dbfs: float | None = None           # loudness of the segment's audio
    agreement_cer: float | None = None      # CER against a second opinion; None: none asked
    agreement_text: str | None = None
    mean_word_prob: float | None = None     # known without words (a label read from a manifest); else from words

    @classmethod
    def from_dict(cls, d: dict) -> "Label":
        return cls(**{k: d[k] for k in _LABEL_FIELDS if k in d})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in _LABEL_FIELDS}

    def word_prob_mean(self) -> float | None:
        """The mean of the words' probabilities (``mean_word_prob`` when the words are not at hand)."""
        probs = [w["probability"] for w in self.words or []]
        return round(sum(probs) / len(probs), 4) if probs else self.mean_word_prob


_LABEL_FIELDS = {f.name: f for f in fields(Label)}
# what of a label goes into a kept sample's JSON beside the manifest's fields
SAMPLE_LABEL_FIELDS = ("language", "language_probability", "temperature", "words", "model_id", "decode_params",
                       "pass_used", "first_pass", "second_pass", "language_probs", "decode_language",
                       "phrase_languages", "agreement_text")


@dataclass
class Decision:
    decision: str                     # keep / reject
    reasons: list[str] = field(default_factory=list)


@dataclass
class Segment:
    """A span of a recording, its label and, once filtered, the decision.

    ``cut_reason``: a piece that trimming cut out (pipelines.trim) says why; ``parent_segment_id``:
    the segment a trimmed piece was cut from."""

    segment_id: str
    recording_id: str
    start: float
    end: float
    label: Label | None = None
    parent_segment_id: str | None = None
    cut_reason: str | None = None
    decision: Decision | None = None
    flac: bytes | None = field(default=None, repr=False)  # a kept segment's audio as released

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def kept(self) -> bool:
        return self.decision is not None and self.decision.decision == "keep"

    def signals(self, recording: "Recording") -> dict:
        """The flat view the filter rules read: the manifest's signals plus the trim's reason."""
        return {**manifest_row(self, recording), "trim_reason": self.cut_reason}


@dataclass
class Recording:
    """One source file and, when it decoded, its recording; the record every build stage passes on.

    ``status``: ``ok`` (a recording), ``quarantine`` (the file's content or name rules it out,
    ``reason`` says why) or ``deferred`` (it could not be read; the next run tries again). Ids are
    None unless ok. ``segments`` are filled by segmentation and labelling; ``split`` and ``group``
    by split assignment. ``load(start, end)`` reads only that span (see :class:`SpanReader`)."""

    file_key: str
    source_uri: str
    key: str
    uri: str
    domain: str
    language: str | None = None
    licence: str | None = None
    size: int | None = None
    status: str = "ok"
    reason: str | None = None
    detail: str | None = None
    recording_id: str | None = None
    pcm_sha256: str | None = None
    duration: float | None = None
    orig_sample_rate: int | None = None
    orig_channels: int | None = None
    codec: str | None = None
    rms_dbfs: float | None = None
    fingerprint: bytes | None = None
    segments: list[Segment] = field(default_factory=list)
    split: str | None = None
    group: str | None = None
    audio: SpanReader | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def load(self, start: float, end: float) -> np.ndarray:
        """Samples from ``start`` to ``end`` seconds, 16 kHz mono; only that span is read."""
        if self.audio is None:
            raise RuntimeError(f"recording {self.recording_id}: no audio attached (set .audio to a SpanReader)")
        return self.audio.load(start, end)

    @classmethod
    def from_row(cls, row: dict) -> "Recording":
        """From a file row (ingest's work part, recordings.parquet or quarantine.parquet)."""
        return cls(**{k: row[k] for k in _FILE_ROW_FIELDS if k in row})

    def file_row(self, *, fingerprint: bool = False) -> dict:
        """The file's row: the columns of RECORDINGS / QUARANTINE (and the fingerprint, for work parts)."""
        row = {k: getattr(self, k) for k in RECORDINGS.names}
        if fingerprint:
            row["fingerprint"] = self.fingerprint
        return row


_FILE_ROW_FIELDS = (*RECORDINGS.names, "fingerprint")


def manifest_row(segment: Segment, recording: Recording) -> dict:
    """A segment's manifest row (the MANIFEST columns but ``shard``, which the release writer sets)."""
    label = segment.label or Label()
    decision = segment.decision or Decision("reject", [])
    return {"segment_id": segment.segment_id, "recording_id": recording.recording_id, "source_uri": recording.uri,
            "domain": recording.domain, "split": recording.split, "start": segment.start, "end": segment.end,
            "text": label.text, "avg_logprob": label.avg_logprob, "no_speech_prob": label.no_speech_prob,
            "compression_ratio": label.compression_ratio, "language": label.language,
            "language_probability": label.language_probability, "declared_language": recording.language,
            "mean_word_prob": label.word_prob_mean(), "pass_used": label.pass_used or 1, "group": recording.group,
            "parent_segment_id": segment.parent_segment_id, "rms_dbfs": label.rms_dbfs,
            "agreement_cer": label.agreement_cer, "decision": decision.decision, "reasons": list(decision.reasons)}


def sample_fields(segment: Segment, recording: Recording) -> dict:
    """What a kept sample's JSON holds beside its manifest fields: label details and the licence."""
    label = (segment.label or Label()).to_dict()
    return {**{k: label.get(k) for k in SAMPLE_LABEL_FIELDS}, "licence": recording.licence}


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
