"""Deployments of the flows, served by ``stt-corpus flows serve``.

- ``build-corpus/nightly``: cron (default 02:00 UTC), builds ``nightly-<time>`` only if the
  sources hold audio that the newest release has not seen;
- ``build-corpus/on-new-audio``: polls the sources every N minutes, same rule: a build starts
  only when new audio has landed;
- ``build-corpus/manual``, ``refilter/manual`` and ``train/manual``: for maintainers, e.g.
  ``prefect deployment run 'build-corpus/manual' -p release=v2``.
"""
from __future__ import annotations

from pathlib import Path

from flows.build_corpus import build_corpus, refilter
from flows.train import train

DEFAULT_CRON = "0 2 * * *"


def make_deployments(config: str | None = None, *, cron: str = DEFAULT_CRON, poll_minutes: float = 15.0,
                     ray: str = "local", ray_address: str | None = None) -> list:
    base = {"ray": ray, "ray_address": ray_address}
    if config:
        base["config"] = str(Path(config).resolve()) if "://" not in config else config
    return [
        build_corpus.to_deployment(name="nightly", cron=cron, tags=["corpus"],
                                   parameters={**base, "release": "nightly-{now}", "only_if_new_audio": True}),
        build_corpus.to_deployment(name="on-new-audio", interval=poll_minutes * 60, tags=["corpus"],
                                   parameters={**base, "release": "auto-{now}", "only_if_new_audio": True}),
        build_corpus.to_deployment(name="manual", tags=["corpus"], parameters=base),
        refilter.to_deployment(name="manual", tags=["corpus"]),
        train.to_deployment(name="manual", tags=["training"]),
    ]


def serve_deployments(config: str | None = None, **options) -> None:
    from prefect import serve

    serve(*make_deployments(config, **options))
