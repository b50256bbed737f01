"""Synthetic long-form test audio with a known transcript.

Sentences come from a small deterministic English sentence generator (word
lists and templates in this module), are spoken by ``espeak-ng`` with several
voices and speeds, and are assembled into long-form files (about 30-90 s) with
random pauses.  Each file is then turned into one of four "domains" with
``sox`` (and numpy for noise / music beds):

``audiobook``  clean speech, 22.05 or 16 kHz, FLAC
``phone``      300-3400 Hz band, companded, 8 kHz mu-law WAV
``street``     pink / brown / white noise at 5, 10 or 15 dB SNR, 16 kHz WAV
``radio``      speech over a synthetic music bed (12-18 dB below), mildly
               compressed, 44.1 kHz stereo WAV

Next to the audio, ``truth.jsonl`` holds one JSON object per sentence with
the keys ``file, start, end, text, domain, voice, speed``.  ``start``/``end``
are measured from the synthesized samples (espeak-ng's own leading/trailing
silence is trimmed), so they are accurate to a few milliseconds; no effect
used here shifts audio in time.

Everything is driven by seeded RNGs (``random.Random`` / numpy
``default_rng`` derived from ``seed``, domain and file index), and sox runs in
repeatable mode without dither, so the same ``(minutes, seed, domains)``
writes byte-identical files.

Requires the ``espeak-ng`` and ``sox`` executables on ``PATH``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import shutil
import struct
import subprocess
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from corpus.text import number_to_words, year_words

__all__ = [
    "DOMAINS",
    "VOICES",
    "TruthRow",
    "generate",
    "make_sentence",
    "number_to_words",
    "add_cli",
]

DOMAINS = ("audiobook", "phone", "street", "radio")

# espeak-ng voices (language + optional "+variant"); every base language and
# every variant here exists in espeak-ng 1.51 (`espeak-ng --voices=en`,
# `espeak-ng --voices=variant`).  Unknown variants are silently ignored by
# espeak-ng, so keep this list to real ones (the tests check it).
VOICES = (
    "en-us",
    "en-gb",
    "en-us+m3",
    "en-gb+f3",
    "en-us+f5",
    "en-gb+f4",
    "en-us+f2",
    "en-gb-scotland",
    "en-gb-x-rp+m7",
    "en-029+m2",
)

SPEED_MIN = 130  # words per minute given to espeak-ng
SPEED_MAX = 190

CLEAN_SR = 22050  # espeak-ng's native output rate
LEAD_S = 0.5  # silence before the first sentence
TRAIL_S = 0.5  # silence after the last sentence
PAUSE_MIN_S = 0.4
PAUSE_MAX_S = 1.5
FILE_MIN_S = 30.0
FILE_MAX_S = 90.0
FILE_TARGET_S = 60.0
MIN_WORDS = 5
MAX_WORDS = 14

# A sample counts as speech when |x| exceeds this (int16 full scale = 1.0).
# espeak-ng pads with digital zeros, so any small threshold finds the speech.
_SPEECH_THRESHOLD = 1e-3
_PEAK_DBFS = -1.0
_FRAME = CLEAN_SR // 200  # 5 ms analysis frames for the end of speech
_TAIL_DB = -35.0  # speech ends at the last frame within this of the loudest

_EXT = {"audiobook": "flac", "phone": "wav", "street": "wav", "radio": "wav"}

# --------------------------------------------------------------------------
# Truth rows


@dataclass(frozen=True)
class TruthRow:
    """One spoken sentence inside one generated audio file."""

    file: str  # base name of the audio file, e.g. "phone-000.wav"
    start: float  # seconds from file start where the sentence's speech begins
    end: float  # seconds where it ends
    text: str
    domain: str
    voice: str  # espeak-ng voice name, e.g. "en-us+m3"
    speed: int  # words per minute given to espeak-ng

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "domain": self.domain,
            "voice": self.voice,
            "speed": self.speed,
        }

    @classmethod
    def from_json(cls, obj: dict) -> "TruthRow":
        return cls(
            file=str(obj["file"]),
            start=float(obj["start"]),
            end=float(obj["end"]),
            text=str(obj["text"]),
            domain=str(obj["domain"]),
            voice=str(obj["voice"]),
            speed=int(obj["speed"]),
        )


# --------------------------------------------------------------------------
# Sentence generator

_NAMES = (
    "Anna", "Peter", "Maria", "James", "Lucy", "Thomas", "Sarah", "David",
    "Emma", "Oliver", "Grace", "Henry", "Clara", "Samuel", "Alice", "George",
    "Ruth", "Daniel", "Helen", "Martin", "Rosa", "Victor", "Nora", "Frank",
)
_PEOPLE = (
    "farmer", "teacher", "doctor", "driver", "baker", "pilot", "nurse",
    "student", "painter", "fisherman", "child", "soldier", "neighbor",
    "engineer", "captain", "writer", "gardener", "musician", "shopkeeper",
    "old man", "young woman", "postman", "stranger", "librarian", "cook",
)
_ADJECTIVES = (
    "old", "young", "tall", "quiet", "tired", "happy", "careful", "busy",
    "clever", "friendly", "brave", "small", "large", "bright", "cold", "warm",
    "heavy", "empty", "red", "green", "blue", "yellow", "wooden", "broken",
    "new", "strange", "little", "famous", "dusty", "golden",
)
_OBJECTS = (
    "letter", "basket", "book", "bicycle", "lamp", "ticket", "map", "box",
    "key", "coat", "bottle", "chair", "window", "picture", "radio", "bag",
    "umbrella", "cup", "newspaper", "clock", "boat", "ball", "piano",
    "envelope", "blanket", "ladder", "suitcase", "camera", "kettle", "door",
)
_PLURALS = (
    "apples", "books", "letters", "boxes", "chairs", "birds", "trees",
    "cars", "houses", "stones", "coins", "eggs", "tickets", "bottles",
    "flowers", "horses", "cups", "candles", "windows", "boats", "sheep",
    "oranges", "pages", "songs", "stamps", "children", "miles", "bags",
)
_VERBS_T = (  # past tense, transitive
    "carried", "found", "opened", "painted", "bought", "sold", "lost",
    "cleaned", "fixed", "moved", "watched", "dropped", "borrowed", "washed",
    "wrapped", "closed", "hid", "brought", "kept", "counted", "checked",
    "picked up", "put down", "looked at", "forgot",
)
_VERBS_BASE = (  # base form, transitive
    "carry", "find", "open", "paint", "buy", "sell", "clean", "fix", "move",
    "watch", "borrow", "wash", "wrap", "close", "hide", "bring", "keep",
    "count", "check", "repair",
)
_VERBS_I = (  # past tense, intransitive
    "walked", "waited", "slept", "laughed", "sang", "worked", "stayed",
    "rested", "listened", "smiled", "danced", "sat down", "ran", "stood",
    "whistled", "arrived", "left early", "played",
)
_ADVERBS = (
    "slowly", "quietly", "quickly", "carefully", "happily", "again",
    "together", "alone", "patiently", "for a while", "all day",
)
_PLACES = (
    "in the kitchen", "near the river", "at the station", "behind the old church",
    "on the hill", "in the garden", "at the market", "under the bridge",
    "in the library", "by the harbor", "on the train", "at the school",
    "in the village", "along the road", "next to the bakery", "in the park",
    "on the farm", "at the airport", "in the hospital", "on the beach",
    "outside the hotel", "in the forest", "at the corner shop", "upstairs",
)
_TIMES = (
    "yesterday", "this morning", "last night", "on Monday", "on Friday",
    "every day", "after dinner", "in the spring", "before sunrise", "at noon",
    "later that evening", "last summer", "in the winter", "on Sunday afternoon",
    "the next day", "once a week", "early in the morning",
)
_FUTURE = (
    "tomorrow", "every day", "on Monday", "on Saturday", "next week",
    "this evening", "every morning", "on weekdays",
)
_EVENTS = (
    "the storm", "dinner", "the meeting", "the train left", "the guests arrived",
    "the rain started", "the shop closed", "midnight", "the holidays",
    "the concert", "breakfast",
)
_CITIES = (
    "London", "Boston", "Dublin", "Chicago", "Leeds", "Denver", "Glasgow",
    "Seattle", "Bristol", "Toronto", "Madrid", "Vienna", "Oslo", "Sydney",
)
_UNITS = ("dollars", "pounds", "euros")

def _count(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.6:
        return rng.randint(2, 12)
    if r < 0.9:
        return rng.randint(13, 99)
    return rng.randint(100, 999)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _subject(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return rng.choice(_NAMES)
    if r < 0.7:
        return "the " + rng.choice(_PEOPLE)
    return "the " + rng.choice(_ADJECTIVES) + " " + rng.choice(_PEOPLE)


def _object(rng: random.Random) -> str:
    r = rng.random()
    noun = rng.choice(_OBJECTS)
    if r < 0.4:
        return "the " + noun
    adj = rng.choice(_ADJECTIVES)
    if r < 0.7:
        return "the " + adj + " " + noun
    return _article(adj) + " " + adj + " " + noun


def _sentence_words(rng: random.Random) -> str:
    t = rng.randrange(12)
    if t == 0:
        return f"{_subject(rng)} {rng.choice(_VERBS_T)} {_object(rng)} {rng.choice(_PLACES)}"
    if t == 1:
        return (f"{rng.choice(_TIMES)} {_subject(rng)} {rng.choice(_VERBS_T)} "
                f"{number_to_words(_count(rng))} {rng.choice(_PLURALS)}")
    if t == 2:
        return (f"{_subject(rng)} {rng.choice(_VERBS_I)} {rng.choice(_ADVERBS)} "
                f"{rng.choice(_PLACES)} {rng.choice(_TIMES)}")
    if t == 3:
        return (f"there were {number_to_words(_count(rng))} {rng.choice(_ADJECTIVES)} "
                f"{rng.choice(_PLURALS)} {rng.choice(_PLACES)}")
    if t == 4:
        return (f"{rng.choice(_NAMES)} said that {_subject(rng)} {rng.choice(_VERBS_T)} "
                f"{_object(rng)} {rng.choice(_TIMES)}")
    if t == 5:
        hour = number_to_words(rng.randint(1, 12))
        minute = rng.choice(["", " fifteen", " thirty", " forty five", " ten", " twenty"])
        return (f"the {rng.choice(['train', 'bus', 'ferry', 'flight'])} to "
                f"{rng.choice(_CITIES)} leaves at {hour}{minute} {rng.choice(_FUTURE)}")
    if t == 6:
        return (f"{_subject(rng)} paid {number_to_words(_count(rng))} "
                f"{rng.choice(_UNITS)} for {_object(rng)}")
    if t == 7:
        return (f"in {year_words(rng.randint(1900, 2029))} {_subject(rng)} "
                f"{rng.choice(_VERBS_T)} {_object(rng)} {rng.choice(_PLACES)}")
    if t == 8:
        return (f"{_subject(rng)} and {_subject(rng)} {rng.choice(_VERBS_I)} "
                f"{rng.choice(_PLACES)}")
    if t == 9:
        return (f"{_subject(rng)} wanted to {rng.choice(_VERBS_BASE)} {_object(rng)} "
                f"before {rng.choice(_EVENTS)}")
    if t == 10:
        return (f"{_subject(rng)} lives {number_to_words(_count(rng))} miles from "
                f"{rng.choice(_CITIES)} {rng.choice(_PLACES)}")
    return (f"{rng.choice(_TIMES)} {_subject(rng)} {rng.choice(_VERBS_I)} "
            f"{rng.choice(_ADVERBS)} with {_subject(rng)}")


def make_sentence(rng: random.Random) -> str:
    """One plain English sentence of 5-14 words ending in a period.

    Deterministic for the state of ``rng``; no punctuation but the final
    period, numbers spelled out, names and the first word capitalised.
    """
    while True:
        words = _sentence_words(rng).split()
        if MIN_WORDS <= len(words) <= MAX_WORDS:
            break
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words) + "."


# --------------------------------------------------------------------------
# External tools


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        hint = {"espeak-ng": "apt-get install espeak-ng",
                "sox": "apt-get install sox libsox-fmt-all"}.get(tool, "")
        raise RuntimeError(
            f"{tool} not found on PATH; it is needed to generate test audio"
            + (f" (install with: {hint})" if hint else "")
        )
    return path


def _run_tool(tool: str, args: list[str], *, what: str) -> bytes:
    exe = _require(tool)
    try:
        proc = subprocess.run([exe, *args], capture_output=True, check=False)
    except OSError as exc:  # pragma: no cover - e.g. not executable
        raise RuntimeError(f"{tool} could not be started for {what}: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(
            f"{tool} failed (exit {proc.returncode}) for {what}: {err or '<no stderr>'}"
            f"\ncommand: {tool} {' '.join(args)}"
        )
    return proc.stdout


def _sox(args: list[str], *, what: str) -> None:
    # -R: repeatable (fixed seeds/timestamps), -D: no dither -> byte-identical output.
    _run_tool("sox", ["-R", "-D", "-V1", *args], what=what)


def _parse_wav_int16(data: bytes, what: str) -> tuple[np.ndarray, int]:
    """Parse espeak-ng's --stdout WAV (its size fields are bogus)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError(f"espeak-ng returned no WAV data for {what}")
    pos = 12
    sr = channels = bits = None
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels, sr = struct.unpack("<HHI", data[body:body + 8])
            bits = struct.unpack("<H", data[body + 14:body + 16])[0]
            if fmt != 1:
                raise RuntimeError(f"espeak-ng WAV is not PCM (format {fmt}) for {what}")
        elif cid == b"data":
            if sr is None:
                raise RuntimeError(f"espeak-ng WAV has no fmt chunk for {what}")
            if bits != 16 or channels != 1:
                raise RuntimeError(f"espeak-ng WAV is {bits}-bit/{channels}ch, expected 16-bit mono")
            raw = data[body:body + min(size, len(data) - body)]
            raw = raw[: len(raw) // 2 * 2]
            return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0, sr
        pos = body + size + (size & 1)
    raise RuntimeError(f"espeak-ng WAV has no data chunk for {what}")


@dataclass(frozen=True)
class _Planned:
    text: str
    voice: str
    speed: int
    pause: float  # silence before this sentence (if not the file's first)
    gain_db: float


@dataclass
class _Spoken:
    plan: _Planned
    audio: np.ndarray  # trimmed to speech, float32 at CLEAN_SR

    @property
    def dur(self) -> float:
        return len(self.audio) / CLEAN_SR


def _trim_speech(audio: np.ndarray) -> np.ndarray:
    """Cut espeak-ng's leading/trailing silence (and breath tail) off a sentence.

    The start is the first sample above a small absolute threshold (espeak-ng
    pads with digital zeros and onsets are sharp).  The end is the end of the
    last 5 ms frame whose RMS is within ``_TAIL_DB`` of the loudest frame: the
    breathy variants (f2, f5, m2 ...) leave a ~140 ms noise tail at -45..-60 dB
    after the last phone, which is not speech.  A 5 ms fade-out avoids a click
    at the cut, so the file is digital silence outside [start, end].
    """
    idx = np.flatnonzero(np.abs(audio) > _SPEECH_THRESHOLD)
    if idx.size == 0:
        return audio[:0]
    a = audio[idx[0]: idx[-1] + 1]
    n = len(a) // _FRAME
    if n >= 2:
        frames = np.sqrt(np.mean(np.square(a[: n * _FRAME].reshape(n, _FRAME)), axis=1))
        loud = np.flatnonzero(frames > frames.max() * 10 ** (_TAIL_DB / 20))
        a = a[: min(len(a), (loud[-1] + 1) * _FRAME)].copy()
        fade = min(_FRAME, len(a))
        a[-fade:] *= (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade))).astype(np.float32)
    return a


