"""Decode once: a source file read, decoded, hashed, fingerprinted, segmented and clipped in one pass.

The build reads each source file once, here (in the ingest stage's bounded child process):

1. the file's bytes are copied to a local temp file, never more than its listed size + 1;
2. PyAV decodes it chunk by chunk (:func:`corpus.audio.stream_decode`) into 16 kHz mono int16
   appended to a local spool file (:class:`PcmSpool`), while the PCM hash (``recording_id``)
   is updated chunk by chunk;
3. the level, the fingerprint and Silero VAD read the spool by span (a minute, 320 s), never
   the whole recording;
4. the VAD regions are packed into segments, and the segments' samples (exact int16, FLAC
   compressed) are written to the store as one work part per recording,
   ``work/clips/<segment_key>/<recording_id>.parquet`` (:func:`write_clips`).

Labelling and cutting read those clips (:func:`read_clips`), never the source again. Memory is
that of one decoded chunk, one VAD block and one fingerprint minute, whatever the length: a
4-hour recording costs disk (115 MB of spool per hour), not RAM.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpus.audio import AudioDecodeError, StreamInfo, stream_decode
from corpus.schema import SAMPLE_RATE, as_int16
from corpus.store import Store, open_store

CLIPS_VERSION = 1          # the layout of a clips part; part of segment_key
COPY_CHUNK = 1 << 20
RMS_BLOCK = 1 << 20        # samples per block of the level's sum of squares


class PcmSpool:
    """16 kHz mono int16 PCM in a local file, appended chunk by chunk and read back by span."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "w+b")
        self.samples = 0

    def append(self, chunk: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(chunk, dtype="<i2").tobytes())
        self.samples += len(chunk)

    def load_int16(self, start: int, end: int) -> np.ndarray:
        """Samples start..end (clamped to the recording) as int16, read with ``pread`` (no mmap:
        pages read once are not kept in this process's memory)."""
        start, end = max(0, start), min(end, self.samples)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        self._file.flush()
        data = os.pread(self._file.fileno(), 2 * (end - start), 2 * start)
        return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)

    def load(self, start: int, end: int) -> np.ndarray:
        """Samples start..end as float32, int16 / 32768: exactly what :func:`corpus.audio.decode` gives."""
        return self.load_int16(start, end).astype(np.float32) / np.float32(32768.0)

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def close(self) -> None:
        self._file.close()


@dataclass
class DecodedRecording:
    info: StreamInfo
    spool: PcmSpool
    pcm_sha256: str


def fetch_source(file: dict, endpoint_url: str | None, dest: str | os.PathLike) -> Path:
    """Copy a source file to ``dest`` in 1 MiB pieces, never more than its listed size + 1 bytes
    (a file that grew, or a special file behind a name, cannot make a worker read without end)."""
    store = open_store(file["source_uri"], endpoint_url=endpoint_url)
    got = 0
    with store.open_read(file["key"]) as reader, open(dest, "wb") as out:
        while got <= file["size"]:
            piece = reader.read(min(COPY_CHUNK, file["size"] + 1 - got))
            if not piece:
                break
            out.write(piece)
            got += len(piece)
    if got != file["size"]:
        more = "more" if got > file["size"] else "fewer"
        raise AudioDecodeError("size_mismatch", f"{file['uri']}: {more} bytes than the {file['size']} its listing "
                                                "declares (changed while read, or not a plain file)")
    if not got:
        raise AudioDecodeError("empty_file", f"{file['uri']}: zero bytes")
    return Path(dest)


def decode_to_spool(path: str | os.PathLike, spool_path: str | os.PathLike, *, name: str,
                    max_seconds: float | None) -> DecodedRecording:
    """Decode a local file into a spool, hashing the PCM on the way (``recording_id`` is the
    first 20 hex of this sha256, the same as :func:`corpus.schema.pcm_sha256` of the whole array)."""
    info, chunks = stream_decode(Path(path), name=name, max_seconds=max_seconds)
    spool = PcmSpool(spool_path)
    sha = hashlib.sha256()
    try:
        for chunk in chunks:
            spool.append(chunk)
            # the id hashes the project's one quantisation of the float PCM (as_int16), as before
            sha.update(as_int16(chunk.astype(np.float32) / np.float32(32768.0)).astype("<i2", copy=False).tobytes())
    except BaseException:
        spool.close()
        raise
    return DecodedRecording(info=info, spool=spool, pcm_sha256=sha.hexdigest())


