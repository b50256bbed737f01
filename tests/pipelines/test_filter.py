import pytest

from pipelines.config import FilterConfig
from pipelines.filter import REASONS, decide, longest_word_run

# the rules one by one: the shipped combined confidence off (these rows carry none of its word-level
# signals); it has its own tests below
T = FilterConfig(min_confidence=0.0)
GOOD = {"start": 0.0, "end": 5.0, "text": "the train left the station on time today",
        "avg_logprob": -0.2, "no_speech_prob": 0.05, "compression_ratio": 1.4}


def test_a_confident_plausible_segment_is_kept():
    assert decide(GOOD, T) == ("keep", [])


def test_confidence_takes_the_new_signals_and_a_missing_one_moves_nothing():
    from pipelines.confidence import LEGACY_FEATURES, ConfidenceModel, fit

    rows = [{**GOOD, "mean_word_prob": p, "agreement_cer": a, "language": "en", "declared_language": "en",
             "language_probability": 0.9, "rms_dbfs": -20.0}
            for p, a in ((0.95, 0.0), (0.9, 0.05), (0.85, 0.1), (0.5, 0.5), (0.45, 0.6), (0.4, 0.4))]
    model = fit(rows, [True, True, True, False, False, False])
    assert "mean_word_prob" in model.features and "agreement_cer" in model.features
    assert model.score(rows[0]) > 0.5 > model.score(rows[-1])
    unasked = {**rows[0], "agreement_cer": None}
    x = model.score(unasked)
    assert model.score({**unasked, "agreement_cer": model.mean[model.features.index("agreement_cer")]}) == pytest.approx(x)
    foreign = {**rows[0], "language": "de"}
    assert model.score(foreign) <= model.score(rows[0]), "another language first counts as no match"
    legacy = fit(rows, [True, True, True, False, False, False], features=LEGACY_FEATURES).to_dict()
    assert ConfidenceModel.from_dict(legacy).features == LEGACY_FEATURES, "models fitted before still load"
    with pytest.raises(ValueError, match="features"):
        ConfidenceModel.from_dict({**legacy, "features": ["avg_logprob", "shoe_size"]})


def test_the_shipped_confidence_is_on_by_default_and_judges_the_new_signals():
    from pipelines.shipped_confidence import MODEL, THRESHOLD

    T = FilterConfig()
    assert T.min_confidence == THRESHOLD > 0 and T.confidence_model == MODEL
    sure = {**GOOD, "text": "the train left the station on time today and we all went home together",
            "compression_ratio": 1.1, "mean_word_prob": 0.93, "agreement_cer": None, "language": "en",
            "declared_language": "en", "language_probability": 0.95}
    assert decide(sure, T) == ("keep", []), "a confident label, no second opinion asked"
    unsure = {**sure, "agreement_cer": 0.24, "mean_word_prob": 0.65, "avg_logprob": -0.55}
    assert decide(unsure, T) == ("reject", ["low_confidence"]), "each signal within its own rule, together unsure"
    assert decide(unsure, FilterConfig(min_confidence=0.0))[0] == "keep", "the same label, the confidence off"


@pytest.mark.parametrize("change, reason", [
    ({"text": "  "}, "empty_text"),
    ({"avg_logprob": -1.4}, "low_avg_logprob"),
    ({"avg_logprob": None}, "low_avg_logprob"),
    ({"no_speech_prob": 0.9}, "high_no_speech_prob"),
    ({"compression_ratio": 3.1}, "high_compression_ratio"),
    ({"text": "no no no no no no way"}, "repetition"),
    ({"text": "hi", "end": 5.0}, "chars_per_second_low"),
    ({"text": "x" * 200, "end": 5.0}, "chars_per_second_high"),
    ({"end": 0.6, "text": "yes"}, "too_short"),
    ({"end": 31.0, "text": "word " * 60}, "too_long"),
])
def test_each_rule_gives_its_reason(change, reason):
    decision, reasons = decide({**GOOD, **change}, T)
    assert decision == "reject" and reason in reasons and reason in REASONS


def test_every_reason_that_applies_is_recorded():
    _, reasons = decide({**GOOD, "avg_logprob": -2.0, "no_speech_prob": 0.95, "compression_ratio": 2.9}, T)
    assert {"low_avg_logprob", "high_no_speech_prob", "high_compression_ratio"} <= set(reasons)


def test_thresholds_come_from_config():
    assert decide({**GOOD, "avg_logprob": -0.6}, T)[0] == "keep"
    assert decide({**GOOD, "avg_logprob": -0.6}, FilterConfig(min_avg_logprob=-0.5, min_confidence=0.0)) == ("reject", ["low_avg_logprob"])


