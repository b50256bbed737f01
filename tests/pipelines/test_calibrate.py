"""Calibration reads the release only (manifest + kept samples' JSON), never the build's work folder."""
from __future__ import annotations

import numpy as np
import pytest

from corpus.release import Release, ReleaseWriter
from corpus.schema import segment_id
from corpus.store import open_store
from pipelines.calibrate import DISAGREE_MIN_WORD_PROB, calibrate, label_words, match_gold, flag_disagreements
from pipelines.config import FilterConfig
from pipelines.filter import decide
from pipelines.rules import signal_rules

SENTENCES = ["the train left the station on time", "we walked along the river after lunch",
             "she bought three apples at the market", "the meeting was moved to next tuesday"]
GARBLED = "the rain left a nation of lime"


def _words(text: str, start: float, prob: float) -> list[dict]:
    return [{"word": " " + w, "start": round(start + 0.4 * i, 3), "end": round(start + 0.4 * i + 0.3, 3),
             "probability": prob} for i, w in enumerate(text.split())]


def _release(tmp_path):
    """Two domains, three recordings each, four 3-s segments per recording: good labels are the gold
    text and confident, bad ones garbled and unsure; one confident label on a wrong gold text, kept,
    and one rejected (as if too_short); both are gold/label disagreements."""
    store = open_store(tmp_path / "store")
    config = {"release": "r", "filter": FilterConfig().model_dump(), "sources": []}
    gold, rows = [], []
    rng = np.random.default_rng(7)
    for d, domain in enumerate(("phone", "street")):
        for r in range(3):
            rec = f"{d}{r}" + "a" * 18
            uri = f"s3://raw/{domain}/rec{r}.wav"
            for k, sentence in enumerate(SENTENCES):
                start, end = 3.0 * k, 3.0 * k + 2.9
                bad = (k + r) % 3 == 0
                wrong_gold = domain == "phone" and r == 0 and k in (1, 2)
                label = GARBLED if bad else sentence
                truth = sentence.replace("river", "rivers edge") if wrong_gold else sentence
                if wrong_gold:
                    truth = " ".join(truth.split()[:-2])  # the gold misses its last words
                prob = 0.45 if bad else 0.96
                row = {"segment_id": segment_id(rec, start, end), "recording_id": rec, "source_uri": uri,
                       "domain": domain, "split": "train", "start": start, "end": end, "text": label,
                       "avg_logprob": float(-0.9 - rng.uniform(0, 0.3)) if bad else float(-0.1 - rng.uniform(0, 0.05)),
                       "no_speech_prob": 0.05, "compression_ratio": 1.3, "mean_word_prob": prob,
                       "declared_language": "en", "language": "en", "language_probability": 1.0}
                decision, reasons = decide(row, FilterConfig())
                if wrong_gold and k == 2:  # a confident label rejected for another reason: no sample JSON
                    decision, reasons = "reject", ["too_short"]
                rows.append((row | {"decision": decision, "reasons": reasons}, _words(label, start, prob)))
                gold.append({"file": f"{domain}/rec{r}.wav", "start": start + 0.1, "end": end - 0.1, "text": truth})
    with ReleaseWriter(store, "r", config=config) as writer:
        for row, words in rows:
            keep = row["decision"] == "keep"
            pcm = np.zeros(round((row["end"] - row["start"]) * 16000), dtype=np.float32) if keep else None
            writer.add(row, pcm=pcm, extra={"words": words} if keep else None)
        writer.commit()
    return store, gold


def test_words_come_from_the_kept_samples_json(tmp_path):
    store, _ = _release(tmp_path)
    release = Release.open(store, "r")
    manifest = release.manifest().to_pylist()
    words = label_words(release, manifest)
    kept = [m for m in manifest if m["decision"] == "keep"]
    assert set(words) == {m["segment_id"] for m in kept}, "every kept segment's words, no rejected one's"
    some = kept[0]
    assert [w["word"].strip() for w in words[some["segment_id"]]] == some["text"].split()
    assert not store.list("work"), "no work folder exists: nothing was read from one"


