"""The ``train`` flow: validate the request, then the same ``training.train`` the CLI runs."""
from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from corpus.release import Release
from corpus.store import open_store
from flows.artifacts import artifact_key, run_report


@task
def validate_training(config: dict) -> dict:
    """Everything checkable before a step: the config, the store and the release."""
    from training.config import TrainConfig

    resolved = TrainConfig.model_validate(config)
    store = open_store(resolved.store, endpoint_url=resolved.endpoint_url)
    store.probe()
    Release.open(store, resolved.release)
    return resolved.model_dump(mode="json")


@task
def run_training(config: dict) -> dict:
    import training
    from presentation.training_report import REPORT_FILE, write_report
    from training.rundir import run_store

    result = training.train(config).to_dict()
    result["files"].update(write_report(run_store(open_store(config["store"], endpoint_url=config.get("endpoint_url")),
                                                  result["run"])))
    result["report_url"] = result["files"][REPORT_FILE]
    get_run_logger().info("trained %s steps on %.3f h of audio; report at %s", result["steps"],
                          result["audio_hours"], result["report_url"])
    return {k: result[k] for k in ("run", "run_url", "steps", "audio_hours", "wall_seconds", "device",
                                   "device_seconds", "final_eval", "corrupt_shards", "report_url")}


@task
def publish_report(result: dict, store: str, endpoint_url: str | None) -> None:
    """The run's own report (``presentation.training_report``: curves, evaluation, compute) as an artifact."""
    from training.rundir import run_store

    run = run_store(open_store(store, endpoint_url=endpoint_url), result["run"])
    key = "run-" + artifact_key(result["run"]).removeprefix("release-")
    create_markdown_artifact(markdown=run_report(run), key=key,
                             description=f"training run {result['run']}")
    create_link_artifact(link=result["report_url"], link_text=f"report of run {result['run']}", key=f"{key}-report")


@flow(name="train", log_prints=True)
def train(store: str, release: str, run: str, max_steps: int | None = None, max_hours: float | None = None,
          curriculum: str = "default", resume: bool = False, device: str = "auto", endpoint_url: str | None = None,
          options: dict | None = None) -> dict:
    """Domain-curriculum training streamed from the store (``options``: any other TrainConfig field)."""
    config = validate_training({"store": store, "release": release, "run": run, "max_steps": max_steps,
                                "max_hours": max_hours, "curriculum": curriculum, "resume": resume, "device": device,
                                "endpoint_url": endpoint_url, **(options or {})})
    result = run_training(config)
    publish_report(result, store, endpoint_url)
    return result
