"""The ASR adapter: the only module that imports faster-whisper (its Silero VAD and Whisper).

``WhisperLabeler.label(audio, clips)`` decodes many clips of one recording in batches with
``BatchedInferencePipeline``: the clips' samples are concatenated and passed with their
boundaries as ``clip_timestamps``; each clip comes back as one result (checked one-to-one),
with every confidence field faster-whisper gives: avg_logprob, no_speech_prob,
compression_ratio, temperature, word probabilities. Labels of a recording do not depend on any
other recording, so a resumed build labels the same way as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpus.schema import SAMPLE_RATE
from pipelines import language as langid
from pipelines.models import OFFLINE_MODELS, resolve_model  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except (ImportError, RuntimeError):
        return False


def choose_device(device: str, compute_type: str) -> tuple[str, str]:
    """auto → CUDA float16 when a GPU is present, CPU int8 otherwise."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise RuntimeError("device 'cuda' asked for, but CTranslate2 sees no CUDA device")
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def speech_timestamps(pcm: np.ndarray, *, threshold: float = 0.5, min_silence_ms: int = 300,
                      min_speech_ms: int = 250) -> list[tuple[float, float]]:
    """Speech regions (seconds) found by faster-whisper's Silero VAD, unpadded."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=threshold, min_silence_duration_ms=min_silence_ms,
                         min_speech_duration_ms=min_speech_ms, speech_pad_ms=0)
    chunks = get_speech_timestamps(np.ascontiguousarray(pcm, dtype=np.float32), options)
    return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks]


CLIP_ALIGN = SAMPLE_RATE // 4  # 0.25 s: exact in binary and a whole number of 10 ms


def _seconds_of(samples: int) -> float:
    """The float of ``samples / 16000`` that faster-whisper's ``int(t * 16000)`` turns back into
    ``samples`` (the nearest float can fall just below and lose the clip's last sample)."""
    t = samples / SAMPLE_RATE
    while int(t * SAMPLE_RATE) < samples:
        t = float(np.nextafter(t, np.inf))
    return t


def default_beam_size(multilingual: bool) -> int:
    """The first pass's beam width when the config names none: 5 (faster-whisper's own default) for a
    multilingual model, whose language ID catches foreign speech; greedy for an English-only one, whose
    only sign of foreign speech is low word probabilities, which beam search raises (the fixtures'
    ru/es/fr/de speech with tiny.en: mean word probability 0.17-0.39 greedy, 0.32-0.60 with beam 5,
    "Thank you very much." for French). Measured for base on calibration gold: docs/PERFORMANCE.md."""
    return 5 if multilingual else 1


@dataclass
class WhisperLabeler:
    """A faster-whisper model loaded once; ``label()`` many recordings with it."""

    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    batch_size: int = 8
    beam_size: int | None = None  # None: default_beam_size(the model's languages), known once it is loaded
    word_timestamps: bool = True
    cpu_threads: int = 0
    # second pass: clips whose first-pass avg_logprob lies in this band are decoded again, alone,
    # with beam search and temperature fallback; None switches it off
    second_pass_band: tuple[float, float] | None = None
    second_pass_beam_size: int = 5
    second_pass_temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    # multilingual models: detect the spoken language of every clip (pipelines.language); a source
    # that declares 'auto' (or no language) is decoded clip by clip in the language detected
    language_id: bool = True
    # ... and of every phrase (words between pauses, at least phrase_min_seconds long) of a clip
    # with more than one: a foreign sentence inside an English segment (pipelines.trim cuts it out)
    phrase_language_id: bool = True
    phrase_min_seconds: float = 1.0
    # agreement (pipelines.agreement): a second model decodes the clips the first pass is unsure of
    # (mean word probability below agreement_max_word_prob; 'all': every clip), greedily (the shipped
    # confidence was fitted on greedy second opinions); None: off
    agreement_model: str | None = None
    agreement_when: str = "uncertain"
    agreement_max_word_prob: float = 0.8

    def __post_init__(self):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.model_path = resolve_model(self.model)
        self.device, self.compute_type = choose_device(self.device, self.compute_type)
        try:
            self._model = WhisperModel(self.model_path, device=self.device, compute_type=self.compute_type,
                                       cpu_threads=self.cpu_threads, local_files_only=True)
        except Exception as err:  # noqa: BLE001 - CTranslate2/HF raise many types; re-raised with the name
            raise RuntimeError(f"cannot load faster-whisper model {self.model!r} ({self.model_path}): {err}") from err
        self._pipeline = BatchedInferencePipeline(self._model)
        self.multilingual = bool(self._model.model.is_multilingual)
        if self.beam_size is None:
            self.beam_size = default_beam_size(self.multilingual)
        self.model_id = f"faster-whisper:{Path(self.model_path).name if Path(self.model_path).is_dir() else self.model}"
        self.decode_params = {"batch_size": self.batch_size, "beam_size": self.beam_size, "temperature": 0.0,
                              "without_timestamps": True, "word_timestamps": self.word_timestamps,
                              "compute_type": self.compute_type, "condition_on_previous_text": False}
        if self.second_pass_band is not None:
            self.decode_params["second_pass"] = {"band": list(self.second_pass_band),
                                                 "beam_size": self.second_pass_beam_size,
                                                 "temperatures": list(self.second_pass_temperatures)}
        self.calls = 0
        self.clips_decoded = 0
        self.second_passes = 0
        self.languages_detected = 0
        self.language_seconds = 0.0  # of which phrase_language_seconds on phrases
        self.phrase_language_seconds = 0.0
        self.second_opinions = 0
        self._second: WhisperLabeler | None = None
        if self.agreement_model is not None and self.agreement_model != self.model:
            if self.agreement_when not in ("uncertain", "all"):
                raise ValueError(f"agreement_when must be 'uncertain' or 'all', got {self.agreement_when!r}")
            self._second = WhisperLabeler(model=self.agreement_model, device=self.device, compute_type=self.compute_type,
                                          batch_size=self.batch_size, beam_size=1, word_timestamps=False,
                                          cpu_threads=self.cpu_threads, language_id=False)
            self.decode_params["agreement"] = {"model": self._second.model_id, "when": self.agreement_when,
                                               "max_word_prob": self.agreement_max_word_prob}

    def label(self, pcm: np.ndarray, clips: list[tuple[float, float]], language: str | None = None) -> list[dict]:
        """One label dict per clip (start, end in seconds of ``pcm``), in the clips' order.

        ``language``: the source's declared language; None or 'auto': detected per clip (a
        multilingual model) or 'en' (an English-only one)."""
        if not clips:
            return []
        audio = [np.ascontiguousarray(pcm[round(a * SAMPLE_RATE):round(b * SAMPLE_RATE)], dtype=np.float32)
                 for a, b in clips]
        declared = None if language in (None, "auto") else language
        detected = self.languages(audio) if self.multilingual and self.language_id else None
        if not self.multilingual:
            decode_as = ["en"] * len(clips)
        elif declared is not None or detected is None:
            decode_as = [declared] * len(clips)  # None: faster-whisper detects once for the batch
        else:
            decode_as = [d[0] for d in detected]
        results: list[dict | None] = [None] * len(clips)
        for lang in dict.fromkeys(decode_as):
            idx = [i for i, x in enumerate(decode_as) if x == lang]
            for i, result in zip(idx, self._decode([audio[i] for i in idx], lang)):
                results[i] = result
        self.calls += 1
        self.clips_decoded += len(clips)
        for i, ((start, _end), result) in enumerate(zip(clips, results)):
            result["words"] = [{**w, "start": round(w["start"] + start, 3), "end": round(w["end"] + start, 3)}
                               for w in result["words"]]
            result["decode_language"] = decode_as[i] or result["language"]
            if detected is not None:
                result["language"], result["language_probability"] = detected[i][0], round(detected[i][1], 4)
                top = dict(sorted(detected[i][2].items(), key=lambda kv: -kv[1])[:5])
                if declared is not None:
                    top[declared] = detected[i][2].get(declared, 0.0)
                result["language_probs"] = json.dumps({k: round(v, 4) for k, v in top.items()})
        if self.second_pass_band is not None:
            lo, hi = self.second_pass_band
            for i, (start, _end) in enumerate(clips):
                first = results[i]
                if first["avg_logprob"] is not None and lo <= first["avg_logprob"] <= hi:
                    second = self._second_pass(audio[i], shift=start, language=decode_as[i])
                    second.update({k: first.get(k) for k in ("language", "language_probability", "language_probs",
                                                            "decode_language")})
                    results[i] = self._pick(first, second)
        for clip, result in zip(audio, results):
            rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64)))) if clip.size else 0.0
            result["rms_dbfs"] = round(20 * np.log10(max(rms, 1e-10)), 2)
        if self._second is not None:
            self._agree(pcm, clips, results, [d or r["language"] for d, r in zip(decode_as, results)])
        if detected is not None and self.phrase_language_id:
            for result in results:
                result["phrase_languages"] = self._phrase_languages(pcm, result["words"], declared)
        return results

    def _agree(self, pcm, clips, results, languages: list[str]) -> None:
        """A second opinion (agreement_cer) on the clips the first pass is unsure of, in their language."""
        from pipelines import agreement

        for result in results:
            result["agreement_cer"] = None
        todo = [i for i, r in enumerate(results)
                if agreement.needs_second_opinion(r, when=self.agreement_when, max_word_prob=self.agreement_max_word_prob)
                # an English-only second opinion says nothing about other languages
                and (self._second.multilingual or languages[i] == "en")]
        for lang in dict.fromkeys(languages[i] for i in todo):
            idx = [i for i in todo if languages[i] == lang]
            second = self._second.label(pcm, [clips[i] for i in idx], language=lang)
            self.second_opinions += len(idx)
            for i, other in zip(idx, second):
                results[i]["agreement_cer"] = agreement.disagreement(results[i]["text"], other["text"])
                results[i]["agreement_text"] = other["text"]

    def _phrase_languages(self, pcm: np.ndarray, words: list[dict], declared: str | None) -> str | None:
        """JSON [[first word, last word + 1, language, probability, P(declared)], …] of a clip's phrases
        (P(declared): the probability of the source's declared language; None for 'auto')."""
        spans = [(a, b) for a, b in langid.phrases(words)
                 if words[b - 1]["end"] - words[a]["start"] >= self.phrase_min_seconds]
        if len(langid.phrases(words)) < 2 or not spans:
            return None
        audio = [pcm[max(0, round((words[a]["start"] - 0.05) * SAMPLE_RATE)):round((words[b - 1]["end"] + 0.05) * SAMPLE_RATE)]
                 for a, b in spans]
        import time

        start = time.perf_counter()
        found = self.languages(audio)
        self.phrase_language_seconds += time.perf_counter() - start
        return json.dumps([[a, b, lang, round(prob, 4), round(probs.get(declared, 0.0), 4) if declared else None]
                           for (a, b), (lang, prob, probs) in zip(spans, found)])

    def languages(self, clips: list[np.ndarray]) -> list[tuple[str, float, dict[str, float]]]:
        """The spoken language of each 16 kHz clip (multilingual models only)."""
        import time

        start = time.perf_counter()
        self.languages_detected += len(clips)
        try:
            return langid.detect(self._model, clips)
        finally:
            self.language_seconds += time.perf_counter() - start

    def _decode(self, clips: list[np.ndarray], language: str | None) -> list[dict]:
        """Clips decoded in batches, in one language; word times relative to each clip's start."""
        pieces, bounds, offset = [], [], 0
        for clip in clips:
            # each clip starts at a multiple of 0.25 s (zeros between, in no clip): faster-whisper
            # turns clip times into samples with int(t * 16000) and rounds word times to 10 ms of
            # this array's clock, both exact on that grid, so a clip's word times do not shift with
            # the clips before it (faster-whisper may still clip a long first word by the previous
            # clip's last speech in the same call)
            pad = -offset % CLIP_ALIGN
            pieces.append(np.zeros(pad, dtype=np.float32))
            offset += pad
            pieces.append(clip)
            bounds.append((offset, offset + len(clip)))
            offset += len(clip)
        # 10 ms of silence after the last clip: faster-whisper rounds clip bounds to samples and
        # asserts that the clips never add up to more than the audio
        pieces.append(np.zeros(SAMPLE_RATE // 100, dtype=np.float32))
        audio = np.ascontiguousarray(np.concatenate(pieces), dtype=np.float32)
        segments, info = self._pipeline.transcribe(
            audio, language=language, clip_timestamps=[{"start": a / SAMPLE_RATE, "end": _seconds_of(b)} for a, b in bounds],
            batch_size=self.batch_size, beam_size=self.beam_size, temperature=0.0, without_timestamps=True,
            word_timestamps=self.word_timestamps, vad_filter=False, log_progress=False)
        by_seek: dict[int, list] = {}
        for seg in segments:  # a lazy generator: consumed here, inside the caller's error handling
            by_seek.setdefault(seg.seek, []).append(seg)
        results = []
        for a, _b in bounds:
            got = by_seek.pop(int(a / SAMPLE_RATE * self._model.frames_per_second), [])
            if len(got) > 1:
                raise RuntimeError(f"faster-whisper returned {len(got)} results for one clip at {a / SAMPLE_RATE:.3f} s")
            results.append(self._result(got[0] if got else None, shift=-a / SAMPLE_RATE, info=info))
        if by_seek:
            raise RuntimeError(f"faster-whisper returned results for unknown clips (seeks {sorted(by_seek)})")
        return results

    def _second_pass(self, clip: np.ndarray, *, shift: float, language: str | None) -> dict:
        """One clip decoded alone: beam search, temperature fallback (faster-whisper's own thresholds)."""
        self.second_passes += 1
        segments, info = self._model.transcribe(
            clip, language=language, beam_size=self.second_pass_beam_size,
            temperature=list(self.second_pass_temperatures), without_timestamps=True,
            condition_on_previous_text=False, word_timestamps=self.word_timestamps, vad_filter=False)
        segments = list(segments)
        if not segments:
            return self._result(None, shift=shift, info=info)
        text = " ".join(seg.text.strip() for seg in segments).strip()
        weights = [max(1, len(seg.tokens)) for seg in segments]
        from faster_whisper.transcribe import get_compression_ratio  # the model's own definition

        merged = {
            "text": text,
            "avg_logprob": float(np.average([seg.avg_logprob for seg in segments], weights=weights)),
            "no_speech_prob": float(max(seg.no_speech_prob for seg in segments)),
            "compression_ratio": float(get_compression_ratio(text)) if text else 0.0,
            "temperature": float(max(seg.temperature or 0.0 for seg in segments)),
            "words": [{"word": w.word, "start": round(float(w.start + shift), 3), "end": round(float(w.end + shift), 3),
                       "probability": round(float(w.probability), 4)} for seg in segments for w in (seg.words or [])],
        }
        base = self._result(None, shift=shift, info=info)
        return {**base, **merged}

    @staticmethod
    def _pick(first: dict, second: dict) -> dict:
        """Keep both; use the second pass when it is more confident."""
        use_second = second["avg_logprob"] is not None and second["avg_logprob"] > first["avg_logprob"]
        chosen = second if use_second else first
        summary = {k: first[k] for k in ("text", "avg_logprob", "no_speech_prob", "compression_ratio", "temperature")}
        other = {k: second[k] for k in ("text", "avg_logprob", "no_speech_prob", "compression_ratio", "temperature")}
        return {**chosen, "pass_used": 2 if use_second else 1,
                "first_pass": json.dumps(summary), "second_pass": json.dumps(other)}

    def _result(self, seg, *, shift: float, info) -> dict:
        base = {"language": info.language, "language_probability": float(info.language_probability or 0.0),
                "model_id": self.model_id, "decode_params": json.dumps(self.decode_params, sort_keys=True),
                "pass_used": 1, "first_pass": None, "second_pass": None}
        if seg is None:  # nothing decoded for this clip
            return {**base, "text": "", "avg_logprob": None, "no_speech_prob": None, "compression_ratio": None,
                    "temperature": 0.0, "words": []}
        words = [{"word": w.word, "start": round(float(w.start + shift), 3), "end": round(float(w.end + shift), 3),
                  "probability": round(float(w.probability), 4)} for w in (seg.words or [])]
        return {**base, "text": seg.text.strip(), "avg_logprob": float(seg.avg_logprob),
                "no_speech_prob": float(seg.no_speech_prob), "compression_ratio": float(seg.compression_ratio),
                "temperature": float(seg.temperature if seg.temperature is not None else 0.0), "words": words}
