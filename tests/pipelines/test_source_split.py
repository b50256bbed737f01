"""A source may declare the split of all its recordings (a designated held-out set)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from corpus.schema import Label, Recording, Segment
from pipelines.build import _fixed_splits
from pipelines.decide import AssignSplits
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
    recordings = [Recording(file_key=f.file_key, recording_id=f"r{i}", source_uri=f.source_uri, domain=f.domain,
                            key=f.key, uri=f.uri, segments=[Segment(f"r{i}-s", f"r{i}", 0.0, 1.0, Label(text="a"))])
                  for i, f in enumerate(files)]
    by_source = {}
    for rec in AssignSplits(config.splits, {}, fixed).process(recordings):
        by_source.setdefault("heldout" if "heldout" in rec.source_uri else "raw", set()).add(rec.split)
    assert by_source["heldout"] == {"validation"}
    assert by_source["raw"] <= {"train", "validation", "test"}
    assert "train" in by_source["raw"]  # hashed by the fractions, as before


def test_an_unknown_split_name_is_refused():
    with pytest.raises(ValidationError, match="split"):
        Source(uri="/raw", domain="phone", split="dev")
