"""Decode once, in bounded memory: the streamed decode, the spool, windowed VAD and the clips part
give exactly what the whole-array functions give (ids, fingerprints, levels, VAD regions, FLAC)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from corpus.audio import decode
from reference.gen_audio import generate
from corpus.schema import pcm_sha256
from corpus.shards import encode_flac
from corpus.store import open_store
from pipelines.asr import speech_timestamps
from pipelines.config import IngestConfig, SegmentConfig
from pipelines.fingerprint import fingerprint
from pipelines.ingest import Ingest, rms_dbfs
from pipelines.recording import clip_to_float, cut_clips, decode_to_spool, read_clips, spool_rms_dbfs
from pipelines.segment import pack_segments
from pipelines.sources import list_sources
from pipelines.vad import speech_regions


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """One ~3-minute recording (three gen-audio files with silence between), 44.1 kHz stereo FLAC:
    resampled and downmixed, as real sources are."""
    out = tmp_path_factory.mktemp("rec")
    generate(out / "gen", minutes=3.0, seed=5)
    parts = []
    for f in sorted((out / "gen").glob("*-00*.*"))[:3]:
        parts += [decode(f).pcm, np.zeros(16000 * 7, np.float32)]
    pcm16 = np.concatenate(parts)
    t = np.arange(int(len(pcm16) * 44100 / 16000)) * 16000 / 44100
    pcm44 = np.interp(t, np.arange(len(pcm16)), pcm16).astype(np.float32)
    path = out / "long.flac"
    sf.write(path, np.stack([pcm44, 0.5 * pcm44], axis=1), 44100, format="FLAC", subtype="PCM_16")
    return path


def test_streamed_decode_gives_the_same_id_level_and_fingerprint(long_file, tmp_path):
    whole = decode(long_file).pcm
    got = decode_to_spool(long_file, tmp_path / "pcm", name="long", max_seconds=None)
    try:
        assert got.spool.samples == len(whole)
        assert np.array_equal(got.spool.load(0, got.spool.samples), whole)
        assert got.pcm_sha256 == pcm_sha256(whole)
        assert spool_rms_dbfs(got.spool) == rms_dbfs(whole)
        from pipelines.fingerprint import fingerprint_spans

        assert fingerprint_spans(got.spool.load, got.spool.samples) == fingerprint(whole)
        # spans past either end are clamped, as slicing the array is
        assert np.array_equal(got.spool.load(len(whole) - 10, len(whole) + 500), whole[-10:])
    finally:
        got.spool.close()


@pytest.mark.parametrize("block", [37, 1000])
def test_windowed_vad_equals_faster_whispers_on_the_whole_array(long_file, block):
    whole = decode(long_file).pcm
    expected = speech_timestamps(whole, threshold=0.5)
    got = speech_regions(lambda a, b: whole[a:b], len(whole), threshold=0.5, block_windows=block)
    assert got == expected and len(got) >= 3
    # a length that is a whole number of windows (faster-whisper then pads one window of zeros)
    cut = whole[:512 * (len(whole) // 512)]
    assert speech_regions(lambda a, b: cut[a:b], len(cut), block_windows=block) == speech_timestamps(cut)


def test_ingest_writes_each_recordings_clips_once_and_exactly(long_file, tmp_path):
    files, _ = list_sources([SimpleNamespace(uri=str(long_file.parent), include="long.*", domain="d",
                                             language="en", licence="x")])
    seg = SegmentConfig().model_dump()
    stage = Ingest(**IngestConfig().model_dump(), segment=seg, clips_store=str(tmp_path / "store"),
                   clips_prefix="work/clips/k", vad_block_windows=200)
    row = stage(files[0].to_dict())
    assert row["status"] == "ok", row["detail"]
    whole = decode(long_file).pcm
    assert row["recording_id"] == pcm_sha256(whole)[:20] and row["fingerprint"] == fingerprint(whole).to_bytes()
    segments = pack_segments(speech_timestamps(whole, threshold=seg["vad_threshold"]), len(whole) / 16000,
                             min_seconds=seg["min_seconds"], max_seconds=seg["max_seconds"], max_gap=seg["max_gap"],
                             pad=seg["pad"])
    clips = read_clips(open_store(tmp_path / "store"), f"work/clips/k/{row['recording_id']}.parquet")
    assert [(a, b) for a, b, _ in clips] == segments and len(segments) >= 3
    for a, b, pcm in clips:
        piece = whole[round(a * 16000):round(b * 16000)]
        assert pcm.dtype == np.int16 and np.array_equal(clip_to_float(pcm), piece)   # what the labeler reads
        assert encode_flac(clip_to_float(pcm)) == encode_flac(piece)                 # what the release stores


def test_a_recording_without_speech_gets_an_empty_clips_part(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "raw").mkdir()
    sf.write(tmp_path / "raw" / "hum.wav", (0.05 * np.sin(np.arange(16000 * 6) / 16000 * 2 * np.pi * 50)
                                           + 0.001 * rng.standard_normal(16000 * 6)).astype(np.float32),
             16000, subtype="PCM_16")
    files, _ = list_sources([SimpleNamespace(uri=str(tmp_path / "raw"), domain="d", language="en", licence="x")])
    stage = Ingest(**IngestConfig().model_dump(), segment=SegmentConfig().model_dump(),
                   clips_store=str(tmp_path / "store"), clips_prefix="c")
    row = stage(files[0].to_dict())
    assert row["status"] == "ok"
    assert read_clips(open_store(tmp_path / "store"), f"c/{row['recording_id']}.parquet") == []


def test_cut_clips_gives_the_recordings_samples_for_segments_and_trimmed_pieces():
    rng = np.random.default_rng(3)
    whole = rng.integers(-20000, 20000, 16000 * 12, dtype=np.int16)
    # the last clip ends 0.4 ms past the recording (segment ends are whole milliseconds): its samples stop there
    stored = [(a, b, whole[round(a * 16000):round(b * 16000)]) for a, b in ((1.0, 3.5), (5.25, 9.0), (11.5, 12.0004))]
    wanted = [(1.0, 3.5), (1.2345, 2.0), (5.25, 6.001), (8.5, 9.0), (4.0, 4.5), (3.0, 5.5), (11.5, 12.0004), (11.9, 12.0004)]
    got = cut_clips(iter(stored), wanted)
    assert set(got) == {(1.0, 3.5), (1.2345, 2.0), (5.25, 6.001), (8.5, 9.0), (11.5, 12.0004), (11.9, 12.0004)}
    for (a, b), pcm in got.items():
        assert np.array_equal(pcm, whole[round(a * 16000):round(b * 16000)])


@pytest.mark.slow
def test_labelling_a_recording_in_chunks_gives_the_decoding_of_one_call(long_file, tmp_path, monkeypatch):
    """The label actor's memory follows a chunk of clips, not the recording: chunks of whole
    batches give the same texts, confidences and words as labelling every clip in one call."""
    from corpus.schema import Recording
    from pipelines import label as label_module
    from pipelines.recording import write_clips
    from pipelines.stages import Resources

    got = decode_to_spool(long_file, tmp_path / "pcm", name="long", max_seconds=None)
    try:
        whole = got.spool.load(0, got.spool.samples)
        # short segments, so that this recording has more clips than one batch of 2
        segments = pack_segments(speech_timestamps(whole), len(whole) / 16000, min_seconds=1.0, max_seconds=4.0,
                                 max_gap=0.3, pad=0.1)
        store = open_store(tmp_path / "store")
        write_clips(store, "c/rec.parquet", got.spool, segments, str(tmp_path))
    finally:
        got.spool.close()
    assert len(segments) > 5
    stage = label_module.LabelStage({"model": "tiny.en", "device": "cpu", "batch_size": 2, "cpu_threads": 2},
                                    {"store": str(tmp_path / "store"), "prefix": "c"}, "k", Resources())
    stage.setup()
    rec = Recording(file_key="f", source_uri="s", key="k", uri="u", domain="d", language="en", recording_id="rec")

    def labels() -> list[dict]:
        (out,) = stage.process([rec])
        return [{"start": s.start, "end": s.end, **s.label.to_dict()} for s in out.segments]

    monkeypatch.setattr(label_module, "LABEL_CHUNK_BATCHES", 1)  # chunks of 2 clips
    chunked = labels()
    assert labels() == chunked  # deterministic
    monkeypatch.setattr(label_module, "LABEL_CHUNK_BATCHES", 10 ** 6)  # every clip in one call
    whole = labels()
    assert [(label["start"], label["end"]) for label in chunked] == segments
    # the same decoding: texts, confidences and words; only a word's time may move, where
    # faster-whisper clips a long first word by the previous clip's last speech in the same call
    fields = ("text", "avg_logprob", "no_speech_prob", "compression_ratio")
    assert [[c[k] for k in fields] for c in chunked] == [[w[k] for k in fields] for w in whole]
    for c, w in zip(chunked, whole):
        assert [(x["word"], x["probability"]) for x in c["words"]] == [(x["word"], x["probability"]) for x in w["words"]]
        assert all(abs(x["start"] - y["start"]) <= 0.5 and abs(x["end"] - y["end"]) <= 0.5
                   for x, y in zip(c["words"], w["words"]))


def test_a_recording_loads_one_span_from_its_stored_clips(tmp_path):
    from corpus.schema import Recording
    from pipelines.recording import PcmSpool, StoredClips, write_clips

    rng = np.random.default_rng(5)
    whole = rng.integers(-20000, 20000, 16000 * 10, dtype=np.int16)
    spool = PcmSpool(tmp_path / "pcm")
    spool.append(whole)
    store = open_store(tmp_path / "store")
    try:
        write_clips(store, "c/r.parquet", spool, [(0.5, 3.0), (4.0, 9.5)], str(tmp_path))
    finally:
        spool.close()
    rec = Recording(file_key="f", source_uri="s", key="k", uri="u", domain="d", recording_id="r")
    with pytest.raises(RuntimeError, match="no audio attached"):
        rec.load(1.0, 2.0)
    rec.audio = StoredClips(store, "c/r.parquet")
    assert np.array_equal(rec.load(4.5, 6.25), clip_to_float(whole[72000:100000]))
    with pytest.raises(KeyError, match="not inside one clip"):
        rec.load(2.5, 4.5)  # spans two clips: silence between them was never stored