def spool_rms_dbfs(spool: PcmSpool) -> float:
    """RMS level in dBFS, summed in the same 2**20-sample blocks as :func:`pipelines.ingest.rms_dbfs`."""
    if spool.samples == 0:
        return float("-inf")
    total = 0.0
    for i in range(0, spool.samples, RMS_BLOCK):
        block = spool.load(i, i + RMS_BLOCK).astype(np.float64)
        total += float(np.dot(block, block))
    rms = float(np.sqrt(total / spool.samples))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def segment_spool(spool: PcmSpool, segment: dict, *, block_windows: int | None = None) -> list[tuple[float, float]]:
    """VAD (windowed) and packing: the recording's segments (start, end) in seconds."""
    from pipelines.segment import pack_segments
    from pipelines.vad import BLOCK_WINDOWS, speech_regions

    speech = speech_regions(spool.load, spool.samples, threshold=segment["vad_threshold"],
                            block_windows=block_windows or BLOCK_WINDOWS)
    return pack_segments(speech, spool.duration, min_seconds=segment["min_seconds"],
                         max_seconds=segment["max_seconds"], max_gap=segment["max_gap"], pad=segment["pad"])


# --------------------------------------------------------------------------- clips parts


def _clips_schema():
    import pyarrow as pa

    return pa.schema([pa.field("start", pa.float64(), nullable=False), pa.field("end", pa.float64(), nullable=False),
                      pa.field("flac", pa.binary(), nullable=False)],
                     metadata={b"stt_corpus.clips_version": str(CLIPS_VERSION).encode()})


def _span(start: float, end: float) -> tuple[int, int]:
    return round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)


def write_clips(store: Store, key: str, spool: PcmSpool, segments: list[tuple[float, float]], tmp_dir: str) -> None:
    """Write one recording's segments with their exact int16 samples (FLAC-compressed, lossless)
    as a parquet work part, streamed through a local file (one segment in memory at a time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf

    path = Path(tmp_dir) / "clips.parquet"
    schema = _clips_schema()
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        def flush(batch: list[tuple[float, float, bytes]]) -> None:
            cols = list(zip(*batch)) if batch else [(), (), ()]
            # Table.from_arrays, not pa.table(lists): that one imports pandas (seconds, per process)
            writer.write_table(pa.Table.from_arrays([pa.array(col, type=field.type) for col, field in zip(cols, schema)],
                                                    schema=schema))

        batch: list[tuple[float, float, bytes]] = []
        for start, end in segments:
            buf = io.BytesIO()
            sf.write(buf, spool.load_int16(*_span(start, end)), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            batch.append((start, end, buf.getvalue()))
            if len(batch) == 32:
                flush(batch)
                batch = []
        if batch or not segments:
            flush(batch)
    store.put_file(key, path)


def iter_clips(store: Store, key: str) -> Iterator[tuple[float, float, np.ndarray]]:
    """A recording's (start, end, int16 samples) from its clips part, in the order written, one
    clip decoded at a time (only the part's FLAC bytes are held: about half the int16 size)."""
    import pyarrow.parquet as pq
    import soundfile as sf

    part = pq.ParquetFile(io.BytesIO(store.get_bytes(key)))
    for group in range(part.num_row_groups):
        table = part.read_row_group(group, columns=["start", "end", "flac"])
        for start, end, flac in zip(*(table.column(c).to_pylist() for c in ("start", "end", "flac"))):
            pcm, _ = sf.read(io.BytesIO(flac), dtype="int16", always_2d=False)
            yield start, end, pcm


def read_clips(store: Store, key: str) -> list[tuple[float, float, np.ndarray]]:
    """A recording's (start, end, int16 samples) from its clips part, in the order written."""
    return list(iter_clips(store, key))


def cut_clips(clips: Iterable[tuple[float, float, np.ndarray]],
              wanted: Iterable[tuple[float, float]]) -> dict[tuple[float, float], np.ndarray]:
    """The int16 samples of each wanted (start, end), taken from the stored clip that holds it (a
    whole segment, or a trimmed piece of one): the same samples as cutting the decoded recording at
    those times. Only the wanted spans are kept, so a recording's clips stream through."""
    wanted = sorted(set(wanted))
    out: dict[tuple[float, float], np.ndarray] = {}
    for c_start, c_end, pcm in clips:
        first, last = _span(c_start, c_end)  # the clip's span; its samples end earlier at the recording's end
        for start, end in wanted:
            a, b = _span(start, end)
            if first <= a and b <= last and (start, end) not in out:
                out[(start, end)] = pcm[a - first:b - first].copy()  # clamped there, as the recording is
    return out


def clip_to_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / np.float32(32768.0)


class StoredClips:
    """A recording's samples read from its clips part (a :class:`corpus.schema.SpanReader`): only the
    clips holding a wanted span are kept, the part is streamed through one clip at a time."""

    def __init__(self, store: Store, key: str):
        self.store, self.key = store, key

    def spans(self, wanted: Iterable[tuple[float, float]]) -> dict[tuple[float, float], np.ndarray]:
        """int16 samples of each wanted (start, end) that lies inside one stored clip."""
        return cut_clips(iter_clips(self.store, self.key), wanted)

    def load(self, start: float, end: float) -> np.ndarray:
        got = self.spans([(start, end)])
        if (start, end) not in got:
            raise KeyError(f"{start:.3f}-{end:.3f} s is not inside one clip of {self.store.url(self.key)}")
        return clip_to_float(got[(start, end)])
