"""Streaming training on releases: dataset, curriculum, CTC model, loop, evaluation, run summary.

``train(config)`` is the one entry point (the CLI and flows call it). Importing this package
needs no torch; ``train`` imports it when called.
"""
from training.config import TrainConfig


def train(config):
    """Run or resume a training run; see :func:`training.loop.train`."""
    from training.loop import train as _train

    return _train(config)


__all__ = ["TrainConfig", "train"]
