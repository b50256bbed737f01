"""Filter rules: decide() reproduces the reasons releases were built with, in the same order."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import FilterConfig
from pipelines.filter import REASONS, decide
from pipelines.rules import Rule, threshold_table

# 300 rows over every rule and 4 configs, and the reasons decide() gave for them before the rules
# became classes (tests/pipelines/frozen/make_decide_frozen.py wrote it with that code; not to be
# regenerated: it is what existing releases hold)
FROZEN = json.loads((Path(__file__).parent / "frozen" / "decide_frozen.json").read_text())


# settings newer than the freeze, as the frozen configs had them: the combined confidence off, a
# detected foreign language rejected whatever the word probabilities
BEFORE_FROZEN_WAS_THAWED = {"min_confidence": 0.0, "foreign_max_word_prob": 1.0}


@pytest.mark.parametrize("name", sorted(FROZEN["configs"]))
def test_decide_gives_the_frozen_reasons_in_the_frozen_order(name):
    config = FilterConfig(**{**BEFORE_FROZEN_WAS_THAWED, **FROZEN["configs"][name]})
    rows = [dict(zip(FROZEN["fields"], values)) for values in FROZEN["rows"]]
    got = [decide(row, config) for row in rows]
    expected = FROZEN["expected"][name]
    mismatches = [(i, g[1], e) for i, (g, e) in enumerate(zip(got, expected)) if g[1] != e]
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[:3]}"
    assert [g[0] for g in got] == ["reject" if e else "keep" for e in expected]


# rules added after the freeze: off in the frozen configs, so the frozen reasons stand; each has its own test
NEWER_RULES = {"too_quiet", "disputed_word"}


def test_the_frozen_rows_cover_every_reason():
    seen = {code for reasons in FROZEN["expected"].values() for r in reasons for code in r}
    assert seen == set(REASONS) - NEWER_RULES


def test_every_rule_reads_fields_of_the_filter_config_and_every_field_has_a_rule():
    from pipelines.rules import RULES

    read = {name for rule in RULES for name in rule.fields}
    assert read == set(FilterConfig.model_fields), "a threshold no rule reads, or a rule reading no threshold"
    for rule in RULES:
        assert rule.code and rule.description, rule
        if rule.signal is not None:
            assert rule.bound in ("min", "max") and rule.fields, rule


class _ShoutingConfig(FilterConfig):
    max_capitals_share: float = 0.5


class Shouting(Rule):
    """Registered at run time by a test: a rule of the tests' own, with its own config field."""

    code = "shouting"
    description = "more than max_capitals_share of the letters are capitals"
    fields = ("max_capitals_share",)

    def check(self, row, config):
        letters = [c for c in row.get("text") or "" if c.isalpha()]
        return bool(letters) and sum(c.isupper() for c in letters) / len(letters) > config.max_capitals_share


def test_a_rule_registered_at_run_time_is_decided_described_and_listed(monkeypatch):
    from pipelines import rules

    monkeypatch.setattr(rules, "RULES", list(rules.RULES))  # the registration ends with the test
    rules.register(Shouting())
    config = _ShoutingConfig(min_confidence=0.0)
    row = {"start": 0.0, "end": 5.0, "text": "THE TRAIN LEFT THE STATION ON TIME TODAY", "avg_logprob": -0.2,
           "no_speech_prob": 0.05, "compression_ratio": 1.4}
    assert decide(row, config) == ("reject", ["shouting"])
    assert decide({**row, "text": row["text"].lower()}, config) == ("keep", [])
    assert decide({**row, "avg_logprob": -3.0}, config)[1] == ["low_avg_logprob", "shouting"], "after the others"
    assert REASONS["shouting"].startswith("more than max_capitals_share")
    headers, table = rules.threshold_table(config.model_dump(), {"street": {"max_capitals_share": 0.8}})
    assert headers == ["threshold", "default", "street", "reasons"]
    assert ["max_capitals_share", 0.5, 0.8, "shouting"] in table
    assert table[-1][0] == "max_capitals_share", "listed after the earlier rules' settings"


def test_register_refuses_a_signal_rule_without_a_bound(monkeypatch):
    from pipelines import rules

    monkeypatch.setattr(rules, "RULES", list(rules.RULES))

    class Loose(rules.Rule):
        code, description, signal, fields = "loose", "no bound", "avg_logprob", ("min_avg_logprob",)

    with pytest.raises(ValueError, match="needs a bound"):
        rules.register(Loose())


def test_the_threshold_table_lists_the_rules_settings_in_registry_order():
    from pipelines.rules import RULES, threshold_table

    base = FilterConfig().model_dump()
    headers, table = threshold_table({**base, "an_old_setting": 3})
    assert headers == ["threshold", "default", "reasons"]
    names = [r[0] for r in table]
    assert names[:3] == ["min_avg_logprob", "max_no_speech_prob", "max_compression_ratio"]
    assert names[-1] == "an_old_setting" and table[-1][2] == "(no rule reads it)"
    assert set(names[:-1]) == {f for rule in RULES for f in rule.fields}
    by_name = {r[0]: r for r in table}
    assert by_name["min_language_probability"][2] == "language_mismatch"
    assert by_name["trim"][2] == "low_word_prob_run, disputed_word, unlabelled_gap, language_mismatch"
    assert by_name["confidence_model"][1].startswith("logistic model over avg_logprob, "), "a model by its features"


def test_signal_rules_are_what_calibration_sweeps():
    from pipelines.rules import signal_thresholds

    assert signal_thresholds() == {"avg_logprob": "min_avg_logprob", "no_speech_prob": "max_no_speech_prob",
                                   "compression_ratio": "max_compression_ratio",
                                   "mean_word_prob": "min_mean_word_prob", "agreement_cer": "max_agreement_cer",
                                   "rms_dbfs": "min_rms_dbfs"}


def test_too_quiet_rejects_a_label_on_near_silence_when_turned_on():
    row = {"start": 0.0, "end": 5.0, "text": "the train left the station on time today", "avg_logprob": -0.2,
           "no_speech_prob": 0.05, "compression_ratio": 1.4, "rms_dbfs": -71.0}
    assert decide(row, FilterConfig(min_confidence=0.0)) == ("keep", []), "off by default"
    on = FilterConfig(min_rms_dbfs=-55.0, min_confidence=0.0)
    assert decide(row, on) == ("reject", ["too_quiet"])
    assert decide({**row, "rms_dbfs": -30.0}, on) == ("keep", [])
    assert decide({**row, "rms_dbfs": None}, on) == ("keep", []), "no loudness measured: the rule is silent"
    assert decide({**row, "avg_logprob": -2.0}, on)[1] == ["low_avg_logprob", "too_quiet"]
    assert "too_quiet" in REASONS and "min_rms_dbfs" in {r[0] for r in threshold_table(on.model_dump())[1]}


def test_turning_too_quiet_on_only_adds_its_own_reason_last():
    rows = [dict(zip(FROZEN["fields"], values)) for values in FROZEN["rows"]]
    for name, cfg in FROZEN["configs"].items():
        config = FilterConfig(**{**BEFORE_FROZEN_WAS_THAWED, **cfg}, min_rms_dbfs=-55.0)
        for row, expected in zip(rows, FROZEN["expected"][name]):
            quiet = row["rms_dbfs"] is not None and row["rms_dbfs"] < -55.0
            assert decide(row, config)[1] == expected + ["too_quiet"] * quiet