def test_longest_word_run():
    assert longest_word_run("Go, go go! GO now") == 4 and longest_word_run("") == 0


def test_a_detected_language_other_than_the_declared_one_is_rejected():
    row = {**GOOD, "language": "ru", "language_probability": 0.9, "declared_language": "en"}
    assert decide(row, T) == ("reject", ["language_mismatch"])
    assert decide({**row, "language_probability": 0.3}, T)[0] == "keep", "an unsure detection decides nothing"
    assert decide({**row, "language": "en"}, T)[0] == "keep"
    assert decide({**row, "declared_language": "auto"}, T)[0] == "keep", "an 'auto' source keeps what is detected"
    assert decide({**row, "mean_word_prob": 0.45}, T)[1] == ["language_mismatch", "low_word_prob"]
    assert decide({**row, "mean_word_prob": 0.9}, T)[0] == "keep", "sure words in the declared language: not foreign"


def test_low_mean_word_probability_is_rejected():
    row = {**GOOD, "mean_word_prob": 0.45}
    assert decide(row, T) == ("reject", ["low_word_prob"])
    assert decide({**row, "mean_word_prob": 0.8}, T)[0] == "keep"
    assert decide(row, FilterConfig(min_mean_word_prob=0.0, min_confidence=0.0))[0] == "keep"


def test_combined_confidence_rule():
    from pipelines.confidence import fit

    rows = [{**GOOD, "avg_logprob": lp} for lp in (-0.1, -0.2, -0.3, -0.9, -1.1, -1.3)]
    model = fit(rows, [True, True, True, False, False, False]).to_dict()
    t = FilterConfig(min_confidence=0.5, confidence_model=model)
    assert decide(rows[0], t)[0] == "keep" and "low_confidence" in decide(rows[-1], t)[1]
    assert "low_confidence" in decide(rows[3], t)[1] and "low_avg_logprob" not in decide(rows[3], t)[1]
    with pytest.raises(ValueError, match="needs a confidence_model"):
        FilterConfig(min_confidence=0.5, confidence_model=None)


@pytest.mark.parametrize("change, reason", [
    ({"text": "we we we we we we we we we go go go", "end": 6.0}, "low_unique_word_ratio"),
    ({"text": "the train left " + "a" * 30}, "long_word"),
    ({"text": "Thank you for watching!", "rms_dbfs": -60.0}, "phantom_phrase"),
    ({"text": "Thank you.", "no_speech_prob": 0.5}, "phantom_phrase"),
    ({"text": "the train left the station", "agreement_cer": 0.6}, "disagreement"),
])
def test_hallucination_and_agreement_rules(change, reason):
    t = FilterConfig(max_agreement_cer=0.3, min_confidence=0.0)
    decision, reasons = decide({**GOOD, **change}, t)
    assert decision == "reject" and reason in reasons and reason in REASONS


def test_a_phantom_phrase_said_aloud_is_kept():
    row = {**GOOD, "end": 2.0, "text": "Thank you for watching.", "rms_dbfs": -20.0, "no_speech_prob": 0.01}
    assert decide(row, T) == ("keep", [])
    assert decide({**row, "agreement_cer": 0.6}, T)[1] == ["disagreement"]
    assert decide({**row, "agreement_cer": None}, T)[0] == "keep", "no second opinion asked: the rule is silent"


def _words(spec):
    """(word, probability) pairs, 0.4 s apart, as the decoder gives them."""
    return [{"word": " " + w, "start": round(0.5 + 0.4 * i, 3), "end": round(0.8 + 0.4 * i, 3), "probability": p}
            for i, (w, p) in enumerate(spec)]


def test_trim_cuts_a_weak_run_out_and_keeps_the_sound_pieces():
    from pipelines.trim import pieces

    words = _words([(w, 0.9) for w in "the train left the station on time".split()]
                   + [("blah", 0.1), ("blah", 0.2), ("blah", 0.15)]
                   + [(w, 0.95) for w in "and we all went home happy again".split()])
    label = {**GOOD, "start": 0.3, "end": 7.3, "words": words, "text": "".join(w["word"] for w in words)}
    got = pieces(label, T, "en")
    assert [p["trim_reason"] for p in got] == [None, "low_word_prob_run", None]
    assert got[0]["text"] == "the train left the station on time" and got[2]["text"].startswith("and we")
    assert got[0]["start"] >= label["start"] and got[-1]["end"] <= label["end"]
    assert all(a["end"] <= b["start"] for a, b in zip(got, got[1:])), "pieces never overlap"
    decisions = [decide(p, T)[0] for p in got]
    assert decisions == ["keep", "reject", "keep"]
    assert "low_word_prob_run" in decide(got[1], T)[1]
    assert pieces(label, FilterConfig(trim=False), "en") == [label]
    one_weak = [dict(w) for w in words]
    one_weak[3]["probability"] = 0.1
    assert pieces({**label, "words": one_weak[:7]}, T, "en") == [{**label, "words": one_weak[:7]}]


