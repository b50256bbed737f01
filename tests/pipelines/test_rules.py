"""Filter rules: decide() reproduces the reasons releases were built with, in the same order."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import FilterConfig
from pipelines.filter import REASONS, decide

# 300 rows over every rule and 4 configs, and the reasons decide() gave for them before the rules
# became classes (tests/pipelines/frozen/make_decide_frozen.py wrote it with that code; not to be
# regenerated: it is what existing releases hold)
FROZEN = json.loads((Path(__file__).parent / "frozen" / "decide_frozen.json").read_text())


@pytest.mark.parametrize("name", sorted(FROZEN["configs"]))
def test_decide_gives_the_frozen_reasons_in_the_frozen_order(name):
    config = FilterConfig(**FROZEN["configs"][name])
    rows = [dict(zip(FROZEN["fields"], values)) for values in FROZEN["rows"]]
    got = [decide(row, config) for row in rows]
    expected = FROZEN["expected"][name]
    mismatches = [(i, g[1], e) for i, (g, e) in enumerate(zip(got, expected)) if g[1] != e]
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[:3]}"
    assert [g[0] for g in got] == ["reject" if e else "keep" for e in expected]


def test_the_frozen_rows_cover_every_reason():
    seen = {code for reasons in FROZEN["expected"].values() for r in reasons for code in r}
    assert seen == set(REASONS)
