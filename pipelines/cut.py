"""The cut stage: a recording's kept segments as the release stores them (FLAC, 16-bit).

The samples come from the recording's clips (written once at ingest; a kept segment is a clip or
a trimmed piece of one, :func:`pipelines.recording.cut_clips`). Only a re-filter may meet a
recording whose clips are gone (the build's work folder deleted): with ``source_fallback`` the
recording is then decoded again from its source, in a bounded child process like ingest.
"""
from __future__ import annotations

import io
from dataclasses import replace

from corpus.audio import decode
from corpus.schema import SAMPLE_RATE, Recording
from corpus.shards import encode_flac
from corpus.store import ObjectNotFound, open_store
from pipelines.stages import Resources, Stage


class CutStage(Stage):
    """Stage (tasks): FLAC for every kept segment of a recording that has none yet."""

    name = "cut"

    def __init__(self, clips: dict, *, placement: dict | None = None, source_fallback: bool = False,
                 read_timeout_s: float = 600.0):
        self.clips = clips  # {"store", "prefix", "endpoint_url"}
        self._resources = Resources(cpus=1, custom=dict(placement or {}))
        self.source_fallback = source_fallback
        self.read_timeout_s = read_timeout_s

    def resources(self) -> Resources:
        return self._resources

    def wants(self, rec: Recording) -> bool:
        return rec.ok and any(seg.kept and seg.flac is None for seg in rec.segments)

    def setup(self) -> None:
        self.store = open_store(self.clips["store"], endpoint_url=self.clips.get("endpoint_url"))

    def process(self, batch: list[Recording]) -> list[Recording]:
        return [self._cut(rec) for rec in batch]

    def _cut(self, rec: Recording) -> Recording:
        from pipelines.recording import StoredClips, clip_to_float

        todo = [seg for seg in rec.segments if seg.kept and seg.flac is None]
        spans = [(seg.start, seg.end) for seg in todo]
        stored = {}
        if self.clips.get("prefix"):  # None: the build's work is not known (a re-filter of an odd release)
            rec.audio = StoredClips(self.store, f"{self.clips['prefix']}/{rec.recording_id}.parquet")
            try:
                stored = rec.audio.spans(spans)
            except ObjectNotFound:
                pass
        if all(span in stored for span in spans):
            audio = {span: clip_to_float(stored[span]) for span in spans}
        elif self.source_fallback:
            pcm = _source_audio(rec.uri, self.clips.get("endpoint_url"), self.read_timeout_s).pcm
            audio = {(a, b): pcm[round(a * SAMPLE_RATE):round(b * SAMPLE_RATE)] for a, b in spans}
        else:
            missing = next(seg for seg in todo if (seg.start, seg.end) not in stored)
            raise RuntimeError(f"segment {missing.segment_id} is not in the clips of recording {rec.recording_id}")
        flacs = {id(seg): encode_flac(audio[(seg.start, seg.end)]) for seg in todo}
        return replace(rec, segments=[replace(seg, flac=flacs[id(seg)]) if id(seg) in flacs else seg
                                      for seg in rec.segments])


def _read_source(uri: str, endpoint_url: str | None):
    parent, _, name = uri.rpartition("/")
    store = open_store(parent, endpoint_url=endpoint_url)
    return decode(io.BytesIO(store.get_bytes(name)), name=uri)


def _source_audio(uri: str, endpoint_url: str | None, timeout: float):
    """A recording decoded from its source, within a wall-clock bound (raises on timeout or crash)."""
    from pipelines.bounded import call_bounded

    return call_bounded(_read_source, uri, endpoint_url, timeout=timeout, what=f"re-reading {uri}")