def _speak(p: _Planned) -> _Spoken:
    what = f"voice {p.voice!r}, {p.speed} wpm: {p.text!r}"
    raw = _run_tool("espeak-ng", ["-v", p.voice, "-s", str(p.speed), "--stdout", p.text], what=what)
    audio, sr = _parse_wav_int16(raw, what)
    if sr != CLEAN_SR:
        raise RuntimeError(f"espeak-ng produced {sr} Hz audio for {what}; expected {CLEAN_SR} Hz")
    audio = _trim_speech(audio)
    if audio.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {what}")
    peak = float(np.max(np.abs(audio)))
    audio = audio * np.float32(0.5 * 10 ** (p.gain_db / 20) / peak)
    return _Spoken(p, audio.astype(np.float32))


# --------------------------------------------------------------------------
# Planning


def _file_targets(domain_seconds: float) -> list[float]:
    """Split one domain's duration into files of about 30-90 s (at least one)."""
    n = max(1, round(domain_seconds / FILE_TARGET_S))
    while domain_seconds / n > FILE_MAX_S:
        n += 1
    while n > 1 and domain_seconds / n < FILE_MIN_S:
        n -= 1
    return [domain_seconds / n] * n


def _file_rng(seed: int, domain: str, index: int) -> random.Random:
    # str seeds are hashed with SHA-512 by random.Random: stable across runs (the seed string keeps
    # the module's old path: the same --seed gives the same bytes as before the move)
    # and independent of PYTHONHASHSEED; per (domain, file) so that the
    # content of one domain does not depend on which others are generated.
    return random.Random(f"stt-corpus.gen_audio:{seed}:{domain}:{index}")


