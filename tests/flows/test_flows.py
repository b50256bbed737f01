"""The flows against a real (temporary) Prefect API server, with real Ray and the real model."""
from __future__ import annotations

import asyncio
import sys

import pytest

from reference.gen_audio import DOMAINS, generate
from corpus.release import Release, verify_release
from corpus.store import open_store
from flows.artifacts import artifact_key, document_markdown
from flows.build_corpus import SourceSpec, build_corpus, expand_release_name, refilter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    generate(out, minutes=2.0, seed=8)
    return out


def _sources(raw):
    return [SourceSpec(uri=str(raw), include=f"{d}-*", domain=d) for d in DOMAINS]


async def _artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("store"))
    result = build_corpus(release="v1", store=store, sources=_sources(raw), thresholds={"min_avg_logprob": -0.6})
    return store, result


def test_build_corpus_flow_completes_with_a_verified_release_and_artifacts(built):
    store, result = built
    assert result["release"] == "v1" and not result["skipped"]
    assert verify_release(open_store(store), "v1") == []
    assert Release.open(open_store(store), "v1").config()["filter"]["min_avg_logprob"] == -0.6
    markdown = asyncio.run(_artifacts(artifact_key("v1")))
    # the release's own datasheet, with its plots linked where the store keeps them
    written = open_store(store).get_bytes("releases/v1/datasheet.md").decode()
    assert markdown and "Hours per domain and split" in markdown[0].data and "| phone |" in markdown[0].data
    plots = open_store(store).url("releases/v1/datasheet.md").removesuffix("datasheet.md") + "plots/"
    assert "](plots/" in written and markdown[0].data == written.replace("](plots/", f"]({plots}")
    link = asyncio.run(_artifacts(artifact_key("v1") + "-link"))
    assert link and "releases/v1/RELEASE.json" in link[0].data


def test_refilter_is_stricter_keeps_ids_and_never_runs_asr(built, monkeypatch):
    store, _ = built
    # any import of the ASR stack fails from here on: the re-filter must not need it
    for module in ("faster_whisper", "ctranslate2", "pipelines.asr"):
        monkeypatch.setitem(sys.modules, module, None)
    # stricter than the median kept segment's avg_logprob: some kept segments must go, whatever the model
    kept = Release.open(open_store(store), "v1").manifest().to_pandas().query("decision == 'keep'")
    strict = float(kept.avg_logprob.dropna().median()) + 1e-6
    result = refilter(source_release="v1", release="v1-strict", store=store, thresholds={"min_avg_logprob": strict})
    assert result["segments_labelled_now"] == 0 and result["audio_recut"] == 0
    old, new = (Release.open(open_store(store), n).manifest().to_pandas() for n in ("v1", "v1-strict"))
    assert list(new.segment_id) == list(old.segment_id) and list(new.text) == list(old.text)
    assert (new.decision == "keep").sum() < (old.decision == "keep").sum()
    assert verify_release(open_store(store), "v1-strict") == []


def test_refilter_back_to_the_old_thresholds_gives_byte_identical_shards(built):
    store, _ = built
    refilter(source_release="v1", release="v1-strict2", store=store, thresholds={"min_avg_logprob": -0.3})
    refilter(source_release="v1-strict2", release="v1-again", store=store, thresholds={"min_avg_logprob": -0.6})
    a, b = (Release.open(open_store(store), n) for n in ("v1", "v1-again"))
    assert [(r["url"], r["sha256"]) for r in a.shards()] == [(r["url"], r["sha256"]) for r in b.shards()]


def test_nightly_rule_builds_only_when_there_is_new_audio(built, raw):
    store, _ = built
    result = build_corpus(release="nightly-{now}", store=store, sources=_sources(raw), only_if_new_audio=True)
    assert result == {"skipped": True, "release": None}


@pytest.mark.parametrize("params, message", [
    ({"thresholds": {"min_avg_logprob": 0.5}}, "filter.min_avg_logprob"),
    ({"store": "s3://nowhere-bucket/x", "endpoint_url": "http://127.0.0.1:9"}, "unreachable"),
    ({"sources": [{"uri": "/no/such/dir", "domain": "phone"}]}, "does not exist"),
    ({"release": "../escape"}, "invalid release name"),
])
def test_bad_build_parameters_fail_at_validation_before_ray(raw, tmp_path, params, message):
    import ray

    args = {"release": "bad", "store": str(tmp_path / "store"), "sources": _sources(raw), **params}
    state = build_corpus(**args, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=message):
        state.result()
    assert not ray.is_initialized() and not (tmp_path / "store" / "work").exists()


@pytest.mark.parametrize("params, message", [
    ({"domain_thresholds": {"podcast": {"min_avg_logprob": -0.5}}}, r"unknown domain\(s\) \['podcast'\]"),
    ({"thresholds": {"max_no_speech_prob": 2.0}}, "max_no_speech_prob"),
    ({"source_release": "missing"}, "no release 'missing'"),
])
def test_bad_refilter_parameters_fail_at_validation(built, params, message):
    store, _ = built
    args = {"source_release": "v1", "release": "never", "store": store, **params}
    state = refilter(**args, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=message):
        state.result()
    assert not open_store(store).exists("releases/never/RELEASE.json")


def test_published_documents_link_images_in_the_store_and_names(tmp_path):
    store = open_store(str(tmp_path))
    store.put_bytes("releases/v1/datasheet.md", b"# v1\n![hours](plots/hours.png) ![x](https://e.org/a.png)\n")
    md = document_markdown(store, "releases/v1/datasheet.md")
    assert f"![hours]({store.url('releases/v1/plots/hours.png')})" in md and "![x](https://e.org/a.png)" in md
    assert artifact_key("Nightly_2026.1") == "release-nightly-2026-1"
    import datetime as dt
    assert expand_release_name("n-{now}", dt.datetime(2026, 1, 2, 3, 4, 5)) == "n-20260102-030405"


def test_train_flow_runs_the_same_training_and_publishes_its_report(built):
    from flows.train import train

    store, _ = built
    result = train(store=store, release="v1", run="flow-run", max_steps=6,
                   options={"eval_every": 3, "checkpoint_every": 3, "eval_splits": ["train"], "num_workers": 0})
    assert result["steps"] == 6 and result["audio_hours"] > 0
    assert open_store(store).exists("runs/flow-run/report.md")
    published = asyncio.run(_artifacts("run-flow-run"))
    assert published, "the run's report is published as an artifact"
    assert published[0].data == document_markdown(open_store(store).at("runs/flow-run"), "report.md")
    assert "![CER](" + open_store(store).url("runs/flow-run/cer.png") in published[0].data


def test_train_flow_fails_at_validation_for_a_missing_release(built):
    from flows.train import train

    store, _ = built
    state = train(store=store, release="nope", run="x", max_steps=5, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="no release 'nope'"):
        state.result()
    assert not open_store(store).exists("runs/x/config.json")
