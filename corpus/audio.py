"""Decode any audio file PyAV (FFmpeg) can read into 16 kHz mono float32 PCM.

One decoder for every format (wav, flac, mp3, ogg/opus, m4a…): PyAV demuxes, decodes and
resamples with FFmpeg's resampler (downmix to mono, 16 kHz), chunk by chunk
(:func:`stream_decode`), so a caller can keep memory independent of the recording's length. A file that cannot be decoded
raises :class:`AudioDecodeError` whose ``reason`` is a short code for quarantine rows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from corpus.schema import SAMPLE_RATE


class AudioDecodeError(ValueError):
    """The input is not decodable audio. ``reason`` is a stable code, the message says more."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # picklable across processes (the bounded reader returns it)
        return (type(self), (self.reason, str(self)))


@dataclass(frozen=True)
class DecodedAudio:
    pcm: np.ndarray          # float32, mono, SAMPLE_RATE
    orig_sample_rate: int
    orig_channels: int
    codec: str

    @property
    def duration(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


MIN_SAMPLE_RATE = 4000  # below this a file is not speech audio (1 Hz "audio" would decode to hours)


@dataclass(frozen=True)
class StreamInfo:
    """What the header of a stream says, known before any sample is decoded."""

    orig_sample_rate: int
    orig_channels: int
    codec: str


def stream_decode(source: str | os.PathLike | BinaryIO, *, name: str | None = None,
                  max_seconds: float | None = None) -> tuple[StreamInfo, Iterator[np.ndarray]]:
    """Open ``source`` and check its header; return its info and an iterator of 16 kHz mono int16
    chunks (a few thousand samples each, as FFmpeg's resampler gives them).

    Memory stays that of one chunk whatever the file's length: a caller that hashes, measures or
    spools each chunk and drops it never holds the whole recording. Errors of the header raise
    here; errors found while decoding (``truncated``, ``decode_error``, ``non_finite_samples``,
    ``too_long``) raise from the iterator, which closes the file when it ends or is dropped.
    ``max_seconds``: a longer file raises ``too_long`` as soon as that is known (from its header,
    or while decoding), so a small file claiming hours never costs hours of decoding."""
    import av

    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<stream>")
    try:
        container = av.open(source if not isinstance(source, os.PathLike) else os.fspath(source), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise AudioDecodeError("not_audio", f"{label}: cannot be opened as audio: {err}") from err
    try:
        streams = container.streams.audio
        if not streams:
            raise AudioDecodeError("no_audio_stream", f"{label}: contains no audio stream")
        stream = streams[0]
        ctx = stream.codec_context
        orig_rate, orig_channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if 0 < orig_rate < MIN_SAMPLE_RATE:
            raise AudioDecodeError("unsupported_sample_rate",
                                   f"{label}: sample rate {orig_rate} Hz is below {MIN_SAMPLE_RATE} Hz")
        if max_seconds is not None and declared is not None and declared > max_seconds:
            raise AudioDecodeError("too_long", f"{label}: its header declares {declared:.1f} s > {max_seconds} s")
        info = StreamInfo(orig_sample_rate=orig_rate, orig_channels=orig_channels, codec=ctx.name or "unknown")
    except BaseException:
        container.close()
        raise
    return info, _chunks(container, stream, label, declared, max_seconds)


def _chunks(container, stream, label: str, declared: float | None, max_seconds: float | None) -> Iterator[np.ndarray]:
    import av

    ctx = stream.codec_context
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) + 1
    total = 0
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    # float samples may be NaN or ±Inf, which the conversion to 16 bits would turn into noise
    floats = (ctx.format.name if ctx.format else "") in ("flt", "fltp", "dbl", "dblp")
    try:
        try:
            for frame in container.decode(stream):
                if floats and not np.isfinite(frame.to_ndarray()).all():
                    raise AudioDecodeError("non_finite_samples",
                                           f"{label}: NaN or infinite samples after {total / SAMPLE_RATE:.2f} s")
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    total += len(chunk)
                    yield chunk
                if limit is not None and total > limit:
                    raise AudioDecodeError("too_long", f"{label}: longer than {max_seconds} s (decoding stopped)")
            for out in resampler.resample(None):
                chunk = out.to_ndarray().reshape(-1)
                total += len(chunk)
                yield chunk
        except AudioDecodeError:
            raise
        except (av.FFmpegError, ValueError) as err:
            got = total / SAMPLE_RATE
            short = declared is not None and got < declared
            raise AudioDecodeError("truncated" if short else "decode_error",
                                   f"{label}: decoding failed after {got:.2f} s"
                                   + (f" of the {declared:.2f} s its header declares" if short else "")
                                   + f": {err}") from err
        got = total / SAMPLE_RATE
        if declared is not None and got < 0.98 * declared - 0.05:
            raise AudioDecodeError("truncated", f"{label}: {got:.2f} s decoded, its header declares {declared:.2f} s")
    finally:
        container.close()


def decode(source: str | os.PathLike | BinaryIO, *, name: str | None = None,
           max_seconds: float | None = None) -> DecodedAudio:
    """Decode the first audio stream of ``source`` (a path or a binary file object) whole.

    For files of any length prefer :func:`stream_decode` (the build does): this holds the whole
    recording in memory as float32 (4 bytes per sample, 230 MB per hour)."""
    info, chunks = stream_decode(source, name=name, max_seconds=max_seconds)
    parts = list(chunks)
    # one float32 array filled chunk by chunk: no int16 copy of the whole, no second float copy
    pcm = np.empty(sum(map(len, parts)), dtype=np.float32)
    pos = 0
    for i, chunk in enumerate(parts):
        np.multiply(chunk, 1.0 / 32768.0, out=pcm[pos:pos + len(chunk)], casting="unsafe")
        pos += len(chunk)
        parts[i] = None  # freed as it is copied
    return DecodedAudio(pcm=pcm, orig_sample_rate=info.orig_sample_rate, orig_channels=info.orig_channels,
                        codec=info.codec)