def test_a_confident_label_on_a_wrong_gold_is_flagged_kept_or_rejected(tmp_path):
    store, gold = _release(tmp_path)
    release = Release.open(store, "r")
    manifest = release.manifest().to_pylist()
    groups, unmatched = match_gold(manifest, gold)
    assert not unmatched
    flag_disagreements(groups, label_words(release, manifest))
    flagged = sorted((g.segments[0]["start"], g.segments[0]["decision"]) for g in groups if g.disagreement)
    assert flagged == [(3.0, "keep"), (6.0, "reject")], "the rejected one through its manifest mean_word_prob"
    # without its manifest mean, a rejected segment has nothing to judge by: not flagged
    bare = [{**m, "mean_word_prob": None} if m["decision"] == "reject" else m for m in manifest]
    groups, _ = match_gold(bare, gold)
    flag_disagreements(groups, label_words(release, bare))
    assert [g.segments[0]["start"] for g in groups if g.disagreement] == [3.0]
    assert DISAGREE_MIN_WORD_PROB < 0.96


def test_calibration_sweeps_every_signal_rule_from_the_release(tmp_path):
    store, gold = _release(tmp_path)
    result = calibrate(Release.open(store, "r"), gold, target_share_bad=0.05)
    assert len(result["disagreements"]) == 2 and result["unmatched_gold"] == 0
    for domain, r in result["domains"].items():
        assert set(r["signals"]) == {rule.fields[0] for rule in signal_rules()}
        curve = r["signals"]["min_avg_logprob"]
        assert curve and curve[0]["kept"] >= curve[-1]["kept"], "a higher minimum keeps fewer"
        best = max(curve, key=lambda p: p["hours_kept"] if p["share_bad"] == 0 else -1)
        assert best["share_bad"] == 0.0 and best["kept"] > 0, f"{domain}: the confident labels pass alone"
        assert r["chosen"] is not None and r["chosen"]["share_bad"] <= 0.05
    other = {d: r["heldout_other_domains"] for d, r in result["domains"].items()}
    assert set(other) == set(result["domains"]) and all(m["segments"] == result["domains"][d]["all"]["segments"]
                                                         for d, m in other.items()), "every domain held out once"
    rising = result["domains"]["street"]["signals"]["max_no_speech_prob"]
    assert len(rising) == 1, "every segment has the same no_speech_prob: one threshold to try"


@pytest.mark.parametrize("rule", signal_rules(), ids=lambda r: r.code)
def test_a_swept_rule_is_off_at_none_and_lets_values_through_at_its_permissive_threshold(rule):
    row = {"start": 0.0, "end": 5.0, "text": "the train left the station on time today", "avg_logprob": -0.2,
           "no_speech_prob": 0.05, "compression_ratio": 1.4, rule.signal: rule.permissive}
    config = FilterConfig()
    assert not rule.check({**row, rule.signal: -1e9 if rule.bound == "min" else 1e9},
                          config.model_copy(update={rule.fields[0]: None}))
    assert not rule.check(row, FilterConfig(**{rule.fields[0]: rule.permissive}))


def test_a_trimmed_piece_does_not_vouch_for_its_label():
    seg = {"segment_id": "p1", "source_uri": "s3://raw/a.wav", "start": 0.0, "end": 3.0, "avg_logprob": -0.1,
           "text": "year old for the suitcase the next day", "mean_word_prob": 0.95, "decision": "keep"}
    gold = [{"file": "a.wav", "start": 0.2, "end": 2.8, "text": "lucy paid three euros for the suitcase"}]
    words = {"p1": _words(seg["text"], 0.0, 0.95)}
    whole, _ = match_gold([seg], gold)
    flag_disagreements(whole, words)
    piece, _ = match_gold([{**seg, "parent_segment_id": "p0"}], gold)
    flag_disagreements(piece, words)
    assert whole[0].disagreement and not piece[0].disagreement
