"""A combined confidence score: logistic regression over signals every manifest row has.

Features (all from the manifest, so a re-filter can score segments without ASR):

``avg_logprob``, ``no_speech_prob``, ``compression_ratio``   the decoder's (a trimmed piece: its words')
``chars_per_second``, ``log_duration``                         from text and times
``mean_word_prob``                                             mean of the label's word probabilities
``agreement_cer``                                              CER against the second opinion (a piece: its
                                                               own words against the aligned stretch)
``language_match``                                             the detected language's probability when it
                                                               is the declared one (or none was declared), 0
                                                               when another language came first
``rms_dbfs``                                                   loudness of the segment's audio

A model names the features it was fitted on (``features``); models fitted before the last four
existed (five features) still load and score as before. The first three are required (a row
without them, i.e. without a label, scores None); any other missing value (no language detected,
a manifest without ``rms_dbfs``) is taken as the model's ``fill`` for it: the fitted mean, so it
moves the score neither way, unless the fit said otherwise. ``agreement_cer`` is missing for a
different reason: by default the second opinion is asked only where the first pass is unsure
(mean word probability below 0.8), so a missing one stands for a confident label; its fill is
what the second opinion gave on such labels in the fitting set (``fit(..., fill=...)``). Fitted by
calibration on a gold set; saved in the filter config as plain numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

LEGACY_FEATURES = ("avg_logprob", "no_speech_prob", "compression_ratio", "chars_per_second", "log_duration")
FEATURES = (*LEGACY_FEATURES, "mean_word_prob", "agreement_cer", "language_match", "rms_dbfs")
_REQUIRED = ("avg_logprob", "no_speech_prob", "compression_ratio")


def _language_match(row: dict) -> float | None:
    p, lang, declared = row.get("language_probability"), row.get("language"), row.get("declared_language")
    if p is None or lang is None:
        return None
    return float(p) if not declared or declared == "auto" or lang == declared else 0.0


def feature_values(row: dict, features: tuple[str, ...] = FEATURES) -> np.ndarray | None:
    """The named features of one segment row (NaN where a signal is missing), or None when a
    required signal is missing (no label)."""
    if any(row.get(k) is None for k in _REQUIRED):
        return None
    duration = row["end"] - row["start"]
    text = (row.get("text") or "").strip()
    derived = {"chars_per_second": len(text) / duration if duration > 0 else 0.0,
               "log_duration": math.log(max(duration, 1e-3)), "language_match": _language_match(row)}
    out = []
    for name in features:
        v = derived[name] if name in derived else row.get(name)
        out.append(float("nan") if v is None else float(v))
    return np.array(out)


def feature_vector(row: dict) -> np.ndarray | None:
    """The five legacy features of one row (no missing values among them), or None without a label."""
    return feature_values(row, LEGACY_FEATURES)


@dataclass(frozen=True)
class ConfidenceModel:
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    features: tuple[str, ...] = LEGACY_FEATURES
    fill: list[float] | None = None  # per feature, the value a missing one counts as (None: the mean)
    # the languages of the gold it was fitted on: a segment in another language is not judged by it
    # (its signals there were never seen: a German label is no English one); None: every segment
    languages: tuple[str, ...] | None = None

    def judges(self, row: dict) -> bool:
        """Whether this model judges the row: its language (the source's declared one, or the detected
        one for an 'auto' source) is one the model was fitted on."""
        if self.languages is None:
            return True
        declared = row.get("declared_language")
        language = declared if declared and declared != "auto" else row.get("language")
        return language in self.languages

    def score(self, row: dict) -> float | None:
        x = feature_values(row, self.features)
        if x is None:
            return None
        mean = np.asarray(self.mean)
        z = (np.where(np.isnan(x), np.asarray(self.fill if self.fill is not None else self.mean), x) - mean) \
            / np.asarray(self.scale)
        return float(1.0 / (1.0 + math.exp(-(float(z @ np.asarray(self.weights)) + self.bias))))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        if self.fill is None:
            del d["fill"]
        if self.languages is None:
            del d["languages"]
        else:
            d["languages"] = list(self.languages)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConfidenceModel":
        features = tuple(d.get("features", LEGACY_FEATURES))
        unknown = [f for f in features if f not in FEATURES]
        if unknown or not set(_REQUIRED) <= set(features):
            raise ValueError(f"confidence model features {list(features)} are not this code's (known: {list(FEATURES)}; "
                             f"required: {list(_REQUIRED)})")
        if not len(d["mean"]) == len(d["scale"]) == len(d["weights"]) == len(d.get("fill") or features) == len(features):
            raise ValueError("confidence model: mean, scale, weights (and fill) need one number per feature")
        return cls(mean=list(d["mean"]), scale=list(d["scale"]), weights=list(d["weights"]), bias=float(d["bias"]),
                   features=features, fill=list(d["fill"]) if d.get("fill") is not None else None,
                   languages=tuple(d["languages"]) if d.get("languages") is not None else None)


def fit(rows: list[dict], labels: list[bool], *, l2: float = 1.0, iterations: int = 50,
        features: tuple[str, ...] = FEATURES, fill: dict[str, float] | None = None) -> ConfidenceModel:
    """Logistic regression (Newton's method, L2-regularised) of ``labels`` on the rows' ``features``;
    a missing value counts as ``fill[feature]`` when given, else as the feature's mean over the
    rows that have it (in fitting and in scoring alike)."""
    pairs = [(feature_values(r, features), y) for r, y in zip(rows, labels)]
    pairs = [(x, y) for x, y in pairs if x is not None]
    if len(pairs) < 4 or len({y for _, y in pairs}) < 2:
        raise ValueError(f"need labelled segments of both classes to fit a confidence model, got {len(pairs)}")
    X = np.stack([x for x, _ in pairs])
    y = np.array([float(v) for _, v in pairs])
    seen = ~np.isnan(X)
    mean = np.array([X[seen[:, k], k].mean() if seen[:, k].any() else 0.0 for k in range(X.shape[1])])
    filled = np.array([(fill or {}).get(f, m) for f, m in zip(features, mean)])
    X = np.where(seen, X, filled)
    scale = X.std(axis=0)
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
    return ConfidenceModel(mean=mean.tolist(), scale=scale.tolist(), weights=w[:-1].tolist(), bias=float(w[-1]),
                           features=tuple(features), fill=filled.tolist() if fill else None)
