"""A source may declare the split of all its recordings (a designated held-out set)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.build import _fixed_splits, _manifest_rows
from pipelines.config import BuildConfig, Source
from pipelines.sources import list_sources


def test_a_declared_split_wins_over_the_hash_and_other_sources_keep_theirs(tmp_path):
    for folder in ("raw", "heldout"):
        (tmp_path / folder).mkdir()
        for n in range(6):
            (tmp_path / folder / f"phone-{n}.wav").write_bytes(b"RIFF" + bytes(n))
    config = BuildConfig(release="r", store=str(tmp_path / "store"), sources=[
        {"uri": str(tmp_path / "raw"), "domain": "phone"},
        {"uri": str(tmp_path / "heldout"), "domain": "phone", "split": "validation"}])
    files, _ = list_sources(config.sources)
    fixed = _fixed_splits(files, config)
    assert set(fixed.values()) == {"validation"} and len(fixed) == 1
    recordings = [{"recording_id": f"r{i}", "source_uri": f.source_uri, "domain": f.domain, "key": f.key,
                   "uri": f.uri} for i, f in enumerate(files)]
    labels = {r["recording_id"]: [{"segment_id": f"{r['recording_id']}-s", "start": 0.0, "end": 1.0, "text": "a",
                                   "avg_logprob": -0.1, "no_speech_prob": 0.0, "compression_ratio": 1.0}]
              for r in recordings}
    rows = _manifest_rows(recordings, labels, config, {}, fixed)
    by_source = {}
    for rec, row in zip(recordings, rows):
        by_source.setdefault("heldout" if "heldout" in rec["source_uri"] else "raw", set()).add(row["split"])
    assert by_source["heldout"] == {"validation"}
    assert by_source["raw"] <= {"train", "validation", "test"}
    assert "train" in by_source["raw"]  # hashed by the fractions, as before


def test_an_unknown_split_name_is_refused():
    with pytest.raises(ValidationError, match="split"):
        Source(uri="/raw", domain="phone", split="dev")
