"""The ``build-corpus`` and ``refilter`` flows: thin sequences of tasks; the logic is in ``pipelines``."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.runtime import flow_run as current_flow_run

from corpus.release import Release, ReleaseError, verify_release
from corpus.store import StoreError, open_store
from flows import ray_runner
from flows.artifacts import artifact_key, release_datasheet
from pipelines.config import Source

# a flow's sources are the build config's own model (one definition of a source)
SourceSpec = Source


def expand_release_name(name: str, now: dt.datetime | None = None) -> str:
    """``{now}`` in a release name becomes the UTC time, e.g. nightly-{now} → nightly-20261122-020000."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return name.replace("{now}", now.strftime("%Y%m%d-%H%M%S"))


# --------------------------------------------------------------------------- tasks


@task
def resolve_build_config(config: str | None, release: str, store: str | None, sources: list[SourceSpec] | None,
                         thresholds: dict[str, float] | None, endpoint_url: str | None) -> dict:
    """Validate everything before any Ray work: config, thresholds, the store and the sources."""
    from pipelines.config import load_config
    from pipelines.sources import list_sources

    resolved = load_config(config, release=expand_release_name(release), store=store, endpoint_url=endpoint_url,
                           sources=[s.model_dump() for s in sources] if sources else None)
    if thresholds:
        resolved = load_config(None, **{**resolved.resolved(), "filter": {**resolved.filter.model_dump(), **thresholds}})
    open_store(resolved.store, endpoint_url=resolved.endpoint_url).probe()
    files, _ = list_sources(resolved.sources, endpoint_url=resolved.endpoint_url)
    if not files:
        raise ValueError(f"no audio files under the sources {[s.uri for s in resolved.sources]}")
    return resolved.resolved()


@task(retries=2, retry_delay_seconds=5)
def new_audio_since_last_release(config: dict) -> list[str]:
    """URIs of audio files listed now that the newest release from this store has not seen."""
    from pipelines.config import BuildConfig
    from pipelines.sources import list_sources, seen_by_latest_release

    resolved = BuildConfig.model_validate(config)
    store = open_store(resolved.store, endpoint_url=resolved.endpoint_url)
    files, _ = list_sources(resolved.sources, endpoint_url=resolved.endpoint_url)
    seen = seen_by_latest_release(store)
    return [f.uri for f in files if f.file_key not in seen]


@task
def run_build_job(config: dict, ray: str, ray_address: str | None) -> dict:
    log = get_run_logger()
    if ray == "submit":
        if not ray_address:
            raise ValueError("ray='submit' needs ray_address (the cluster's dashboard URL, e.g. http://127.0.0.1:8265)")
        return ray_runner.run_submitted(config, ray_address, ray_runner.submission_id(current_flow_run.id), log)
    log.info("running the build on a local Ray cluster")
    return ray_runner.run_local({**config, "ray_address": ray_address})


@task(retries=2, retry_delay_seconds=5)
def verify(store_uri: str, release: str, endpoint_url: str | None) -> dict:
    store = open_store(store_uri, endpoint_url=endpoint_url)
    problems = verify_release(store, release)
    if problems:
        raise ReleaseError(f"release {release} failed verification: " + "; ".join(problems[:10]))
    return Release.open(store, release).info


@task
def publish_datasheet(release: str, store_uri: str, endpoint_url: str | None) -> str:
    """The release's own datasheet as a markdown artifact, and a link to its commit record."""
    store = open_store(store_uri, endpoint_url=endpoint_url)
    key = artifact_key(release)
    create_markdown_artifact(markdown=release_datasheet(store, release), key=key,
                             description=f"datasheet of release {release}")
    url = store.url(f"releases/{release}/RELEASE.json")
    create_link_artifact(link=url, link_text=f"release {release}", key=f"{key}-link",
                         description="the release's commit record")
    return url


# --------------------------------------------------------------------------- flows


