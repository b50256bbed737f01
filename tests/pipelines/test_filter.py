import pytest

from pipelines.config import FilterConfig
from pipelines.filter import REASONS, decide, longest_word_run

T = FilterConfig()
GOOD = {"start": 0.0, "end": 5.0, "text": "the train left the station on time today",
        "avg_logprob": -0.2, "no_speech_prob": 0.05, "compression_ratio": 1.4}


def test_a_confident_plausible_segment_is_kept():
    assert decide(GOOD, T) == ("keep", [])


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
    assert decide({**GOOD, "avg_logprob": -0.6}, FilterConfig(min_avg_logprob=-0.5)) == ("reject", ["low_avg_logprob"])


def test_longest_word_run():
    assert longest_word_run("Go, go go! GO now") == 4 and longest_word_run("") == 0


def test_a_detected_language_other_than_the_declared_one_is_rejected():
    row = {**GOOD, "language": "ru", "language_probability": 0.9, "declared_language": "en"}
    assert decide(row, T) == ("reject", ["language_mismatch"])
    assert decide({**row, "language_probability": 0.3}, T)[0] == "keep", "an unsure detection decides nothing"
    assert decide({**row, "language": "en"}, T)[0] == "keep"


def test_low_mean_word_probability_is_rejected():
    row = {**GOOD, "mean_word_prob": 0.45}
    assert decide(row, T) == ("reject", ["low_word_prob"])
    assert decide({**row, "mean_word_prob": 0.8}, T)[0] == "keep"
    assert decide(row, FilterConfig(min_mean_word_prob=0.0))[0] == "keep"


def test_combined_confidence_rule():
    from pipelines.confidence import fit

    rows = [{**GOOD, "avg_logprob": lp} for lp in (-0.1, -0.2, -0.3, -0.9, -1.1, -1.3)]
    model = fit(rows, [True, True, True, False, False, False]).to_dict()
    t = FilterConfig(min_confidence=0.5, confidence_model=model)
    assert decide(rows[0], t)[0] == "keep" and "low_confidence" in decide(rows[-1], t)[1]
    assert "low_confidence" in decide(rows[3], t)[1] and "low_avg_logprob" not in decide(rows[3], t)[1]
    with pytest.raises(ValueError, match="needs a confidence_model"):
        FilterConfig(min_confidence=0.5)