def test_trim_cuts_a_foreign_phrase_out():
    import json

    from pipelines.trim import pieces

    # the foreign phrase decoded in the declared language: unsure words
    words = _words([(w, 0.45 if 4 <= i < 7 else 0.9)
                    for i, w in enumerate("one two three four five six seven eight nine ten".split())])
    label = {**GOOD, "start": 0.3, "end": 4.6, "words": words, "text": "x",
             "phrase_languages": json.dumps([[0, 4, "en", 0.97], [4, 7, "fr", 0.93], [7, 10, "en", 0.9]])}
    got = pieces(label, T, "en")
    assert [p["trim_reason"] for p in got] == [None, "language_mismatch", None]
    assert got[1]["text"] == "five six seven"
    sure = {**label, "words": _words([(w, 0.9) for w in "one two three four five six seven eight nine ten".split()])}
    assert pieces(sure, T, "en") == [sure], "a phrase taken for French whose words are sure is not cut"
    assert [p["trim_reason"] for p in pieces(sure, FilterConfig(foreign_max_word_prob=1.0), "en")] == \
        [None, "language_mismatch", None], "1: cut whatever the words say"
    assert pieces(label, T, "auto") == [label], "an 'auto' source has no foreign language"


def test_trim_cuts_out_a_long_stretch_with_no_words():
    from pipelines.trim import pieces

    words = _words([(w, 0.9) for w in "the train left the station on time".split()])
    later = [{**w, "start": w["start"] + 6.0, "end": w["end"] + 6.0} for w in _words([(w, 0.9) for w in "and we all went home".split()])]
    label = {**GOOD, "start": 0.3, "end": 9.0, "words": words + later, "text": "x"}
    got = pieces(label, T, "en")
    assert [p["trim_reason"] for p in got] == [None, "unlabelled_gap", None]
    assert got[1]["text"] == "" and got[1]["start"] >= words[-1]["end"] and got[1]["end"] <= later[0]["start"]
    assert [decide(p, T)[0] for p in got] == ["keep", "reject", "keep"]


def test_a_trimmed_piece_is_judged_by_its_own_agreement():
    from pipelines.agreement import disagreement, span_disagreement
    from pipelines.trim import pieces

    words = _words([(w, 0.9) for w in "the train left the station on time".split()]
                   + [("blah", 0.1), ("blah", 0.2), ("blah", 0.15)]
                   + [(w, 0.95) for w in "and we all went home happy again".split()])
    second = "the train left the station on time bla bla and we all went to rome snappy again"
    label = {**GOOD, "start": 0.3, "end": 7.3, "words": words, "text": "".join(w["word"] for w in words),
             "agreement_cer": 0.2, "agreement_text": second}
    got = pieces(label, T, "en")
    assert [p["trim_reason"] for p in got] == [None, "low_word_prob_run", None]
    assert got[0]["agreement_cer"] == 0.0, "the first piece's words are the second opinion's"
    assert got[2]["agreement_cer"] == disagreement("and we all went home happy again",
                                                   "and we all went to rome snappy again") > 0.1
    assert span_disagreement([w["word"] for w in words], 0, len(words), second) == disagreement(label["text"], second)
    no_second = pieces({**label, "agreement_cer": None, "agreement_text": None}, T, "en")
    assert all(p["agreement_cer"] is None for p in no_second), "no second opinion: none invented"


def test_agreement_signal():
    from pipelines.agreement import disagreement, needs_second_opinion

    assert disagreement("The train left at 5.", "the train left at five") == 0.0
    assert 0 < disagreement("the train left the station", "the rain left the nation") < 0.3
    assert disagreement("", "") == 0.0 and disagreement("words", "") == 1.0
    sure = {"avg_logprob": -0.1, "words": [{"probability": 0.95}, {"probability": 0.9}]}
    unsure = {"avg_logprob": -0.6, "words": [{"probability": 0.95}, {"probability": 0.3}]}
    assert not needs_second_opinion(sure, when="uncertain", max_word_prob=0.8)
    assert needs_second_opinion(unsure, when="uncertain", max_word_prob=0.8)
    assert needs_second_opinion(sure, when="all", max_word_prob=0.8)


