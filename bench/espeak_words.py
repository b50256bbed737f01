"""Exact word times of an espeak-ng sentence, from the synthesiser's own word events.

``espeak-ng`` (the CLI ``reference/gen_audio.py`` speaks with) and ``libespeak-ng`` (the library
under it) produce the same samples for the same voice, speed and text; the library also reports,
through its synthesis callback, the sample at which each word starts (``espeakEVENT_WORD``). This
module synthesises the sentence through the library, checks that its audio is the CLI's, and gives
each word's start and end (the next word's start, or the end of speech) in seconds from the start
of the sentence as ``gen_audio._speak`` trims it (espeak-ng's leading zeros cut off).

Used by ``bench/holdout.py`` so that the hold-out's truth carries word times known from synthesis
rather than a sentence's duration spread over its characters.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.text import normalize_text  # noqa: E402
from reference.gen_audio import _SPEECH_THRESHOLD, CLEAN_SR, _trim_speech  # noqa: E402

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END = 0, 1, 5
_RATE = 1


class _Event(ctypes.Structure):  # espeak_EVENT (speak_lib.h)
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


class _Voice(ctypes.Structure):  # espeak_VOICE (speak_lib.h)
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakWords:
    """One initialised libespeak-ng; ``words(text, voice, speed)`` → audio and timed words."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        self._lib = ctypes.CDLL(name)
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
        if rate != CLEAN_SR:
            raise RuntimeError(f"libespeak-ng runs at {rate} Hz, gen_audio expects {CLEAN_SR}")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int]] = []
        self._callback = _Callback(self._collect)  # kept referenced: the library calls it
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            self._events.append((e.type, e.text_position, e.length, e.sample))
            i += 1
        return 0

    def words(self, text: str, voice: str, speed: int) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
        """The sentence's raw audio (float32, as the CLI writes it, less trailing zeros) and its
        normalised words as ``(start_s, end_s, word)`` relative to the trimmed sentence."""
        self._chunks, self._events = [], []
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            # as the CLI does: a name that is no voice file is taken as a language (+variant)
            select = _Voice(languages=voice.encode())
            if self._lib.espeak_SetVoiceByProperties(ctypes.byref(select)) != 0:
                raise RuntimeError(f"libespeak-ng has no voice {voice!r}")
        self._lib.espeak_SetParameter(_RATE, speed, 0)
        raw = text.encode()
        buf = ctypes.create_string_buffer(raw)
        if self._lib.espeak_Synth(buf, len(raw) + 1, 0, _POS_CHARACTER, 0, 0, None, None) != 0:
            raise RuntimeError(f"libespeak-ng failed on {text!r}")
        self._lib.espeak_Synchronize()
        audio = (np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768
        above = np.flatnonzero(np.abs(audio) > _SPEECH_THRESHOLD)
        if above.size == 0:
            raise RuntimeError(f"libespeak-ng produced silence for {text!r}")
        offset, trimmed = int(above[0]), len(_trim_speech(audio))
        # a word event of length 0 names no word: espeak-ng sometimes reports one at a clause's comma
        # near the end of the sentence (it would end the word before the comma there)
        starts = sorted((pos - 1, sample) for kind, pos, length, sample in self._events
                        if kind == _EVENT_WORD and length > 0)
        end_sample = max([s for kind, _p, _l, s in self._events if kind == _EVENT_END] or [len(audio)])
        if not starts:
            raise RuntimeError(f"libespeak-ng reported no words for {text!r}")
        # espeak-ng gives no event to some words it speaks together with their neighbour ("from the
        # sea": none for "the"); a text token belongs to the last event at or before it, and the
        # tokens of one event share its time by characters
        bounds = [*(s for _p, s in starts), end_sample]
        tokens = [(m.start(), m.group().decode(errors="replace")) for m in re.finditer(rb"\S+", raw)]
        by_event: list[list[str]] = [[] for _ in starts]
        for pos, token in tokens:
            k = max([i for i, (p, _s) in enumerate(starts) if p <= pos] or [0])
            by_event[k].append(token)
        out = []
        for k, toks in enumerate(by_event):
            a, b = bounds[k], bounds[k + 1]
            words = [w for token in toks for w in normalize_text(token).split()]
            total = sum(len(w) + 1 for w in words)
            pos = 0
            for w in words:
                ws = a + (b - a) * pos / total
                pos += len(w) + 1
                we = a + (b - a) * pos / total
                out.append((min(max(ws - offset, 0), trimmed) / CLEAN_SR, min(max(we - offset, 0), trimmed) / CLEAN_SR, w))
        return audio, out
