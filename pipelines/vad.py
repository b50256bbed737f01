"""Silero VAD over a recording read in windows, so memory does not grow with its length.

faster-whisper's ``get_speech_timestamps(audio)`` needs the whole recording as one float32
array and builds a second array of the same size (each 512-sample window with 64 samples of
context) before running the model on it. Here the recording is read by span (``load(a, b)``)
``window`` model windows at a time, and the model runs on each block with its LSTM state
(``h``, ``c``) and the last 64 samples of the previous window carried over: exactly what
faster-whisper does inside one call, whose ``SileroVADModel`` also runs in blocks of 10,000
windows with the state carried. The speech probabilities are therefore the same, whatever the
block size (``tests/pipelines/test_vad.py`` checks against faster-whisper on a whole array).

The probabilities (one float per 32 ms: 450,000 for 4 hours, 1.8 MB) are then turned into speech
regions by :func:`_regions_from_probs`, faster-whisper 1.2's own state machine (from
``faster_whisper/vad.py``, itself adapted from snakers4/silero-vad), copied because faster-whisper
computes it inside the function that holds the whole array.
"""
from __future__ import annotations

import numpy as np

from corpus.schema import SAMPLE_RATE

WINDOW = 512              # samples per model window (32 ms)
CONTEXT = 64              # samples of the previous window the model sees with each window
BLOCK_WINDOWS = 10_000    # windows per model call, faster-whisper's own batch (320 s of audio)


def speech_probabilities(load, n_samples: int, *, block_windows: int = BLOCK_WINDOWS) -> np.ndarray:
    """Silero speech probability of every 512-sample window of a recording read by span.

    ``load(a, b)``: float32 samples a..b (b may pass the end; fewer samples come back). The
    recording is zero-padded to whole windows as faster-whisper pads it (always at least one
    sample of padding, so a length that is a multiple of 512 gets a last window of zeros)."""
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    n_windows = n_samples // WINDOW + 1
    h = np.zeros((1, 1, 128), dtype=np.float32)
    c = np.zeros((1, 1, 128), dtype=np.float32)
    previous = np.zeros(CONTEXT, dtype=np.float32)
    out = np.empty(n_windows, dtype=np.float32)
    for w0 in range(0, n_windows, block_windows):
        w1 = min(w0 + block_windows, n_windows)
        block = np.zeros((w1 - w0) * WINDOW, dtype=np.float32)
        got = load(w0 * WINDOW, min(w1 * WINDOW, n_samples))
        block[:len(got)] = got
        windows = block.reshape(-1, WINDOW)
        context = np.concatenate([previous[None], windows[:-1, -CONTEXT:]], axis=0)
        previous = windows[-1, -CONTEXT:].copy()
        probs, h, c = model.session.run(None, {"input": np.concatenate([context, windows], axis=1), "h": h, "c": c})
        out[w0:w1] = np.asarray(probs).reshape(-1)
    return out


def speech_regions(load, n_samples: int, *, threshold: float = 0.5, min_silence_ms: int = 300,
                   min_speech_ms: int = 250, block_windows: int = BLOCK_WINDOWS) -> list[tuple[float, float]]:
    """Speech regions (seconds), unpadded: the same as :func:`pipelines.asr.speech_timestamps` on
    the whole array, computed from the recording read ``block_windows`` windows at a time."""
    probs = speech_probabilities(load, n_samples, block_windows=block_windows)
    chunks = _regions_from_probs(probs, n_samples, threshold=threshold, min_silence_ms=min_silence_ms,
                                 min_speech_ms=min_speech_ms)
    return [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in chunks]


def _regions_from_probs(speech_probs: np.ndarray, audio_length_samples: int, *, threshold: float,
                        min_silence_ms: int, min_speech_ms: int, speech_pad_ms: int = 0,
                        max_speech_duration_s: float = float("inf"),
                        neg_threshold: float | None = None) -> list[tuple[int, int]]:
    """faster-whisper 1.2's ``get_speech_timestamps`` after its model call, unchanged in logic:
    (start, end) sample indices of the speech chunks."""
    sampling_rate, window_size_samples = SAMPLE_RATE, WINDOW
    min_speech_samples = sampling_rate * min_speech_ms / 1000
    speech_pad_samples = sampling_rate * speech_pad_ms / 1000
    max_speech_samples = sampling_rate * max_speech_duration_s - window_size_samples - 2 * speech_pad_samples
    min_silence_samples = sampling_rate * min_silence_ms / 1000
    min_silence_samples_at_max_speech = sampling_rate * 98 / 1000
    triggered = False
    speeches: list[dict] = []
    current_speech: dict = {}
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    temp_end = 0                  # potential segment end (tolerating some silence)
    prev_end = next_start = 0     # potential limits when the maximum segment size is reached
    for i, speech_prob in enumerate(speech_probs):
        if (speech_prob >= threshold) and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = window_size_samples * i
        if (speech_prob >= threshold) and not triggered:
            triggered = True
            current_speech["start"] = window_size_samples * i
            continue
        if triggered and (window_size_samples * i) - current_speech["start"] > max_speech_samples:
            if prev_end:
                current_speech["end"] = prev_end
                speeches.append(current_speech)
                current_speech = {}
                if next_start < prev_end:
                    triggered = False
                else:
                    current_speech["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                current_speech["end"] = window_size_samples * i
                speeches.append(current_speech)
                current_speech = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if (speech_prob < neg_threshold) and triggered:
            if not temp_end:
                temp_end = window_size_samples * i
            if (window_size_samples * i) - temp_end > min_silence_samples_at_max_speech:
                prev_end = temp_end
            if (window_size_samples * i) - temp_end < min_silence_samples:
                continue
            current_speech["end"] = temp_end
            if (current_speech["end"] - current_speech["start"]) > min_speech_samples:
                speeches.append(current_speech)
            current_speech = {}
            prev_end = next_start = temp_end = 0
            triggered = False
            continue
    if current_speech and (audio_length_samples - current_speech["start"]) > min_speech_samples:
        current_speech["end"] = audio_length_samples
        speeches.append(current_speech)
    for i, speech in enumerate(speeches):
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - speech_pad_samples))
        if i != len(speeches) - 1:
            silence_duration = speeches[i + 1]["start"] - speech["end"]
            if silence_duration < 2 * speech_pad_samples:
                speech["end"] += int(silence_duration // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - silence_duration // 2))
            else:
                speech["end"] = int(min(audio_length_samples, speech["end"] + speech_pad_samples))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - speech_pad_samples))
        else:
            speech["end"] = int(min(audio_length_samples, speech["end"] + speech_pad_samples))
    return [(s["start"], s["end"]) for s in speeches]
