"""How the A/B comparison scores a model, per task, each task in one object: what is kept of a scored event, how a
served answer is scored against its label on live traffic, and which paired test compares two models.

This is the River-free half of what differs between tasks (the dashboard and `coelho models` read comparisons
without importing River); how a River model answers, learns and is watched for drift is in
functions/model_state/tasks.py. The statistics themselves are in functions/model_state/comparison.py.

    >>> scores_of("regression").outcome(7, 60, 58.5, [])
    [7, 60.0, 58.5]
    >>> scores_of("classification").served_stats(True, 0.9)["correct"]
    1.0
    >>> scores_of("clustering").served_stats(None, 3)
    {}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from eventing.domain import DECISION_THRESHOLD
from functions.model_state.comparison import compare_classification, compare_clustering, compare_regression

LOG_LOSS_FLOOR = 1e-12  # p(true class) below this counts as this in a served answer's log loss

Outcomes = Mapping[int, Sequence[Any]]


class TaskScores:
    """What every task answers; the base scores nothing."""

    name: ClassVar[str] = ""

    def outcome(self, seq: int, truth: Any, prediction: Any, features: Sequence[float]) -> list[Any] | None:
        """One scored event as kept by log position: [seq, truth, answer] (None: nothing to keep)."""
        if truth is None or prediction is None:
            return None
        return [seq, float(truth), round(float(prediction), 9)]

    def served_stats(self, truth: Any, answer: Any) -> dict[str, float]:
        """Sums a served answer adds to its (model, version, mode) once its label is known."""
        return {}

    def live_row(self, stats: Mapping[str, float], n: float) -> dict[str, float]:
        """The live scores of a served (model, version, mode) from its sums over n scored answers."""
        return {}

    def compare(self, a: Outcomes, b: Outcomes, common: Sequence[int]) -> dict[str, Any]:
        raise NotImplementedError


class ClassificationScores(TaskScores):
    """Truth 0/1 and the fraud probability; accuracy at the decision threshold and log loss; McNemar and paired
    log-loss differences."""

    name = "classification"

    def outcome(self, seq: int, truth: Any, prediction: Any, features: Sequence[float]) -> list[Any] | None:
        if truth is None or prediction is None:
            return None
        return [seq, int(bool(truth)), round(float(prediction), 9)]

    def served_stats(self, truth: Any, answer: Any) -> dict[str, float]:
        if answer is None:
            return {}
        y, p = bool(truth), float(answer)
        p_true = p if y else 1.0 - p
        return {
            "n": 1.0,
            "correct": float((p >= DECISION_THRESHOLD) == y),
            "log_loss": -math.log(max(p_true, LOG_LOSS_FLOOR)),
        }

    def live_row(self, stats: Mapping[str, float], n: float) -> dict[str, float]:
        return {"accuracy": stats.get("correct", 0.0) / n, "log_loss": stats.get("log_loss", 0.0) / n}

    def compare(self, a: Outcomes, b: Outcomes, common: Sequence[int]) -> dict[str, Any]:
        return compare_classification(
            [int(a[s][0]) for s in common], [float(a[s][1]) for s in common], [float(b[s][1]) for s in common]
        )


class RegressionScores(TaskScores):
    """Truth and answer in the target's unit; MAE and RMSE; paired absolute-error differences."""

    name = "regression"

    def served_stats(self, truth: Any, answer: Any) -> dict[str, float]:
        if answer is None:
            return {}
        error = float(answer) - float(truth)
        return {"n": 1.0, "abs_error": abs(error), "sq_error": error * error}

    def live_row(self, stats: Mapping[str, float], n: float) -> dict[str, float]:
        return {"mae": stats.get("abs_error", 0.0) / n, "rmse": math.sqrt(stats.get("sq_error", 0.0) / n)}

    def compare(self, a: Outcomes, b: Outcomes, common: Sequence[int]) -> dict[str, Any]:
        return compare_regression(
            [float(a[s][0]) for s in common], [float(a[s][1]) for s in common], [float(b[s][1]) for s in common]
        )


class ClusteringScores(TaskScores):
    """No truth: the cluster and the event's features are kept, and two clusterings are compared by their
    agreement (ARI) and each one's silhouette on the same events."""

    name = "clustering"

    def outcome(self, seq: int, truth: Any, prediction: Any, features: Sequence[float]) -> list[Any] | None:
        if prediction is None:
            return None
        return [seq, prediction, [round(float(v), 6) for v in features]]

    def compare(self, a: Outcomes, b: Outcomes, common: Sequence[int]) -> dict[str, Any]:
        return compare_clustering([a[s][0] for s in common], [b[s][0] for s in common], [a[s][1] for s in common])


SCORES: dict[str, TaskScores] = {t.name: t for t in (ClassificationScores(), RegressionScores(), ClusteringScores())}


def scores_of(task: str) -> TaskScores:
    """The scoring of a domain's task (`Domain.task`)."""
    return SCORES[task]
