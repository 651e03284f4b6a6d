"""A study's scores: the metrics of each task's answers, and the gap between batch and online.

The headline metrics per task are `GAP_METRICS` (higher is better unless in `LOWER_IS_BETTER`): ROC AUC and log
loss for classification, MAE for regression, ARI and silhouette for clustering.

    >>> gaps("regression", {"mae": 80.0}, {"mae": 100.0}), is_better("mae", -20.0)
    ({'mae': -20.0}, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

SAMPLE = 2000  # rows of the silhouette estimates and the permutation importance
PROBA_CLIP = 1e-6

# Metrics whose batch-minus-online difference is the study's headline, per task (higher is better unless below).
GAP_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("roc_auc", "log_loss"),
    "regression": ("mae",),
    "clustering": ("ari", "silhouette"),
}
LOWER_IS_BETTER = {"log_loss", "mae", "rmse", "brier"}


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, log_loss, roc_auc_score

    p = np.clip(np.asarray(proba, dtype=float), PROBA_CLIP, 1 - PROBA_CLIP)
    both = len(set(y.tolist())) == 2
    return {
        "roc_auc": finite(roc_auc_score(y, p)) if both else None,
        "log_loss": finite(log_loss(y, p, labels=[False, True])),
        "average_precision": finite(average_precision_score(y, p)) if both else None,
        "f1": finite(f1_score(y, p >= 0.5, zero_division=0)),
        "brier": finite(brier_score_loss(y, p)),
    }


def regression_metrics(y: np.ndarray, prediction: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "mae": finite(mean_absolute_error(y, prediction)),
        "rmse": finite(math.sqrt(mean_squared_error(y, prediction))),
        "r2": finite(r2_score(y, prediction)),
    }


def clustering_metrics(
    scaled: np.ndarray, labels: np.ndarray, truth: np.ndarray | None, rng: np.random.Generator
) -> dict[str, float | None]:
    """ARI against the latent segments (when known), silhouette on a sample in the batch model's scaled space.
    Unassigned events (label -1: River before its first cluster) count in the ARI, not in the silhouette."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    out: dict[str, float | None] = {"n_clusters": float(len(set(labels.tolist()) - {-1}))}
    out["ari"] = finite(adjusted_rand_score(truth, labels)) if truth is not None else None
    assigned = np.flatnonzero(labels >= 0)
    if len(assigned) > SAMPLE:
        assigned = rng.choice(assigned, SAMPLE, replace=False)
    sample_labels = labels[assigned]
    if 2 <= len(set(sample_labels.tolist())) < len(assigned):
        out["silhouette"] = finite(silhouette_score(scaled[assigned], sample_labels))
    else:
        out["silhouette"] = None
    return out


def gaps(task: str, batch: Mapping[str, Any], online: Mapping[str, Any]) -> dict[str, float | None]:
    """batch minus online for the task's headline metrics (for a loss, negative means batch is better)."""
    out: dict[str, float | None] = {}
    for name in GAP_METRICS[task]:
        b, o = batch.get(name), online.get(name)
        out[name] = None if b is None or o is None else round(float(b) - float(o), 6)
    return out


def is_better(metric: str, gap: float) -> bool:
    """Whether a batch-minus-online gap favours batch."""
    return gap < 0 if metric in LOWER_IS_BETTER else gap > 0