_VOICES_PER_FILE = {"audiobook": (1, 1), "phone": (2, 2), "street": (1, 2), "radio": (1, 3)}


def _speak_file(rng: random.Random, domain: str, target_s: float) -> list[_Spoken]:
    lo, hi = _VOICES_PER_FILE[domain]
    voices = rng.sample(VOICES, rng.randint(lo, hi))
    base_speed = rng.randint(SPEED_MIN + 10, SPEED_MAX - 10)

    def plan(i: int) -> _Planned:
        voice = voices[i % len(voices)] if domain == "phone" else rng.choice(voices)
        speed = min(SPEED_MAX, max(SPEED_MIN, base_speed + rng.randint(-10, 10)))
        return _Planned(
            text=make_sentence(rng),
            voice=voice,
            speed=speed,
            pause=round(rng.uniform(PAUSE_MIN_S, PAUSE_MAX_S), 3),
            gain_db=rng.uniform(-3.0, 0.0),
        )

    spoken: list[_Spoken] = []
    queue: deque[_Spoken] = deque()
    cur = LEAD_S
    while True:
        if not queue:
            # Synthesize a batch sized from a rough estimate of what is left;
            # planning consumes the RNG in a fixed order, so unused sentences
            # at the end of a file do not break determinism.
            est = max(1, math.ceil((target_s - cur) / 4.0)) + 1
            first = len(spoken)
            queue.extend([_speak(plan(first + k)) for k in range(est)])
        s = queue.popleft()
        pause = s.plan.pause if spoken else 0.0
        if spoken and cur + pause + s.dur / 2 + TRAIL_S > target_s:
            break
        spoken.append(s)
        cur += pause + s.dur
    return spoken