def _stop_ray_job(flow, flow_run, state):
    """On cancellation: stop the submitted Ray job (a local cluster dies with the flow's process)."""
    params = flow_run.parameters or {}
    if params.get("ray") == "submit" and params.get("ray_address"):
        ray_runner.stop_submitted(params["ray_address"], ray_runner.submission_id(flow_run.id))


@flow(name="build-corpus", on_cancellation=[_stop_ray_job], log_prints=True)
def build_corpus(release: str = "build-{now}", config: str | None = None, store: str | None = None,
                 sources: list[SourceSpec] | None = None, thresholds: dict[str, float] | None = None,
                 ray: Literal["local", "submit"] = "local", ray_address: str | None = None,
                 endpoint_url: str | None = None, only_if_new_audio: bool = False) -> dict:
    """Resolve the config → run the Ray build → verify the release → publish its datasheet."""
    resolved = resolve_build_config(config, release, store, sources, thresholds, endpoint_url)
    if only_if_new_audio:
        new = new_audio_since_last_release(resolved)
        if not new:
            get_run_logger().info("no new audio since the last release: nothing to build")
            return {"skipped": True, "release": None}
        get_run_logger().info("%d new audio files, e.g. %s", len(new), new[0])
    summary = run_build_job(resolved, ray, ray_address)
    info = verify(resolved["store"], resolved["release"], resolved.get("endpoint_url"))
    url = publish_datasheet(resolved["release"], resolved["store"], resolved.get("endpoint_url"))
    return {"skipped": False, "release": resolved["release"], "store": resolved["store"], "url": url,
            "counts": info["counts"], "segments_labelled_now": summary["segments_labelled_now"]}


@task
def validate_refilter(store: str, source_release: str, thresholds: dict | None, domain_thresholds: dict | None,
                      endpoint_url: str | None) -> None:
    from corpus.schema import validate_name
    from corpus.store import validate_endpoint_url, validate_store_uri
    from pipelines.refilter import check_request

    validate_store_uri(store)
    validate_endpoint_url(endpoint_url)
    validate_name("release", source_release)
    s = open_store(store, endpoint_url=endpoint_url)
    s.probe()
    check_request(s, source_release, thresholds, domain_thresholds)


@task
def run_refilter(store: str, source_release: str, release: str, thresholds: dict | None,
                 domain_thresholds: dict | None, endpoint_url: str | None) -> dict:
    from pipelines.refilter import refilter_release
    from presentation.datasheet import datasheet_url, write_datasheet

    opened = open_store(store, endpoint_url=endpoint_url)
    summary = refilter_release(opened, source_release, release, thresholds=thresholds,
                               domain_thresholds=domain_thresholds, endpoint_url=endpoint_url)
    write_datasheet(opened, release)
    return {**summary, "datasheet": datasheet_url(opened, release)}


@flow(name="refilter", log_prints=True)
def refilter(source_release: str, release: str, store: str, thresholds: dict[str, float] | None = None,
             domain_thresholds: dict[str, dict[str, float]] | None = None, endpoint_url: str | None = None) -> dict:
    """New thresholds → a new release from an existing one's manifest, never re-running ASR."""
    from corpus.schema import validate_name

    release = validate_name("release", expand_release_name(release))
    validate_refilter(store, source_release, thresholds, domain_thresholds, endpoint_url)
    summary = run_refilter(store, source_release, release, thresholds, domain_thresholds, endpoint_url)
    info = verify(store, release, endpoint_url)
    url = publish_datasheet(release, store, endpoint_url)
    return {"release": release, "store": store, "url": url, "counts": info["counts"], "kept": summary["kept"],
            "audio_reused": summary["audio_reused"], "audio_recut": summary["audio_recut"],
            "segments_labelled_now": summary["segments_labelled_now"]}


__all__ = ["build_corpus", "refilter", "SourceSpec", "expand_release_name", "StoreError"]
