"""bench/ceiling.py: how far the shipped signals could go on a hold-out, fitted on the hold-out itself."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ceiling import CONFIG, ceiling
from pipelines.confidence import ConfidenceModel
from pipelines.config import FilterConfig

ROOT = Path(__file__).resolve().parents[2]


def piece(k: int, *, wer: float, prob: float, reasons=("low_confidence",), dur: float = 2.0) -> dict:
    start = 10.0 * k
    return {"config": CONFIG, "segment_id": f"r-{k}", "start": start, "end": start + dur, "dur": dur,
            "text": "the birch canoe slid on the smooth planks", "avg_logprob": -0.2 if prob > 0.7 else -0.6,
            "no_speech_prob": 0.05, "compression_ratio": 1.2, "mean_word_prob": prob, "agreement_cer": None,
            "language": "en", "language_probability": 0.99, "declared_language": "en", "wer": wer, "nref": 8,
            "foreign": False, "nospeech": False, "reasons": list(reasons), "decision": "reject"}


def shipped() -> tuple[ConfidenceModel, float]:
    filt = FilterConfig()
    return ConfidenceModel.from_dict(filt.confidence_model), filt.min_confidence


def candidates(rows: list[dict]) -> list[dict]:
    return [{**r, "decision": "keep" if set(r["reasons"]) <= {"low_confidence"} else "reject"} for r in rows]


def test_signals_that_separate_good_from_bad_reach_every_good_second_when_fitted_here():
    # good labels confident, bad ones not, but all of them below the shipped threshold: the shipped
    # confidence keeps nothing, a model fitted on this set keeps every good second and no bad piece
    rows = candidates([piece(k, wer=0.0, prob=0.74 + 0.001 * k) for k in range(12)]
                      + [piece(100 + k, wer=0.6, prob=0.40 + 0.01 * k) for k in range(6)])
    model, threshold = shipped()
    got = ceiling(rows, model, threshold, 0.02)
    assert got["candidates"] == 18 and got["candidates_bad"] == 6
    assert got["fitted here"] == (pytest.approx(1.0), 12, 0)
    assert got["best threshold"][0] >= got["shipped"][0]


def test_signals_that_cannot_tell_good_from_bad_keep_nothing_within_the_target():
    # every bad piece has a good twin with the same signals: no threshold of any model separates them
    rows = candidates([piece(k, wer=0.0 if k % 2 else 0.6, prob=0.5 + 0.02 * (k // 2)) for k in range(16)])
    model, threshold = shipped()
    got = ceiling(rows, model, threshold, 0.0)
    assert got["fitted here"][0] < 0.2 and got["fitted here"][2] == 0
    assert got["best threshold"][2] == 0


def test_pieces_a_rule_rejected_are_candidates_only_when_opened_from_the_command_line(tmp_path):
    good = [piece(k, wer=0.0, prob=0.95, reasons=()) for k in range(4)]
    good[0]["decision"] = "keep"
    rows = good + [piece(10 + k, wer=0.0, prob=0.9, reasons=("disagreement", "low_confidence")) for k in range(4)] \
        + [piece(20 + k, wer=0.7, prob=0.3) for k in range(4)]
    path = tmp_path / "blind.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = lambda *extra: subprocess.run([sys.executable, "bench/ceiling.py", str(path), *extra], cwd=ROOT,  # noqa: E731
                                        capture_output=True, text=True, check=True).stdout
    closed, opened = run(), run("--also-judge", "disagreement")
    cand = lambda out: int(next(line for line in out.splitlines() if line.startswith("blind "))  # noqa: E731
                           .split()[2])
    assert cand(closed) == 8 and cand(opened) == 12
    assert "disagreement" in opened.splitlines()[0]


def test_the_second_model_finds_the_right_words_more_likely_than_wrong_ones(fixtures_dir):
    """bench/more_signals.py: tiny.en forced through a label gives each of its words a probability."""
    from bench.more_signals import Scorer
    from corpus.audio import decode

    audio = decode(fixtures_dir / "faster-whisper/jfk.flac")
    right = [" And", " so", " my", " fellow", " Americans,", " ask", " not", " what", " your", " country", " can",
             " do", " for", " you,", " ask", " what", " you", " can", " do", " for", " your", " country."]
    wrong = list(right)
    wrong[3:5] = [" yellow", " American's,"]
    wrong[9] = " county"
    scorer = Scorer("tiny.en")
    p_right, p_wrong = scorer.word_probs(audio.pcm, right), scorer.word_probs(audio.pcm, wrong)
    assert len(p_right) == len(p_wrong) == len(right)
    assert min(p_right[3], p_right[9]) > 0.9 and max(p_wrong[3], p_wrong[9]) < 0.1
    assert p_wrong[4] < p_right[4] / 2
    assert p_wrong[0:3] == pytest.approx(p_right[0:3], abs=1e-6)  # what comes before a change is scored alike


def test_a_piece_agrees_with_the_runners_up_that_wrote_it_as_the_first_did():
    from bench.more_signals import signals

    words = [{"word": w, "start": float(k), "end": k + 0.9} for k, w in enumerate(
        [" The", " stray", " cat", " gave", " both", " to", " Cubans.", " The", " meal", " was", " cooked."])]
    hyps = ["The stray cat gave both to Cubans. The meal was cooked.",
            "The stray cat gave birth to kittens. The meal was cooked.",
            "The stray cat gave both to Cubans. The meal was cooked.",
            "The stray cat gave both the curtains. The meal was cooked.",
            "The stray cat gave both to Cubans, the meal was cooked."]
    first = signals({"start": 0.0, "end": 6.95}, {"words": words}, [0.5] * 11, hyps)
    second = signals({"start": 6.95, "end": 11.0}, {"words": words}, [0.9] * 11, hyps)
    assert first == {"cross_word_prob": pytest.approx(0.5), "nbest_agree": 0.5}
    assert second["nbest_agree"] == 1.0 and second["cross_word_prob"] == pytest.approx(0.9)