def _assemble(spoken: list[_Spoken]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    lead = int(round(LEAD_S * CLEAN_SR))
    trail = int(round(TRAIL_S * CLEAN_SR))
    pieces: list[np.ndarray] = [np.zeros(lead, np.float32)]
    spans: list[tuple[int, int]] = []
    pos = lead
    for i, s in enumerate(spoken):
        if i:
            gap = int(round(s.plan.pause * CLEAN_SR))
            pieces.append(np.zeros(gap, np.float32))
            pos += gap
        pieces.append(s.audio)
        spans.append((pos, pos + len(s.audio)))
        pos += len(s.audio)
    pieces.append(np.zeros(trail, np.float32))
    return np.concatenate(pieces), spans


# --------------------------------------------------------------------------
# Domain rendering


def _speech_rms(x: np.ndarray, spans: list[tuple[int, int]], sr: int) -> float:
    if x.ndim > 1:
        x = x.mean(axis=1)
    parts = [x[int(a * sr / CLEAN_SR): int(b * sr / CLEAN_SR)] for a, b in spans]
    v = np.concatenate(parts) if parts else x
    return float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) or 1e-9


def _normalise_peak(x: np.ndarray, dbfs: float = _PEAK_DBFS) -> np.ndarray:
    peak = float(np.max(np.abs(x)))
    if peak <= 0:
        return x
    return (x * (10 ** (dbfs / 20) / peak)).astype(np.float32)


