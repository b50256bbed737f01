"""The bad-input corpus (tests/reliability/bad_corpus.py): every kind of bad file, special file
and bad name is contained with a specific reason, by the ingest stage alone and by a real build
beside good recordings, which are labelled; nothing crashes or hangs."""
from __future__ import annotations

import io
import time

import pyarrow.parquet as pq
import pytest

from bad_corpus import GOOD_SPEECH, KINDS, MAX_BYTES, make_bad_corpus, tag_of
from corpus.release import Release, verify_release
from corpus.store import open_store
from pipelines.config import IngestConfig, load_config
from pipelines.ingest import Ingest
from pipelines.sources import list_sources
from rel_helpers import local_ray  # noqa: F401  (fixture)

pytestmark = pytest.mark.reliability
BUILD_LEVEL = {"k04", "k05"}  # duplicate / near-duplicate: decided across files, after labelling


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, fixtures_dir):
    return make_bad_corpus(tmp_path_factory.mktemp("bad") / "raw", fixtures_dir)


def _outcome(row: dict) -> str:
    if row["status"] == "ok":
        return "ok"
    return row["reason"] if row["status"] == "quarantine" else f"deferred:{row['reason']}"


def test_the_corpus_has_at_least_25_kinds():
    assert len(KINDS) >= 25 and len({v[1] for v in KINDS.values()}) >= 15


def test_ingest_gives_each_kind_its_specific_reason(corpus):
    from types import SimpleNamespace

    files, ignored = list_sources([SimpleNamespace(uri=str(corpus), domain="mixed", language="en", licence="t")])
    assert [u.rsplit("/", 1)[-1] for u in ignored] == ["README.txt"]
    assert {tag_of(f.uri) for f in files} == set(KINDS), "every kind is listed, none silently dropped"
    stage = Ingest(**{**IngestConfig().model_dump(), "max_bytes": MAX_BYTES})
    got, seconds = {}, {}
    for f in files:
        start = time.perf_counter()
        got[tag_of(f.uri)] = _outcome(stage(f.to_dict()))
        seconds[tag_of(f.uri)] = time.perf_counter() - start
    expected = {tag: ("ok" if tag in BUILD_LEVEL else outcome) for tag, (_, outcome) in KINDS.items()}
    assert got == expected
    assert max(seconds.values()) < 60, f"one file took {max(seconds.values()):.1f} s"


def test_ingest_refuses_a_file_that_differs_from_its_listing(corpus):
    from types import SimpleNamespace

    files, _ = list_sources([SimpleNamespace(uri=str(corpus), domain="mixed", language="en", licence="t")])
    good = next(f.to_dict() for f in files if tag_of(f.uri) == "k01")
    stage = Ingest(**IngestConfig().model_dump())
    for size in (good["size"] - 1000, good["size"] + 1000):  # grew after listing / shrank after listing
        row = stage({**good, "size": size})
        assert (row["status"], row["reason"]) == ("quarantine", "size_mismatch"), row["detail"]


def test_build_contains_every_bad_kind_and_labels_the_good_files(local_ray, corpus, tmp_path):
    from pipelines.build import run_build

    config = load_config(None, release="bad", store=str(tmp_path / "store"), ingest={"max_bytes": MAX_BYTES},
                         sources=[{"uri": str(corpus), "domain": "mixed", "licence": "CC0-1.0"}],
                         resources={"num_cpus": 2}, model={"name": "tiny.en"})
    start = time.perf_counter()
    summary = run_build(config, progress=False)
    wall = time.perf_counter() - start
    store = open_store(tmp_path / "store")
    assert verify_release(store, "bad") == []
    release = Release.open(store, "bad")
    rows = {}
    for name in ("recordings.parquet", "quarantine.parquet"):
        for row in pq.read_table(io.BytesIO(release.store.get_bytes(name))).to_pylist():
            rows[tag_of(row["uri"])] = row
    got = {tag: _outcome(row) for tag, row in rows.items()}
    assert got == {tag: outcome for tag, (_, outcome) in KINDS.items()}
    labelled = {tag_of(u) for u in release.manifest().column("source_uri").to_pylist()}
    assert GOOD_SPEECH <= labelled and labelled <= {t for t, (_, o) in KINDS.items() if o == "ok"}
    assert summary["files"] == len(KINDS) and summary["ignored_files"] == 1
    print(f"\n{len(KINDS)} kinds in one build, {wall:.1f} s:")
    for tag, (what, outcome) in KINDS.items():
        print(f"  {tag} {what:<58} -> {got[tag]}")
