"""Explain one prediction from the model itself: what the assistant's explain_prediction tool returns.

- Linear models (logistic or linear regression, inside pipelines, under-samplers and target scalers):
  each feature's contribution = weight x the feature's value as the model sees it (after scaling and one-hot
  encoding); the contributions plus the intercept are the model's raw output (log-odds for a classifier,
  scaled target for a regressor, converted back to seconds when a TargetStandardScaler wraps it; for a log target,
  eta's default, the prediction is expm1 of it and each contribution a factor exp(contribution)).
- Hoeffding trees: the decision path from the root to the leaf the event falls in.
- DBSTREAM (and other clusterers with centres): distances to the nearest cluster centres, and the features
  that differ most from the chosen centre.

Nothing here learns: transformers are applied with `transform_one`, which does not update them.

>>> from river import linear_model
>>> model = linear_model.LinearRegression()
>>> for a, b in [(1.0, 2.0), (2.0, 0.5), (3.0, 1.0)]:
...     model.learn_one({"a": a, "b": b}, 2 * a - b)
>>> x = {"a": 3.0, "b": 1.0}
>>> e = explain(model, x)
>>> w = model.weights
>>> [c["contribution"] for c in e["contributions"]] == [round(w["a"] * 3.0, 6), round(w["b"] * 1.0, 6)]
True
>>> e["kind"], e["raw_output"] == round(model.predict_one(x), 6)
('linear', True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river import compose

MAX_CONTRIBUTIONS = 12
MAX_PATH_LINES = 25
NEAREST_CENTRES = 3


def _unwrap(model: Any) -> tuple[list[Any], Any, list[str]]:
    """(transformers applied in order, the final estimator, wrappers seen) of a model or pipeline."""
    transformers: list[Any] = []
    wrappers: list[str] = []
    while True:
        if isinstance(model, compose.Pipeline):
            steps = list(model.steps.values())
            transformers.extend(steps[:-1])
            model = steps[-1]
            continue
        inner = None
        for attribute in ("classifier", "regressor"):  # RandomUnderSampler, TargetStandardScaler, ...
            candidate = getattr(model, attribute, None)
            if candidate is not None and hasattr(candidate, "learn_one"):
                inner = candidate
                break
        if inner is None:
            return transformers, model, wrappers
        wrappers.append(type(model).__name__)
        model = inner


def transform(transformers: list[Any], x: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(x)
    for step in transformers:
        out = step.transform_one(out)
    return out


def _round(value: float, digits: int = 6) -> float:
    return float(round(value, digits)) if math.isfinite(value) else float(value)


def _target_scaler(model: Any) -> Any:
    while True:
        if isinstance(model, compose.Pipeline):
            model = list(model.steps.values())[-1]
            continue
        if type(model).__name__ == "TargetStandardScaler":
            return model
        inner = getattr(model, "classifier", None) or getattr(model, "regressor", None)
        if inner is None:
            return None
        model = inner


def _target_transform(model: Any, raw: float) -> tuple[str, str, float] | None:
    """(its function's name, its inverse's name, the prediction) when a TargetTransformRegressor other than a
    TargetStandardScaler wraps the estimator (eta's log target): the raw output clipped as a PredClipper inside it
    clips, then inverted."""
    while isinstance(model, compose.Pipeline):
        model = list(model.steps.values())[-1]
    if not isinstance(model, compose.TargetTransformRegressor) or type(model).__name__ == "TargetStandardScaler":
        return None
    inner = model.regressor
    if hasattr(inner, "y_min") and hasattr(inner, "y_max"):  # PredClipper
        raw = min(max(raw, inner.y_min), inner.y_max)
    names = (getattr(model.func, "__name__", "func"), getattr(model.inverse_func, "__name__", "inverse_func"))
    return *names, float(model.inverse_func(raw))


def explain_linear(model: Any, estimator: Any, xt: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, Any]:
    weights: Mapping[str, float] = estimator.weights
    intercept = float(getattr(estimator, "intercept", 0.0))
    contributions: list[dict[str, float | str]] = []
    raw = intercept
    for name, value in xt.items():
        try:
            numeric = float(value)
        except (TypeError, ValueError):
            continue
        weight = float(weights.get(name, 0.0))
        raw += weight * numeric
        contributions.append(
            {
                "feature": name,
                "value": _round(numeric),
                "weight": _round(weight),
                "contribution": _round(weight * numeric),
            }
        )
    contributions.sort(key=lambda c: abs(float(c["contribution"])), reverse=True)
    shown = contributions[:MAX_CONTRIBUTIONS]
    rest = contributions[MAX_CONTRIBUTIONS:]
    result: dict[str, Any] = {
        "kind": "linear",
        "estimator": type(estimator).__name__,
        "intercept": _round(intercept),
        "raw_output": _round(raw),
        "contributions": shown,
        "other_features": {"count": len(rest), "contribution": _round(sum(float(c["contribution"]) for c in rest))},
        "how": "contribution = weight x the feature's value after the model's own scaling / one-hot encoding; "
        "intercept + the sum of contributions = raw_output",
    }
    if hasattr(estimator, "predict_proba_one"):
        result["raw_output_meaning"] = "log-odds of the positive class"
        result["probability"] = _round(1.0 / (1.0 + math.exp(-max(min(raw, 50.0), -50.0))))
    scaler = _target_scaler(model)
    if scaler is not None:
        std = scaler.var.get() ** 0.5
        mean = scaler.var.mean.get()
        result["raw_output_meaning"] = "target in standard units: prediction = target_mean + target_std x raw_output"
        result["target_mean"] = _round(mean)
        result["target_std"] = _round(std)
        result["prediction"] = _round(mean + std * raw)
        for c in shown:
            c["contribution_in_target_units"] = _round(std * float(c["contribution"]))
    elif (transformed := _target_transform(model, raw)) is not None:
        name, inverse, prediction = transformed
        result["raw_output_meaning"] = f"the target as learned, {name}(target): prediction = {inverse}(raw_output)"
        result["prediction"] = _round(prediction)
        if name in ("log", "log1p"):  # a sum in logs is a product: each contribution multiplies the time
            result["how_in_target_units"] = (
                f"{'1 + ' if name == 'log1p' else ''}prediction = exp(intercept) x the product of each factor "
                "(factor = exp(contribution))"
            )
            for c in shown:
                c["factor"] = _round(math.exp(min(float(c["contribution"]), 700.0)))
    elif not hasattr(estimator, "predict_proba_one"):
        result["prediction"] = _round(raw)
    return result


def explain_tree(estimator: Any, xt: Mapping[str, Any]) -> dict[str, Any]:
    path = estimator.debug_one(dict(xt)) if hasattr(estimator, "debug_one") else None
    lines = [line.strip() for line in (path or "").splitlines() if line.strip()]
    return {
        "kind": "tree",
        "estimator": type(estimator).__name__,
        "decision_path": lines[:MAX_PATH_LINES],
        "path_truncated": len(lines) > MAX_PATH_LINES,
        "n_nodes": getattr(estimator, "n_nodes", None),
        "height": getattr(estimator, "height", None),
        "how": "each line is a test on the event's features from the root down; the last line is the leaf that predicts",
    }


def explain_clusters(estimator: Any, xt: Mapping[str, Any]) -> dict[str, Any]:
    centres: Mapping[int, Mapping[str, float]] = estimator.centers
    point = {k: float(v) for k, v in xt.items() if isinstance(v, int | float)}
    distances = []
    for cluster_id, centre in centres.items():
        keys = set(point) | set(centre)
        d = math.sqrt(sum((point.get(k, 0.0) - float(centre.get(k, 0.0))) ** 2 for k in keys))
        distances.append((d, cluster_id, centre))
    distances.sort(key=lambda item: item[0])
    nearest = []
    for d, cluster_id, centre in distances[:NEAREST_CENTRES]:
        gaps: list[dict[str, Any]] = sorted(
            (
                {"feature": k, "event": _round(point.get(k, 0.0), 4), "centre": _round(float(centre.get(k, 0.0)), 4)}
                for k in point
            ),
            key=lambda g: abs(g["event"] - g["centre"]),
            reverse=True,
        )
        nearest.append({"cluster": cluster_id, "distance": _round(d, 4), "largest_gaps": gaps[:4]})
    predicted = estimator.predict_one(dict(xt)) if centres else None
    return {
        "kind": "clusters",
        "estimator": type(estimator).__name__,
        "predicted_cluster": predicted,
        "n_clusters": len(centres),
        "nearest_centres": nearest,
        "how": "Euclidean distance between the event (standardised features) and each macro-cluster centre; "
        "the nearest centre is the predicted cluster",
    }


def explain(model: Any, features: Mapping[str, Any]) -> dict[str, Any]:
    """How `model` turns `features` (the domain's River features of one event) into its prediction."""
    transformers, estimator, wrappers = _unwrap(model)
    xt = transform(transformers, features)
    if hasattr(estimator, "weights") and isinstance(getattr(estimator, "weights", None), Mapping):
        result = explain_linear(model, estimator, xt, features)
    elif hasattr(estimator, "debug_one"):
        result = explain_tree(estimator, xt)
    elif hasattr(estimator, "centers"):
        result = explain_clusters(estimator, xt)
    else:
        result = {
            "kind": "unsupported",
            "estimator": type(estimator).__name__,
            "note": "no per-prediction explanation for this model type (an ensemble); use get_model_info for its metrics",
        }
    if wrappers:
        result["wrappers"] = wrappers
    return result