def _coloured_noise(rng: np.random.Generator, n: int, sr: int, colour: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        out = white
    else:
        alpha = {"pink": 1.0, "brown": 2.0}[colour]
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1.0 / sr)
        f[0] = f[1] if n > 1 else 1.0
        spec *= np.maximum(f, 20.0) ** (-alpha / 2)
        out = np.fft.irfft(spec, n)
    out = out / (np.std(out) or 1.0)
    return out.astype(np.float32)


def _street_noise(rng: np.random.Generator, n: int, sr: int, colour: str) -> np.ndarray:
    noise = _coloured_noise(rng, n, sr, colour)
    # slow loudness changes (passing traffic): a smooth random envelope
    knots = max(2, int(n / sr / 1.5) + 2)
    env_k = 1.0 + 0.6 * rng.standard_normal(knots).clip(-1.2, 2.0)
    env = np.interp(np.arange(n), np.linspace(0, n - 1, knots), env_k).clip(0.25, None)
    # a faint low rumble
    t = np.arange(n) / sr
    rumble = 0.3 * np.sin(2 * np.pi * rng.uniform(40, 70) * t + rng.uniform(0, 2 * np.pi))
    return (noise * env + rumble).astype(np.float32)


_SCALE_HZ = 220.0 * 2 ** (np.array([0, 2, 3, 5, 7, 8, 10, 12, 14, 15]) / 12)  # A minor


