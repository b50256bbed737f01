"""What the build hands between nodes and how it asks Ray to place stages (no cluster needed)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from corpus.audio import decode
from pipelines.build import _placement, pcm_to_int16


def test_clips_travel_as_int16_exactly(tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    sf.write(buf, (rng.standard_normal(44100 * 3) * 0.3).clip(-1, 1), 44100, format="WAV", subtype="PCM_16")
    pcm = decode(io.BytesIO(buf.getvalue())).pcm  # resampled to 16 kHz: still int16 / 32768
    shipped = pcm_to_int16(pcm)
    assert shipped.dtype == np.int16 and shipped.nbytes * 2 == pcm.nbytes
    back = np.frombuffer(shipped.tobytes(), dtype=np.int16).astype(np.float32) / 32768.0  # what LabelStage does
    assert back.dtype == np.float32 and np.array_equal(back, pcm)
    with pytest.raises(ValueError, match="int16"):
        pcm_to_int16(pcm * np.float32(0.999))


def test_placement_options():
    assert _placement({}) == {}
    assert _placement({"asr": 1.0}) == {"resources": {"asr": 1.0}}
