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
