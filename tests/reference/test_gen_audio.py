"""Tests for reference.gen_audio (needs espeak-ng and sox on PATH)."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reference import gen_audio
from reference.releases import read_truth
from reference.gen_audio import DOMAINS, VOICES, TruthRow, generate

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to generate test audio",
)

MINUTES = 0.4
SEED = 11
KEYS = ["file", "start", "end", "text", "domain", "voice", "speed"]


def _sha256_dir(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def _by_file(rows):
    out: dict[str, list[TruthRow]] = {}
    for r in rows:
        out.setdefault(r.file, []).append(r)
    return out


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen_a")
    rows = generate(d, minutes=MINUTES, seed=SEED)
    return d, rows


@pytest.fixture(scope="module")
def run_b(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen_b")
    rows = generate(d, minutes=MINUTES, seed=SEED, progress=True)
    return d, rows


# ---------------------------------------------------------------- layout


def test_every_domain_present_and_files_named(run_a):
    d, rows = run_a
    assert {r.domain for r in rows} == set(DOMAINS)
    audio = sorted(p.name for p in d.iterdir() if p.name != "truth.jsonl")
    assert audio, "no audio written"
    for name in audio:
        m = re.fullmatch(r"(audiobook|phone|street|radio)-(\d{3})\.(flac|wav)", name)
        assert m, name
        assert m.group(3) == ("flac" if m.group(1) == "audiobook" else "wav"), name
    # every written audio file has sentences and every referenced file exists
    assert sorted({r.file for r in rows}) == audio
    for dom in DOMAINS:
        assert f"{dom}-000.{'flac' if dom == 'audiobook' else 'wav'}" in audio


def test_truth_jsonl_matches_return_value(run_a):
    d, rows = run_a
    lines = (d / "truth.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows)
    objs = [json.loads(line) for line in lines]
    for obj, row in zip(objs, rows):
        assert list(obj) == KEYS
        assert obj == row.to_json()
        assert TruthRow.from_json(obj) == row
    assert [gen_audio.TruthRow.from_json(r) for r in read_truth(d)] == rows
    assert rows == sorted(rows, key=lambda r: (r.file, r.start))


def test_rows_fields_sane(run_a):
    _, rows = run_a
    for r in rows:
        assert r.voice in VOICES
        assert gen_audio.SPEED_MIN <= r.speed <= gen_audio.SPEED_MAX
        assert isinstance(r.speed, int)
        assert r.file.startswith(r.domain + "-")
        assert re.fullmatch(r"[A-Z][A-Za-z ]+\.", r.text), r.text
        assert 5 <= len(r.text.split()) <= 14, r.text
    # the seeded RNG really varies voices and speeds
    assert len({r.voice for r in rows}) >= 3
    assert len({r.speed for r in rows}) >= 3


# ---------------------------------------------------------------- audio


def test_rows_lie_within_file_durations(run_a):
    d, rows = run_a
    for name, rs in _by_file(rows).items():
        info = sf.info(str(d / name))
        dur = info.frames / info.samplerate
        assert dur > 3.0
        for r in rs:
            assert 0.0 < r.start < r.end <= dur, (name, r, dur)
        # ~0.5 s leading and trailing silence
        assert rs[0].start == pytest.approx(gen_audio.LEAD_S, abs=0.01)
        assert dur - rs[-1].end == pytest.approx(gen_audio.TRAIL_S, abs=0.02)


def test_formats_and_sample_rates(run_a):
    d, rows = run_a
    for name in {r.file for r in rows}:
        info = sf.info(str(d / name))
        dom = name.split("-")[0]
        if dom == "phone":
            assert (info.samplerate, info.channels) == (8000, 1), info
            assert info.format == "WAV" and info.subtype == "ULAW", info
        elif dom == "audiobook":
            assert info.format == "FLAC" and info.channels == 1, info
            assert info.samplerate in (22050, 16000), info
        elif dom == "street":
            assert (info.format, info.samplerate, info.channels) == ("WAV", 16000, 1), info
        elif dom == "radio":
            assert (info.format, info.samplerate, info.channels) == ("WAV", 44100, 2), info
        x, _ = sf.read(str(d / name))
        peak = float(np.max(np.abs(x)))
        assert 0.7 < peak <= 1.0, (name, peak)  # normalised to about -1 dBFS


def test_sentences_increasing_and_non_overlapping(run_a):
    _, rows = run_a
    for name, rs in _by_file(rows).items():
        for a, b in zip(rs, rs[1:]):
            assert a.start < b.start
            gap = b.start - a.end
            assert gen_audio.PAUSE_MIN_S - 0.01 <= gap <= gen_audio.PAUSE_MAX_S + 0.01, (name, a, b)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _regions(x, sr, rs, dur):
    speech = np.concatenate([x[round(r.start * sr): round(r.end * sr)] for r in rs])
    bounds = [0.0] + [t for r in rs for t in (r.start, r.end)] + [dur]
    # gaps, shrunk by 20 ms at each side
    gaps = [x[round((a + 0.02) * sr): round((b - 0.02) * sr)]
            for a, b in zip(bounds[0::2], bounds[1::2]) if b - a > 0.1]
    return speech, np.concatenate(gaps)


@pytest.mark.parametrize("domain", ["audiobook", "phone"])
def test_gaps_are_silent_and_timings_tight(run_a, domain):
    d, rows = run_a
    for name, rs in _by_file([r for r in rows if r.domain == domain]).items():
        x, sr = sf.read(str(d / name))
        speech, gaps = _regions(x, sr, rs, len(x) / sr)
        assert _rms(speech) > 0.05
        assert _rms(gaps) < 0.01 * _rms(speech)  # > 40 dB quieter between sentences
        w = int(0.02 * sr)
        for r in rs:
            s, e = round(r.start * sr), round(r.end * sr)
            # speech starts within 20 ms after `start` and ends within 20 ms before `end`
            assert np.max(np.abs(x[s: s + w])) > 0.005, (name, r)
            assert np.max(np.abs(x[e - w: e])) > 0.003, (name, r)
            # and nothing is audible 20 ms before start / after end
            assert np.max(np.abs(x[max(0, s - 10 * w): s - w])) < 0.003, (name, r)
            assert np.max(np.abs(x[e + w: e + 10 * w])) < 0.003, (name, r)


def test_street_has_noise_at_plausible_snr(run_a):
    d, rows = run_a
    for name, rs in _by_file([r for r in rows if r.domain == "street"]).items():
        x, sr = sf.read(str(d / name))
        speech, gaps = _regions(x, sr, rs, len(x) / sr)
        p_noise = _rms(gaps) ** 2
        p_speech = _rms(speech) ** 2 - p_noise
        assert p_noise > 1e-5, "street file has no noise"
        assert p_speech > 0
        snr = 10 * np.log10(p_speech / p_noise)
        assert 1.0 < snr < 21.0, (name, snr)


def test_radio_has_music_bed_below_speech(run_a):
    d, rows = run_a
    for name, rs in _by_file([r for r in rows if r.domain == "radio"]).items():
        x, sr = sf.read(str(d / name))
        assert x.ndim == 2 and x.shape[1] == 2
        assert not np.allclose(x[:, 0], x[:, 1]), "radio should be real stereo"
        mono = x.mean(axis=1)
        speech, gaps = _regions(mono, sr, rs, len(mono) / sr)
        assert _rms(gaps) > 0.005, "no music bed between sentences"
        assert _rms(speech) > 2.0 * _rms(gaps), "music bed not below the speech"


# ---------------------------------------------------------------- determinism


def test_same_seed_is_byte_identical(run_a, run_b):
    (da, ra), (db, rb) = run_a, run_b
    assert ra == rb
    ha, hb = _sha256_dir(da), _sha256_dir(db)
    assert "truth.jsonl" in ha
    assert ha == hb


def test_different_seed_differs(run_a, tmp_path):
    _, ra = run_a
    rows = generate(tmp_path, minutes=0.1, seed=SEED + 1, domains=["audiobook"])
    first = [r.text for r in ra if r.domain == "audiobook"]
    other = [r.text for r in rows]
    assert other and first
    assert other[: len(first)] != first[: len(other)]
    assert not set(other) & set(first)


def test_domain_content_independent_of_other_domains(run_a, tmp_path):
    # per-(seed, domain, file) RNG: a domain's file does not depend on the
    # other domains when its duration is the same
    da, ra = run_a
    rows = generate(tmp_path, minutes=MINUTES / 4, seed=SEED, domains=("phone",))
    assert rows == [r for r in ra if r.domain == "phone"]
    assert (tmp_path / "phone-000.wav").read_bytes() == (da / "phone-000.wav").read_bytes()


# ---------------------------------------------------------------- sizes / splitting


def test_file_targets_split():
    assert gen_audio._file_targets(4.5) == [4.5]
    for secs in (30, 45, 89, 90, 91, 150, 200, 600, 1234.5):
        t = gen_audio._file_targets(secs)
        assert sum(t) == pytest.approx(secs)
        assert all(30 <= x <= 90 for x in t), (secs, t)


def test_durations_follow_minutes(tmp_path):
    rows = generate(tmp_path, minutes=1.6, seed=3, domains=("audiobook", "street"))
    for dom in ("audiobook", "street"):
        files = sorted({r.file for r in rows if r.domain == dom})
        total = 0.0
        for f in files:
            info = sf.info(str(tmp_path / f))
            total += info.frames / info.samplerate
        assert total == pytest.approx(48.0, abs=5.0), (dom, total)
        assert len(files) == 1


def test_tiny_minutes_still_one_file_per_domain(tmp_path):
    rows = generate(tmp_path, minutes=0.05, seed=5, domains=("radio", "phone"))
    assert sorted({r.file for r in rows}) == ["phone-000.wav", "radio-000.wav"]


# ---------------------------------------------------------------- validation / errors


@pytest.mark.parametrize("bad", [["audiobook", "podcast"], ("podcast",)])
def test_unknown_domain_raises(tmp_path, bad):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="podcast"):
        generate(out, minutes=0.1, seed=1, domains=bad)
    assert not out.exists()


@pytest.mark.parametrize("minutes", [0, -1, float("nan"), float("inf")])
def test_bad_minutes_raise(tmp_path, minutes):
    with pytest.raises(ValueError, match="minutes"):
        generate(tmp_path, minutes=minutes, seed=1)


def test_missing_tool_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="espeak-ng"):
        generate(tmp_path / "out", minutes=0.1, seed=1)


def test_failing_tool_reports_stderr():
    bad = gen_audio._Planned(text="Hello there.", voice="xx-no-such-voice", speed=150,
                             pause=0.5, gain_db=0.0)
    with pytest.raises(RuntimeError, match=r"espeak-ng failed.*voice"):
        gen_audio._speak(bad)
    with pytest.raises(RuntimeError, match="sox failed"):
        gen_audio._sox(["/nonexistent/input.wav", "/nonexistent/out.wav"], what="test")


def test_voices_exist_in_espeak():
    langs = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True,
                           check=True).stdout
    variants = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True,
                              text=True, check=True).stdout
    lang_names = {line.split()[1] for line in langs.splitlines()[1:] if line.split()}
    variant_files = {line.split()[4] for line in variants.splitlines()[1:] if len(line.split()) > 4}
    for v in VOICES:
        base, _, variant = v.partition("+")
        assert base in lang_names, v
        if variant:
            assert f"!v/{variant}" in variant_files, v


# ---------------------------------------------------------------- text


def test_sentence_generator():
    rng = random.Random(0)
    sents = [gen_audio.make_sentence(rng) for _ in range(400)]
    for s in sents:
        assert re.fullmatch(r"[A-Z][A-Za-z]*( [A-Za-z]+)*\.", s), s
        assert 5 <= len(s.split()) <= 14, s
    assert len(set(sents)) > 390
    assert any(w in " ".join(sents) for w in ("twenty", "hundred", "thousand"))
    assert [gen_audio.make_sentence(random.Random(7)) for _ in range(3)] == \
        [gen_audio.make_sentence(random.Random(7))] * 3


def test_number_to_words():
    from corpus.text import number_to_words as n2w
    assert n2w(0) == "zero"
    assert n2w(14) == "fourteen"
    assert n2w(40) == "forty"
    assert n2w(73) == "seventy three"
    assert n2w(100) == "one hundred"
    assert n2w(342) == "three hundred and forty two"
    assert n2w(2005) == "two thousand and five"
    assert n2w(12345) == "twelve thousand three hundred and forty five"
    with pytest.raises(ValueError):
        n2w(-1)


# ---------------------------------------------------------------- CLI


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="stt-corpus")
    sub = parser.add_subparsers(dest="cmd", required=True)
    gen_audio.add_cli(sub)
    help_text = sub.choices["gen-audio"].format_help()
    for word in ("truth.jsonl", "espeak-ng", "sox", "--minutes", "--seed", "--domains"):
        assert word in help_text
    out = tmp_path / "cli"
    args = parser.parse_args(["gen-audio", str(out), "--minutes", "0.1", "--seed", "4",
                              "--domains", "phone,street"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "phone" in printed and "street" in printed and "sentences" in printed
    rows = [gen_audio.TruthRow.from_json(r) for r in read_truth(out / "truth.jsonl")]
    assert {r.domain for r in rows} == {"phone", "street"}
    with pytest.raises(SystemExit):
        parser.parse_args(["gen-audio", str(out), "--seed", "4"])  # --minutes is required


def test_trim_speech_cuts_silence_and_breath_tail():
    sr = gen_audio.CLEAN_SR
    rng = np.random.default_rng(0)
    t = np.arange(int(0.3 * sr)) / sr
    speech = (0.6 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    tail = (0.6 * 10 ** (-50 / 20) * rng.standard_normal(int(0.14 * sr))).astype(np.float32)
    x = np.concatenate([np.zeros(int(0.1 * sr), np.float32), speech, tail,
                        np.zeros(int(0.2 * sr), np.float32)])
    y = gen_audio._trim_speech(x)
    # starts at the first speech sample (sin(0) == 0, so one sample later)
    assert np.allclose(y[:100], x[int(0.1 * sr) + 1: int(0.1 * sr) + 101], atol=1e-6)
    # the -50 dB breath tail is gone: ends within 10 ms of the tone's end
    assert abs(len(y) - len(speech)) <= int(0.01 * sr), len(y) / sr
    assert gen_audio._trim_speech(np.zeros(1000, np.float32)).size == 0
