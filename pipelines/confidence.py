"""A combined confidence score: logistic regression over signals every manifest row has.

Features (all from the manifest, so a re-filter can score segments without ASR): avg_logprob,
no_speech_prob, compression_ratio, characters per second and log duration. Fitted by
calibration on a gold set; saved in the filter config as plain numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

FEATURES = ("avg_logprob", "no_speech_prob", "compression_ratio", "chars_per_second", "log_duration")


def feature_vector(row: dict) -> np.ndarray | None:
    """The features of one segment row, or None when a signal is missing (no label)."""
    duration = row["end"] - row["start"]
    if row.get("avg_logprob") is None or row.get("no_speech_prob") is None or row.get("compression_ratio") is None:
        return None
    text = (row.get("text") or "").strip()
    return np.array([row["avg_logprob"], row["no_speech_prob"], row["compression_ratio"],
                     len(text) / duration if duration > 0 else 0.0, math.log(max(duration, 1e-3))])


@dataclass(frozen=True)
class ConfidenceModel:
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    features: tuple[str, ...] = FEATURES

    def score(self, row: dict) -> float | None:
        x = feature_vector(row)
        if x is None:
            return None
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(1.0 / (1.0 + math.exp(-(float(z @ np.asarray(self.weights)) + self.bias))))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConfidenceModel":
        if tuple(d.get("features", FEATURES)) != FEATURES:
            raise ValueError(f"confidence model features {d.get('features')} are not this code's {list(FEATURES)}")
        return cls(mean=list(d["mean"]), scale=list(d["scale"]), weights=list(d["weights"]), bias=float(d["bias"]))


def fit(rows: list[dict], labels: list[bool], *, l2: float = 1.0, iterations: int = 50) -> ConfidenceModel:
    """Logistic regression (Newton's method, L2-regularised) of ``labels`` on the rows' features."""
    pairs = [(feature_vector(r), y) for r, y in zip(rows, labels)]
    pairs = [(x, y) for x, y in pairs if x is not None]
    if len(pairs) < 4 or len({y for _, y in pairs}) < 2:
        raise ValueError(f"need labelled segments of both classes to fit a confidence model, got {len(pairs)}")
    X = np.stack([x for x, _ in pairs])
    y = np.array([float(v) for _, v in pairs])
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    Z = np.hstack([(X - mean) / scale, np.ones((len(X), 1))])
    w = np.zeros(Z.shape[1])
    reg = np.full(Z.shape[1], l2)
    reg[-1] = 0.0  # the bias is not regularised
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(Z @ w)))
        grad = Z.T @ (p - y) + reg * w
        hess = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return ConfidenceModel(mean=mean.tolist(), scale=scale.tolist(), weights=w[:-1].tolist(), bias=float(w[-1]))
