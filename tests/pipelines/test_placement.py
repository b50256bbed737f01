"""What the build hands between nodes and how it asks Ray to place stages (no cluster needed)."""
from __future__ import annotations

from pipelines.build import _placement


def test_placement_options():
    assert _placement({}) == {}
    assert _placement({"asr": 1.0}) == {"resources": {"asr": 1.0}}
