"""The label stage: one faster-whisper model per worker labels every segment of a recording.

A worker streams the recording's clips (written once at ingest, :mod:`pipelines.recording`) from
the store and labels them one batch of clips per call (:data:`LABEL_CHUNK_BATCHES`), so its memory
follows the batch, not the recording's hours of speech. Kept in
``work/labels/<label_key>/<recording_id>``: one row per segment (its times and :class:`Label`).
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from corpus.schema import SAMPLE_RATE, Label, Recording, Segment, segment_id
from corpus.store import open_store
from pipelines.stages import Resources, Stage

# batches of one recording labelled per call. faster-whisper's batched call holds every clip's
# features and decoder state until it returns (measured: about 7 MB per clip with tiny.en on the
# CPU), so one batch per call keeps a label actor's peak flat whatever the recording's speech:
# 30 min of dense speech peaked at 1,179 MB with 1 batch per call, 1,603 MB with 8 (same labels)
LABEL_CHUNK_BATCHES = 1


class LabelStage(Stage):
    """Stage (actors: each holds one model): a recording's clips → its segments with their labels.

    ``model``: :class:`pipelines.asr.WhisperLabeler` arguments; ``clips``: where the clips parts are
    (``{"store", "prefix", "endpoint_url"}``); ``label_key``: names the model, decode and
    segmentation parameters, so changing them labels again."""

    name = "label"
    unit = "audio-s"

    def __init__(self, model: dict, clips: dict, label_key: str, resources: Resources):
        self.model = model
        self.clips = clips
        self.work = f"labels/{label_key}"
        self._resources = resources
        self.labeler = None

    def resources(self) -> Resources:
        return self._resources

    def weight(self, rec: Recording) -> float:
        return rec.duration

    def setup(self) -> None:
        from pipelines.asr import WhisperLabeler

        self.labeler = WhisperLabeler(**self.model)
        self.store = open_store(self.clips["store"], endpoint_url=self.clips.get("endpoint_url"))

    def process(self, batch: list[Recording]) -> list[Recording]:
        return [self._label_recording(rec) for rec in batch]

    def _label_recording(self, rec: Recording) -> Recording:
        from pipelines.recording import clip_to_float, iter_clips

        # a whole number of batches per call, so every batch holds the same clips as in one call
        chunk = max(1, self.labeler.batch_size) * LABEL_CHUNK_BATCHES
        segments: list[Segment] = []
        stored = iter_clips(self.store, f"{self.clips['prefix']}/{rec.recording_id}.parquet")
        while piece := list(itertools.islice(stored, chunk)):
            spans = [(start, end) for start, end, _ in piece]
            labels = self._label_chunk(spans, [clip_to_float(pcm) for _, _, pcm in piece], rec.language)
            segments += [Segment(segment_id(rec.recording_id, start, end), rec.recording_id, start, end, label)
                         for (start, end), label in zip(spans, labels)]
        return replace(rec, segments=segments)

    def _label_chunk(self, segments: list[tuple[float, float]], audio: list[np.ndarray],
                     language: str | None) -> list[Label]:
        pcm = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
        # the clips were concatenated in order: give the labeler their positions in that array
        clips, offset = [], 0
        for clip in audio:
            clips.append((offset / SAMPLE_RATE, (offset + len(clip)) / SAMPLE_RATE))
            offset += len(clip)
        labels = self.labeler.label(pcm, clips, language=language)
        out = []
        for (start, _end), (c_start, _), label in zip(segments, clips, labels):
            shift = start - c_start
            words = [{**w, "start": round(w["start"] + shift, 3), "end": round(w["end"] + shift, 3)}
                     for w in label.pop("words")]
            out.append(Label.from_dict({**label, "words": words}))
        return out

    def encode(self, rec: Recording) -> list[dict]:
        rows = [{"segment_id": s.segment_id, "recording_id": rec.recording_id, "start": s.start, "end": s.end,
                 **s.label.to_dict()} for s in rec.segments]
        return rows or [{"segment_id": None, "recording_id": rec.recording_id}]  # labelled: no segments

    def decode(self, rec: Recording, rows: list[dict]) -> Recording:
        return replace(rec, segments=[Segment(r["segment_id"], r["recording_id"], r["start"], r["end"],
                                              Label.from_dict(r)) for r in rows if r.get("segment_id")])
