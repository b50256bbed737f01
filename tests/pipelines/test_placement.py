"""How the build asks Ray to place its stages (no cluster needed)."""
from __future__ import annotations

from pipelines.build import build_stages
from pipelines.config import load_config
from pipelines.runner import RayExecutor
from pipelines.stages import Resources


def test_placement_options():
    assert RayExecutor._placement(Resources()) == {}
    assert RayExecutor._placement(Resources(custom={"asr": 1.0})) == {"resources": {"asr": 1.0}}


def test_each_stage_asks_for_its_node_pool(tmp_path):
    from corpus.store import open_store

    config = load_config(None, release="r", store=str(tmp_path / "store"), sources=[{"uri": str(tmp_path), "domain": "d"}],
                         resources={"label_resources": {"asr": 1}, "cpu_resources": {"cpu_pool": 0.5},
                                    "label_actors": 3, "decode_workers": 2})
    stages = {s.name: s for s in build_stages(open_store(config.store), config, [])}
    label, ingest = stages["label"].resources(), stages["ingest"].resources()
    assert label.custom == {"asr": 1} and label.actors and label.workers == 3
    assert ingest.custom == {"cpu_pool": 0.5} and not ingest.actors and ingest.workers == 2
    assert [name for name, s in stages.items() if s.on == "workers"] == ["ingest", "label"]
