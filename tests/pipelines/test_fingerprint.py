"""Near-duplicate detection on real audio: the shared fixtures, copies of them made with ffmpeg
(lossy re-encoding, gain, trimming, resampling), and synthetic espeak-ng speech of different seeds
(same voices, different sentences) as hard negatives."""
from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from corpus.audio import decode
from pipelines import fingerprint as fpm
from pipelines.fingerprint import (
    THRESHOLD, Fingerprint, find_near_duplicates, fingerprint, similarity, text_similarity,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")

# distinct recordings among the shared fixtures (none is a copy of another)
ORIGINALS = [
    "faster-whisper/jfk.flac", "faster-whisper/stereo_diarization.wav", "joinly/OSR_us_000_0034_8k.wav",
    "silero-vad/en.wav", "silero-vad/ru.wav", "vosk-api/polar.wav", "vosk-api/cats.wav",
    "leopard/test.wav", "leopard/test_de.wav", "leopard/test_es.wav", "leopard/test_fr.wav",
    "DeepSpeech/ru.wav", "DeepSpeech/arctic_a0024.wav", "DeepSpeech/new-home-in-the-stars-16k.wav",
    "pisets/test_sound_ru.wav",
]
FRAME = fpm.FRAME_SECONDS


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def audio(fixtures_dir, tmp_path_factory):
    """name → (path, DecodedAudio) for the originals, the planted copies and gen-audio of two seeds."""
    from reference.gen_audio import generate

    tmp = tmp_path_factory.mktemp("fingerprint")
    paths = {rel: fixtures_dir / rel for rel in ORIGINALS}
    jfk, polar, osr = (fixtures_dir / r for r in ("faster-whisper/jfk.flac", "vosk-api/polar.wav",
                                                   "joinly/OSR_us_000_0034_8k.wav"))
    paths["copy/jfk-22k-64k-quieter.mp3"] = ffmpeg(jfk, tmp / "jfk.mp3", "-ar", "22050", "-b:a", "64k",
                                                    "-af", "volume=-3dB")
    paths["copy/polar-cut-2.5s.wav"] = ffmpeg(polar, tmp / "polar-cut.wav", "-ss", "2.5")
    paths["copy/polar-cut-end-4s.wav"] = ffmpeg(polar, tmp / "polar-end.wav", "-t", "24.6")
    paths["copy/osr-44k.flac"] = ffmpeg(osr, tmp / "osr-44k.flac", "-ar", "44100")
    paths["copy/cats-8k.wav"] = ffmpeg(fixtures_dir / "vosk-api/cats.wav", tmp / "cats-8k.wav", "-ar", "8000")
    for seed in (1, 2):
        generate(tmp / f"gen{seed}", minutes=1.0, seed=seed)
        for p in sorted((tmp / f"gen{seed}").iterdir()):
            if p.suffix in (".wav", ".flac"):
                paths[f"gen{seed}/{p.name}"] = p
    street = paths["gen1/street-000.wav"]
    paths["copy/gen1-street-trimmed-32k.mp3"] = ffmpeg(street, tmp / "street.mp3", "-ss", "1.3", "-t", "10",
                                                        "-b:a", "32k")
    return {name: (path, decode(path)) for name, path in paths.items()}


@pytest.fixture(scope="module")
def fps(audio):
    return {name: fingerprint(a.pcm) for name, (_, a) in audio.items()}


# --------------------------------------------------------------------------- true pairs


def test_reencoded_quieter_mp3_is_caught(fps):
    score, offset = similarity(fps["faster-whisper/jfk.flac"], fps["copy/jfk-22k-64k-quieter.mp3"])
    assert score >= THRESHOLD * 2, score          # measured 0.66-1.0 for this transformation
    assert abs(offset) <= 2 * FRAME


@pytest.mark.parametrize("copy, cut", [("copy/polar-cut-2.5s.wav", 2.5), ("copy/polar-cut-end-4s.wav", 0.0)])
def test_trimmed_copy_is_caught_at_the_cut(fps, copy, cut):
    score, offset = similarity(fps["vosk-api/polar.wav"], fps[copy])
    assert score >= 0.9, score                    # the trimmed copy's hashes are a subset of the original's
    assert offset == pytest.approx(cut, abs=2 * FRAME)
    back, offset_back = similarity(fps[copy], fps["vosk-api/polar.wav"])
    assert back == pytest.approx(score) and offset_back == pytest.approx(-cut, abs=2 * FRAME)


def test_trimmed_lossy_copy_of_synthetic_speech_is_caught(fps):
    score, offset = similarity(fps["gen1/street-000.wav"], fps["copy/gen1-street-trimmed-32k.mp3"])
    assert score >= THRESHOLD and offset == pytest.approx(1.3, abs=2 * FRAME)


@pytest.mark.parametrize("orig, copy", [("joinly/OSR_us_000_0034_8k.wav", "copy/osr-44k.flac"),
                                        ("vosk-api/cats.wav", "copy/cats-8k.wav")])
def test_resampled_copy_is_caught(fps, orig, copy):
    score, offset = similarity(fps[orig], fps[copy])
    assert score >= 0.8 and abs(offset) <= 2 * FRAME, (score, offset)


def test_fingerprint_resamples_other_rates_itself(audio, fps):
    """PCM handed over at 8 kHz (read directly, not decoded to 16 kHz) matches the 16 kHz original."""
    pcm8, rate = sf.read(audio["copy/cats-8k.wav"][0], dtype="float32")
    assert rate == 8000
    own = fingerprint(pcm8, sample_rate=rate)
    score, offset = similarity(fps["vosk-api/cats.wav"], own)
    assert score >= 0.8 and abs(offset) <= 2 * FRAME, (score, offset)


def test_gain_changes_move_no_peak(audio):
    pcm = audio["leopard/test_es.wav"][1].pcm
    base = fingerprint(pcm)
    for gain_db in (-20.0, -3.0, 3.0):
        scaled = fingerprint(pcm * np.float32(10 ** (gain_db / 20)))
        assert similarity(base, scaled)[0] >= 0.95, gain_db


# --------------------------------------------------------------------------- unrelated pairs


def test_unrelated_fixtures_are_not_flagged(fps):
    scores = {(a, b): similarity(fps[a], fps[b])[0] for a, b in itertools.combinations(ORIGINALS, 2)}
    worst = max(scores, key=scores.get)
    assert scores[worst] < THRESHOLD / 4, (worst, scores[worst])     # measured: all 0.0


def test_synthetic_speech_of_other_seeds_is_not_flagged(fps):
    """Same espeak-ng voices, same sentence templates, different sentences: shared words give a
    few aligned matches, never a share of the recording."""
    gen = sorted(n for n in fps if n.startswith("gen"))
    assert len(gen) == 8
    for a, b in itertools.combinations(gen, 2):
        score, _ = similarity(fps[a], fps[b])
        assert score < THRESHOLD / 4, (a, b, score)                  # measured <= 0.015
    # a lossy copy of one of them matches only its own original
    copy = fps["copy/gen1-street-trimmed-32k.mp3"]
    assert [g for g in gen if similarity(fps[g], copy)[0] >= THRESHOLD] == ["gen1/street-000.wav"]


def test_planted_copies_score_far_from_unrelated_pairs(fps):
    """The threshold sits in a wide gap: every planted pair scores at least twice it, and
    no pair of distinct recordings a quarter of it."""
    planted = [("faster-whisper/jfk.flac", "copy/jfk-22k-64k-quieter.mp3"),
               ("vosk-api/polar.wav", "copy/polar-cut-2.5s.wav"), ("vosk-api/polar.wav", "copy/polar-cut-end-4s.wav"),
               ("joinly/OSR_us_000_0034_8k.wav", "copy/osr-44k.flac"), ("vosk-api/cats.wav", "copy/cats-8k.wav"),
               ("gen1/street-000.wav", "copy/gen1-street-trimmed-32k.mp3")]
    true_min = min(similarity(fps[a], fps[b])[0] for a, b in planted)
    distinct = [n for n in fps if not n.startswith("copy/")]
    unrelated_max = max(similarity(fps[a], fps[b])[0] for a, b in itertools.combinations(distinct, 2))
    assert true_min >= 2 * THRESHOLD and unrelated_max < THRESHOLD / 4, (true_min, unrelated_max)


# --------------------------------------------------------------------------- many recordings


def _items(audio, fps, names):
    return [{"id": f"rec-{i:02d}", "uri": str(audio[n][0]), "duration": audio[n][1].duration,
             "fingerprint": fps[n].to_bytes(), "text": None, "name": n} for i, n in enumerate(names)]


def test_find_near_duplicates_returns_exactly_the_planted_pairs(audio, fps, monkeypatch, tmp_path):
    names = sorted(fps)
    items = _items(audio, fps, names)
    # a same-length quieter copy of en.wav whose uri sorts first: the tie goes to the smaller uri
    en = audio["silero-vad/en.wav"][1]
    quieter = tmp_path / "quieter-en.wav"
    sf.write(quieter, en.pcm * np.float32(0.7), 16000, subtype="PCM_16")
    items.append({"id": "rec-quieter", "uri": "/a/quieter-en.wav", "duration": decode(quieter).duration,
                  "fingerprint": fingerprint(decode(quieter).pcm).to_bytes(), "text": None, "name": "copy/quieter-en"})
    # two silent recordings (identical) and a too short one: empty fingerprints, never matched
    for k, pcm in enumerate([np.zeros(160000, np.float32), np.zeros(160000, np.float32),
                             audio["faster-whisper/jfk.flac"][1].pcm[16000:28000]]):
        items.append({"id": f"rec-empty-{k}", "uri": f"/x/empty-{k}.wav", "duration": len(pcm) / 16000,
                      "fingerprint": fingerprint(pcm).to_bytes(), "text": None, "name": f"empty-{k}"})
    items.append({"id": "rec-none", "uri": "/x/none.wav", "duration": 3.0, "fingerprint": None, "text": None,
                  "name": "none"})
    n = len(items)
    assert n >= 30

    calls = []
    real = fpm.similarity
    monkeypatch.setattr(fpm, "similarity", lambda a, b: calls.append(1) or real(a, b))
    got = find_near_duplicates(items)

    by_name = {it["name"]: it for it in items}
    dur = {it["name"]: it["duration"] for it in items}

    def kept_of(*group):
        return min(group, key=lambda g: (-dur[g], by_name[g]["uri"]))

    groups = [("faster-whisper/jfk.flac", "copy/jfk-22k-64k-quieter.mp3"),
              ("vosk-api/polar.wav", "copy/polar-cut-2.5s.wav", "copy/polar-cut-end-4s.wav"),
              ("joinly/OSR_us_000_0034_8k.wav", "copy/osr-44k.flac"), ("vosk-api/cats.wav", "copy/cats-8k.wav"),
              ("gen1/street-000.wav", "copy/gen1-street-trimmed-32k.mp3"), ("silero-vad/en.wav", "copy/quieter-en")]
    expected = {}
    for group in groups:
        keep = kept_of(*group)
        expected.update({by_name[g]["id"]: by_name[keep]["id"] for g in group if g != keep})
    assert {k: v[0] for k, v in got.items()} == expected
    assert all(THRESHOLD <= score <= 1.0 for _, score in got.values())
    # the longest is kept: the trimmed copies map to the full polar.wav; the tie goes to the smaller uri
    assert got[by_name["copy/polar-cut-2.5s.wav"]["id"]][0] == by_name["vosk-api/polar.wav"]["id"]
    assert got[by_name["silero-vad/en.wav"]["id"]][0] == "rec-quieter"
    # candidates come from the inverted index: similarity ran for a handful of pairs, not all n(n-1)/2
    assert len(expected) <= len(calls) <= 2 * len(expected), (len(calls), n * (n - 1) // 2)


def test_index_misses_no_pair_that_brute_force_finds(fps):
    """The candidates from the inverted index include every pair that comparing all pairs finds,
    also at a threshold low enough for small partial overlaps, and few others."""
    names = sorted(fps)
    prints = [fps[n] for n in names]
    all_pairs = list(itertools.combinations(range(len(names)), 2))
    scores = {(i, j): similarity(prints[i], prints[j])[0] for i, j in all_pairs}
    for threshold in (THRESHOLD, 0.05):
        brute = {pair for pair, score in scores.items() if score >= threshold}
        candidates = fpm._candidates(prints, threshold)
        assert len(brute) >= 6 and brute <= candidates, [(names[i], names[j]) for i, j in brute - candidates]
        assert len(candidates) <= 2 * len(brute), len(candidates)


def test_candidate_search_does_not_depend_on_batching(fps, monkeypatch):
    prints = [fps[n] for n in sorted(fps)]
    whole = fpm._candidates(prints, THRESHOLD)
    monkeypatch.setattr(fpm, "_BATCH_KEYS", 500)          # a few recordings per batch
    assert fpm._candidates(prints, THRESHOLD) == whole and len(whole) >= 6


def test_transcripts_veto_audio_matches_and_missing_ones_do_not(audio, fps):
    names = ["faster-whisper/jfk.flac", "copy/jfk-22k-64k-quieter.mp3", "vosk-api/polar.wav", "copy/polar-cut-2.5s.wav"]
    items = _items(audio, fps, names)
    jfk = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    items[0]["text"] = jfk
    items[1]["text"] = "and so my fellow americans ask not what your country can do for you ask what you can do"
    items[2]["text"] = "Upon my memory was graven the vision of the city, and within me had arisen another."
    items[3]["text"] = "There was in this singular caravan a little boy with no father or mother."   # another story

    def pairs():
        return {frozenset((k, v[0])) for k, v in find_near_duplicates(items).items()}

    jfk_pair, polar_pair = frozenset(("rec-00", "rec-01")), frozenset(("rec-02", "rec-03"))
    assert pairs() == {jfk_pair}
    items[3]["text"] = None                       # a transcript missing: audio alone decides
    assert pairs() == {jfk_pair, polar_pair}
    items[3]["text"] = "   "                      # no words at all counts as missing, not as different
    assert pairs() == {jfk_pair, polar_pair}


def test_text_similarity():
    a = "And so my fellow Americans, ask not what your country can do for you."
    assert text_similarity(a, a.upper().replace(",", "")) == 1.0
    assert text_similarity(a, "ask not what your country can do for you") == 1.0      # a trimmed part
    assert text_similarity(a, "so my fellow Americans ask what your country can do for you") >= 0.8
    assert text_similarity(a, "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue "
                              "background.") < fpm.TEXT_THRESHOLD
    # single common words in different sentences are chance, not agreement
    assert text_similarity("the cat and the dog are in a house",
                           "a bird or the fish is in the sea") < fpm.TEXT_THRESHOLD
    assert text_similarity("yes", "Yes!") == 1.0 and text_similarity("yes", "no") == 0.0
    assert text_similarity("", "") == 1.0 and text_similarity("", "words") == 0.0


# --------------------------------------------------------------------------- format, edge cases, speed


def test_fingerprint_round_trips_through_bytes(fps):
    fp = fps["vosk-api/polar.wav"]
    data = fp.to_bytes()
    back = Fingerprint.from_bytes(data)
    assert back == fp and len(back) == len(fp) > 300
    assert back.hashes.dtype == np.uint32 and back.times.dtype == np.int32
    assert similarity(back, fp) == similarity(fp, fp)
    assert len(data) < 10 * len(fp) and len(data) / 28.6 < 1000           # bytes per second of audio
    assert Fingerprint.from_bytes(Fingerprint.empty().to_bytes()) == Fingerprint.empty()
    with pytest.raises(ValueError):
        Fingerprint.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError):
        Fingerprint.from_bytes(data[:5])


def test_fingerprint_is_deterministic_and_time_sorted(audio, fps):
    fp = fingerprint(audio["leopard/test.wav"][1].pcm)
    assert fp == fps["leopard/test.wav"]
    assert np.all(np.diff(fp.times) >= 0) and fp.hashes.max() < 2 ** 18


def test_chunked_peaks_equal_whole_recording_peaks(audio, fps, monkeypatch):
    """Long recordings are processed a chunk at a time; chunk borders change nothing."""
    pcm = audio["vosk-api/polar.wav"][1].pcm
    for chunk in (700, 1234):
        monkeypatch.setattr(fpm, "CHUNK_FRAMES", chunk)
        assert fingerprint(pcm) == fps["vosk-api/polar.wav"], chunk
    monkeypatch.setattr(fpm, "CHUNK_FRAMES", 10 ** 9)
    assert fingerprint(pcm) == fps["vosk-api/polar.wav"]


def test_silent_and_very_short_audio_never_match(audio, fps):
    rng = np.random.default_rng(0)
    silent = [np.zeros(160000, np.float32), (rng.standard_normal(160000) * 1e-5).astype(np.float32)]
    speech = audio["faster-whisper/jfk.flac"][1].pcm
    short = speech[16000:28000]                   # 0.75 s of speech
    for pcm in silent + [short, np.zeros(0, np.float32)]:
        fp = fingerprint(pcm)
        assert len(fp) == 0
        assert similarity(fp, fps["faster-whisper/jfk.flac"]) == (0.0, 0.0)
        assert similarity(fp, fp) == (0.0, 0.0)
    # a near-empty fingerprint (a few genuine hashes of the recording) matches nothing either
    full = fps["faster-whisper/jfk.flac"]
    few = Fingerprint(full.hashes[:fpm.MIN_MATCHES - 1], full.times[:fpm.MIN_MATCHES - 1])
    assert similarity(few, full) == (0.0, 0.0)
    # ...while a full-length fingerprint of the same speech does
    assert similarity(full, fingerprint(speech.copy()))[0] == 1.0


def test_fingerprint_is_much_faster_than_real_time(audio):
    pcm = np.concatenate([audio["silero-vad/en.wav"][1].pcm, audio["silero-vad/ru.wav"][1].pcm,
                          audio["gen1/street-000.wav"][1].pcm])
    seconds = len(pcm) / 16000
    best = min(_timed(fingerprint, pcm) for _ in range(3))
    speed = seconds / best
    print(f"fingerprint speed: {speed:.0f}x real time ({seconds:.0f} s of audio in {best * 1000:.0f} ms)")
    assert speed > 200, speed


def _timed(fn, *args) -> float:
    """CPU seconds of this process, not wall time: other processes on a loaded machine (CI's 2
    cores) slow the wall clock, not the work done, so the threshold holds whatever runs beside."""
    t = time.process_time()
    fn(*args)
    return time.process_time() - t