def test_trim_compression_ratio_is_faster_whispers():
    from faster_whisper.transcribe import get_compression_ratio

    from pipelines.trim import compression_ratio

    for text in ("a", "the the the the the the the the", "Ein Satz auf Deutsch, ça va? Да."):
        assert compression_ratio(text) == get_compression_ratio(text)


def test_an_unsure_segment_is_judged_sentence_by_sentence():
    from pipelines.trim import pieces

    words = _words([(w, 0.85) for w in "the train left the station on time.".split()]
                   + [(w, 0.8) for w in "the blue ship sank in a sea of rain.".split()])
    second = "the train left the station on time the view stunned the young boy"
    label = {**GOOD, "start": 0.3, "end": 7.3, "words": words, "text": "".join(w["word"] for w in words),
             "agreement_cer": 0.3, "agreement_text": second}
    on = FilterConfig(min_confidence=0.0, trim_sentences=True)
    got = pieces(label, on, "en")
    assert [p["text"] for p in got] == ["the train left the station on time.", "the blue ship sank in a sea of rain."]
    assert [p["trim_reason"] for p in got] == [None, None], "a sentence is cut off, not rejected"
    assert got[0]["agreement_cer"] == 0.0 and got[1]["agreement_cer"] > 0.5, "each sentence has its own agreement"
    assert got[0]["end"] <= got[1]["start"] and got[0]["start"] >= label["start"] and got[1]["end"] <= label["end"]
    assert [decide(p, on)[0] for p in got] == ["keep", "reject"]
    sure = {**label, "agreement_cer": None, "agreement_text": None}
    assert pieces(sure, on, "en") == [sure], "a segment nobody asked a second opinion on stays whole"
    assert pieces(label, FilterConfig(min_confidence=0.0, trim_sentences=False), "en") == [label]


def test_a_word_the_second_opinion_disputes_can_be_cut_out():
    from pipelines.agreement import disputed_words
    from pipelines.trim import pieces

    assert disputed_words([" The", " merch", " can", " use", " it."], "the birch can use it") == \
        [False, True, False, False, False]
    assert disputed_words([" one", " two,", " three"], "one two three") == [False, False, False], "punctuation is no dispute"
    assert disputed_words([" a", " b"], "") == [True, True]
    words = _words([(w, 0.9) for w in "the train left".split()] + [("mute", 0.3)]
                   + [(w, 0.9) for w in "the station on time and we went home".split()])
    label = {**GOOD, "start": 0.3, "end": 5.3, "words": words, "text": "".join(w["word"] for w in words),
             "agreement_cer": 0.1, "agreement_text": "the train left view the station on time and we went home"}
    off = FilterConfig(min_confidence=0.0)
    assert off.trim_disputed_prob == 0.0 and pieces(label, off, "en") == [label], "off by default"
    on = FilterConfig(min_confidence=0.0, trim_disputed_prob=0.5)
    got = pieces(label, on, "en")
    assert [(p["text"], p["trim_reason"]) for p in got] == [
        ("the train left", None), ("mute", "disputed_word"), ("the station on time and we went home", None)]
    assert "disputed_word" in decide(got[1], on)[1]
    sure = FilterConfig(min_confidence=0.0, trim_disputed_prob=0.2)
    assert pieces(label, sure, "en") == [label], "a disputed word the decoder is sure of stays"


def test_releases_from_before_sentence_trimming_keep_their_pieces():
    old = FilterConfig.of_release({"trim": True})
    assert old.trim_sentences is False and old.trim_disputed_prob == 0.0


def test_the_shipped_confidence_judges_only_the_language_it_was_fitted_on():
    from pipelines.confidence import ConfidenceModel

    T = FilterConfig()
    model = ConfidenceModel.from_dict(T.confidence_model)
    assert model.languages == ("en",), "fitted on English gen-audio gold"
    unsure = {**GOOD, "avg_logprob": -0.9, "mean_word_prob": 0.5, "agreement_cer": 0.5, "language": "de",
              "language_probability": 0.99}
    assert "low_confidence" in decide({**unsure, "declared_language": "en"}, T)[1]
    assert "low_confidence" not in decide({**unsure, "declared_language": "de"}, T)[1], "German: other rules judge it"
    assert "low_confidence" not in decide({**unsure, "declared_language": "auto"}, T)[1], "'auto': the detected language"
    assert ConfidenceModel.from_dict(model.to_dict()) == model
    everyone = {k: v for k, v in model.to_dict().items() if k != "languages"}
    assert ConfidenceModel.from_dict(everyone).judges({**unsure, "declared_language": "de"}), "no languages: every row"
