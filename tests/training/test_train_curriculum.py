"""Curriculum files: validation, resolution against a real release, weights over the schedule."""
from __future__ import annotations

import math

import pytest

from corpus.release import Release
from training.curriculum import (CurriculumError, DomainStats, default_curriculum, domain_stats, load_curriculum,
                                 resolve, uniform_curriculum)
from training_helpers import RELEASE, local_store_with_release

GOOD = """\
name: clean-first
phases:
  - name: clean-short
    steps: 100
    weights: {audiobook: 3, phone: 1}
    filters: {max_duration: 6.0, min_confidence: -0.4}
  - name: widen
    steps: 100
    weights: hours
    interpolate: true
  - name: all
    weights: equal
"""


def _write(tmp_path, text):
    path = tmp_path / "curriculum.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    store = local_store_with_release(tmp_path_factory)
    return domain_stats(Release.open(store, RELEASE).manifest().to_pylist())


def test_a_good_file_loads(tmp_path):
    spec = load_curriculum(_write(tmp_path, GOOD))
    assert [p.name for p in spec.phases] == ["clean-short", "widen", "all"]
    assert spec.phases[0].filters.max_duration == 6.0 and spec.phases[1].interpolate


@pytest.mark.parametrize("bad,message", [
    (GOOD.replace("{audiobook: 3, phone: 1}", "{audiobook: 3, phone: -1}"),
     r"phases\.0\.weights.*'phone' has weight -1.0; weights must be finite and >= 0"),
    (GOOD.replace("{audiobook: 3, phone: 1}", "{}"), r"phases\.0\.weights.*weights is empty"),
    (GOOD.replace("{audiobook: 3, phone: 1}", "{'': 1}"), r"empty domain name"),
    (GOOD.replace("{audiobook: 3, phone: 1}", "{audiobook: 0, phone: 0}"), r"every weight is 0"),
    (GOOD.replace("    interpolate: true\n", "    interpolate: true\n    warmup: 5\n"),
     r"phases\.1\.warmup: unknown key"),
    (GOOD.replace("name: clean-first", "name: clean-first\nmix: linear"), r"mix: unknown key"),
    (GOOD.replace("{max_duration: 6.0,", "{max_seconds: 6.0,"), r"phases\.0\.filters\.max_seconds: unknown key"),
    (GOOD.replace("    steps: 100\n    weights: hours", "    weights: hours"), r"only the last phase may leave"),
    (GOOD.replace("    steps: 100\n    weights: hours", "    hours: 0.5\n    weights: hours"), r"mix length units"),
    (GOOD.replace("    steps: 100\n    weights: {", "    steps: 100\n    hours: 1\n    weights: {"),
     r"give one length"),
    (GOOD.replace("    weights: equal", "    weights: loudest"), r"weights"),
    (GOOD.replace("steps: 100\n    weights: {", "steps: 100\n    interpolate: true\n    weights: {"),
     r"first phase has no previous phase"),
    ("phases: []\n", r"phases"),
    ("- just a list\n", r"must hold a mapping"),
])
def test_bad_files_fail_with_a_message_naming_the_problem(tmp_path, bad, message):
    with pytest.raises(CurriculumError, match=message):
        load_curriculum(_write(tmp_path, bad))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CurriculumError, match="does not exist"):
        load_curriculum(tmp_path / "nope.yaml")


def test_resolve_fixes_boundaries_and_normalises_weights(tmp_path, stats):
    schedule = resolve(load_curriculum(_write(tmp_path, GOOD)), stats, release=RELEASE, max_steps=None,
                       max_hours=None)
    assert schedule.unit == "steps" and schedule.domains == ("audiobook", "phone", "radio", "street")
    assert [(p.start, p.end) for p in schedule.phases] == [(0, 100), (100, 200), (200, math.inf)]
    n, w = schedule.at(10)
    assert n == 0 and w == pytest.approx({"audiobook": 0.75, "phone": 0.25, "radio": 0.0, "street": 0.0})
    hours = {d: s.hours / sum(x.hours for x in stats.values()) for d, s in stats.items()}
    n, w = schedule.at(150)  # halfway through the interpolated phase
    assert n == 1
    assert w == pytest.approx({d: 0.5 * schedule.phases[0].weights[d] + 0.5 * hours[d] for d in hours})
    assert schedule.at(199.999)[1] == pytest.approx(hours, abs=1e-4)
    assert schedule.at(5000) == (2, {d: 0.25 for d in hours})