def _music_bed(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Stereo (n, 2) sine chords changing every 1-2 s, with tremolo."""
    out = np.zeros((n, 2), np.float32)
    pos = 0
    fade = int(0.03 * sr)
    trem_hz = rng.uniform(3.0, 6.0)
    while pos < n:
        seg = min(n - pos, int(rng.uniform(1.0, 2.0) * sr))
        root = int(rng.integers(0, 5))
        notes = _SCALE_HZ[[root, root + 2, root + 4]] * rng.choice([0.5, 1.0])
        t = (pos + np.arange(seg)) / sr
        chord = np.zeros(seg, np.float64)
        for k, f in enumerate(notes):
            chord += np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 2 * f * t + k)
        bass = 0.8 * np.sin(2 * np.pi * notes[0] / 2 * t)
        w = np.ones(seg)
        fl = min(fade, seg // 2)
        if fl:
            ramp = np.linspace(0.0, 1.0, fl)
            w[:fl] = ramp
            w[-fl:] = ramp[::-1]
        trem_l = 1.0 - 0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * trem_hz * t))
        trem_r = 1.0 - 0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * trem_hz * t + np.pi / 2))
        out[pos:pos + seg, 0] = (chord * trem_l + bass) * w
        out[pos:pos + seg, 1] = (chord * trem_r + bass) * w
        pos += seg
    return out


def _read_float(path: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(str(path), dtype="float32", always_2d=False)
    return x, sr


def _render(domain: str, clean: Path, out: Path, spans: list[tuple[int, int]],
            rng: random.Random, tmp: Path) -> None:
    what = f"{domain} file {out.name}"
    if domain == "audiobook":
        sr = rng.choice([CLEAN_SR, 16000])
        effects = [] if sr == CLEAN_SR else ["rate", "-v", str(sr)]
        _sox([str(clean), "-b", "16", "-c", "1", str(out), *effects,
              "gain", "-n", str(_PEAK_DBFS)], what=what)
    elif domain == "phone":
        _sox([str(clean), "-e", "u-law", "-b", "8", "-c", "1", "-r", "8000", str(out),
              "sinc", "300-3400",
              "compand", "0.01,0.20", "6:-70,-60,-40,-26,-20,-14,0,-8", "0", "-90", "0",
              "rate", "-v", "8000",
              "gain", "-n", str(_PEAK_DBFS)], what=what)
    elif domain == "street":
        sr = 16000
        speech_path = tmp / "speech16k.wav"
        _sox([str(clean), "-e", "floating-point", "-b", "32", str(speech_path),
              "rate", "-v", str(sr)], what=what)
        speech, _ = _read_float(speech_path)
        nrng = np.random.default_rng(rng.getrandbits(64))
        colour = rng.choice(["pink", "brown", "white", "pink"])
        snr_db = rng.choice([5.0, 10.0, 15.0])
        noise = _street_noise(nrng, len(speech), sr, colour)
        noise_rms = float(np.sqrt(np.mean(np.square(noise, dtype=np.float64))))
        gain = _speech_rms(speech, spans, sr) / (10 ** (snr_db / 20)) / noise_rms
        mix = _normalise_peak(speech + noise * np.float32(gain))
        sf.write(str(out), mix, sr, subtype="PCM_16", format="WAV")
    elif domain == "radio":
        sr = 44100
        speech_path = tmp / "speech44k.wav"
        _sox([str(clean), "-e", "floating-point", "-b", "32", str(speech_path),
              "rate", "-v", str(sr)], what=what)
        speech, _ = _read_float(speech_path)
        nrng = np.random.default_rng(rng.getrandbits(64))
        below_db = rng.uniform(12.0, 18.0)
        bed = _music_bed(nrng, len(speech), sr)
        bed_rms = float(np.sqrt(np.mean(np.square(bed, dtype=np.float64))))
        gain = _speech_rms(speech, spans, sr) / (10 ** (below_db / 20)) / bed_rms
        mix = speech[:, None] + bed * np.float32(gain)
        mix_path = tmp / "radio_mix.wav"
        sf.write(str(mix_path), _normalise_peak(mix, -6.0), sr, subtype="FLOAT", format="WAV")
        _sox([str(mix_path), "-b", "16", "-e", "signed-integer", str(out),
              "compand", "0.02,0.30", "-70,-70,-30,-24,0,-10", "0", "-90", "0",
              "gain", "-n", str(_PEAK_DBFS)], what=what)
    else:  # pragma: no cover - validated earlier
        raise ValueError(f"unknown domain: {domain!r}")


# --------------------------------------------------------------------------
# Public entry point


def _check_domains(domains: Sequence[str] | str) -> list[str]:
    if isinstance(domains, str):
        domains = [d for d in domains.split(",")]
    out: list[str] = []
    for d in domains:
        d = str(d).strip()
        if d not in DOMAINS:
            raise ValueError(f"unknown domain {d!r}; expected one of {', '.join(DOMAINS)}")
        if d not in out:
            out.append(d)
    if not out:
        raise ValueError("no domains given; expected one or more of " + ", ".join(DOMAINS))
    return out


def generate(out_dir: str | Path, *, minutes: float, seed: int,
             domains: Sequence[str] = DOMAINS, progress: bool = False) -> list[TruthRow]:
    """Write synthetic long-form audio plus ``truth.jsonl`` into ``out_dir``.

    ``minutes`` is the total over all domains, split evenly; each domain gets
    one or more files ``{domain}-{n:03d}.{ext}`` of about 30-90 s.  Returns the
    truth rows (also written to ``out_dir/truth.jsonl``) sorted by
    ``(file, start)``.  Same ``(minutes, seed, domains)`` -> identical bytes.
    """
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
        raise ValueError(f"minutes must be a number, got {minutes!r}")
    if not math.isfinite(minutes) or minutes <= 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    doms = _check_domains(domains)
    _require("espeak-ng")
    _require("sox")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_domain_s = minutes * 60.0 / len(doms)
    jobs = [(d, i, t) for d in doms for i, t in enumerate(_file_targets(per_domain_s))]

    from tqdm import tqdm

    rows: list[TruthRow] = []
    with tempfile.TemporaryDirectory(prefix="gen_audio_") as tmpd, \
            tqdm(total=len(jobs), disable=not progress, unit="file", desc="gen-audio") as bar:
        tmp = Path(tmpd)
        for domain, idx, target in jobs:
            name = f"{domain}-{idx:03d}.{_EXT[domain]}"
            bar.set_postfix_str(name)
            rng = _file_rng(seed, domain, idx)
            spoken = _speak_file(rng, domain, target)
            clean, spans = _assemble(spoken)
            clean_path = tmp / "clean.wav"
            sf.write(str(clean_path), clean, CLEAN_SR, subtype="FLOAT", format="WAV")
            _render(domain, clean_path, out / name, spans, rng, tmp)
            for s, (a, b) in zip(spoken, spans):
                rows.append(TruthRow(
                    file=name,
                    start=round(a / CLEAN_SR, 3),
                    end=round(b / CLEAN_SR, 3),
                    text=s.plan.text,
                    domain=domain,
                    voice=s.plan.voice,
                    speed=s.plan.speed,
                ))
            bar.update(1)

    rows.sort(key=lambda r: (r.file, r.start))
    buf = io.StringIO()
    for r in rows:
        buf.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    (out / "truth.jsonl").write_text(buf.getvalue(), encoding="utf-8")
    return rows


# --------------------------------------------------------------------------
# CLI


def _audio_seconds(path: Path) -> tuple[float, int, int]:
    info = sf.info(str(path))
    return info.frames / info.samplerate, info.samplerate, info.channels


def _cli(args: argparse.Namespace) -> int:
    domains = _check_domains(args.domains)
    rows = generate(args.out_dir, minutes=args.minutes, seed=args.seed,
                    domains=domains, progress=True)
    out = Path(args.out_dir)
    print(f"wrote {out / 'truth.jsonl'}: {len(rows)} sentences")
    for d in domains:
        files = sorted({r.file for r in rows if r.domain == d})
        secs = 0.0
        rates = set()
        for f in files:
            s, sr, ch = _audio_seconds(out / f)
            secs += s
            rates.add(f"{sr} Hz/{ch}ch")
        n_sent = sum(1 for r in rows if r.domain == d)
        print(f"  {d:<10} {len(files):3d} files  {secs / 60:6.2f} min  {n_sent:4d} sentences"
              f"  ({', '.join(sorted(rates))})")
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``gen-audio`` on an argparse subparsers object."""
    desc = (
        "Generate synthetic long-form test audio with a known transcript. "
        "Sentences from a built-in English sentence generator are spoken by "
        "espeak-ng (several voices and speeds), joined with 0.4-1.5 s pauses "
        "into files of about 30-90 s, and rendered into the domains "
        "audiobook (clean FLAC, 22.05/16 kHz), phone (300-3400 Hz, companded, "
        "8 kHz mu-law WAV), street (noise at 5/10/15 dB SNR, 16 kHz WAV) and "
        "radio (music bed, compressed, 44.1 kHz stereo WAV). Writes "
        "OUT_DIR/{domain}-{n:03d}.{ext} and OUT_DIR/truth.jsonl with one JSON "
        "object per sentence: file, start, end (seconds of speech in the file), "
        "text, domain, voice (espeak-ng voice), speed (words per minute). "
        "Output is byte-identical for the same --minutes/--seed/--domains. "
        "Needs the espeak-ng and sox executables on PATH."
    )
    p = subparsers.add_parser(
        "gen-audio",
        help="generate synthetic test audio + truth.jsonl (needs espeak-ng and sox)",
        description=desc,
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory to write audio files and truth.jsonl into")
    p.add_argument("--minutes", type=float, required=True,
                   help="total minutes of audio over all domains (split evenly)")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed -> same bytes)")
    p.add_argument("--domains", default=",".join(DOMAINS),
                   help=f"comma-separated subset of {','.join(DOMAINS)} (default: all)")
    p.set_defaults(func=_cli)
    return p