def test_a_domain_without_training_data_fails_at_resolve(tmp_path, stats):
    spec = load_curriculum(_write(tmp_path, GOOD.replace("phone: 1", "podcast: 1")))
    with pytest.raises(CurriculumError, match=r"phase 'clean-short'.*\['podcast'\] have no training data in release"):
        resolve(spec, stats, release=RELEASE, max_steps=100, max_hours=None)


def test_filters_that_leave_a_weighted_domain_empty_fail_at_resolve(tmp_path, stats):
    spec = load_curriculum(_write(tmp_path, GOOD.replace("max_duration: 6.0", "max_duration: 0.5")))
    with pytest.raises(CurriculumError, match="no training sample of domain 'audiobook' passes the filters"):
        resolve(spec, stats, release=RELEASE, max_steps=100, max_hours=None)


def test_fractions_resolve_against_the_budget(stats):
    spec, note = default_curriculum(stats)
    assert "audiobook" in note
    by_steps = resolve(spec, stats, release=RELEASE, max_steps=500, max_hours=None)
    assert by_steps.unit == "steps" and [p.end for p in by_steps.phases] == [100, 250, math.inf]
    by_hours = resolve(spec, stats, release=RELEASE, max_steps=None, max_hours=2.0)
    assert by_hours.unit == "hours" and [p.end for p in by_hours.phases] == pytest.approx([0.4, 1.0, math.inf])
    with pytest.raises(CurriculumError, match="needs max_steps or max_hours"):
        resolve(spec, stats, release=RELEASE, max_steps=None, max_hours=None)


def test_default_starts_clean_short_and_confident_then_widens():
    stats = {
        "audiobook": DomainStats(hours=1.0, durations=(2.0, 4.0, 6.0), confidences=(-0.1, -0.2, -0.3)),
        "street": DomainStats(hours=3.0, durations=(3.0, 9.0, 12.0), confidences=(-0.8, -0.9, -0.6)),
    }
    spec, note = default_curriculum(stats)
    first = spec.phases[0]
    assert first.weights == {"audiobook": 1.0} and "avg_logprob" in note
    assert first.filters.max_duration == 4.0 and first.filters.min_confidence == -0.15
    schedule = resolve(spec, stats, release="x", max_steps=100, max_hours=None)
    assert schedule.at(0)[1] == {"audiobook": 1.0, "street": 0.0}
    assert schedule.at(99)[1] == pytest.approx({"audiobook": 0.25, "street": 0.75})
    assert schedule.phases[0].filters.accepts({"duration": 3.9, "avg_logprob": -0.15})
    assert not schedule.phases[0].filters.accepts({"duration": 3.9, "avg_logprob": -0.16})
    assert schedule.phases[0].filters.accepts({"duration": 3.9, "avg_logprob": None})  # reference labels pass
    assert not schedule.phases[0].filters.accepts({"duration": 4.5, "avg_logprob": -0.1})


def test_uniform_is_proportional_to_hours(stats):
    schedule = resolve(uniform_curriculum(), stats, release=RELEASE, max_steps=10, max_hours=None)
    total = sum(s.hours for s in stats.values())
    assert schedule.at(0)[1] == pytest.approx({d: s.hours / total for d, s in stats.items()})
    assert len(schedule.phases) == 1 and schedule.phases[0].filters.max_duration is None


def test_default_first_phase_keeps_samples_when_length_and_confidence_disagree():
    """Long samples most confident, short ones least (as ASR labels often are): both filters still keep one."""
    stats = {"audiobook": DomainStats(hours=0.02, durations=(26.8, 26.7, 5.8), confidences=(-0.348, -0.39712, -0.664)),
             "radio": DomainStats(hours=0.02, durations=(29.8, 29.7), confidences=(-0.42, -0.55))}
    spec, _ = default_curriculum(stats)
    schedule = resolve(spec, stats, release="demo", max_steps=60, max_hours=None)  # raises if nothing passes
    assert stats["audiobook"].passing(schedule.phases[0].filters) >= 1
