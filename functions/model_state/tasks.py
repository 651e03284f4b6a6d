"""What a model does per task (classification, regression, clustering), each in one object: how its River model
answers, how an answer is scored and watched for drift, how it is learned, what predict-one's reply and the
assistant's listings show of it, and what the live summary and its history add.

`OnlineModel` (functions/model_state/online_model.py) holds the state and asks its domain's task, `task_of(domain)`,
for everything that differs between tasks. The names and types of the reply's fields are declared by the domain
(`Domain.prediction_fields`, `Domain.prediction_values`); the task only says what it hands them.

The drift error signal, per task, and why (measured in docs/adr/0071-drift-detection-on-producer-drift.md):

- classification (tfd): the log loss of the fraud probability, clipped at 5 nats. The 0/1 error at threshold 0.5
  is ~2-4% on this stream and a missed new fraud pattern moves it by only a few points: ADWIN needed thousands of
  events. The log loss weighs a confident miss (p(fraud) ~ 0.01 on a fraud) ~100x a correct answer.
- regression (eta): the absolute log ratio of the actual to the predicted travel time, clipped at 2. The raw
  absolute error (seconds) swings 2-5x with the hour of day (rush hours, trip length) and ADWIN fired every
  300-600 events on a stationary stream; the relative error is scale-free.
- clustering (ecci): `novelty`, the mean squared z-score of the interaction under the model's own scaler. The
  distance to the assigned cluster centre was tried first: DBSTREAM's fast fading makes new micro-clusters for a
  new segment within a few dozen events, so that distance barely moved (1.3-1.5 -> 1.4-1.8 per 250 events).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from river import utils

from eventing.domain import DECISION_THRESHOLD, Domain
from eventing.schema import value_at
from functions.model_state.drift import DriftSettings, DriftWatch

if TYPE_CHECKING:
    from functions.model_state.online_model import OnlineModel

LOG_LOSS_CLIP = 5.0  # nats: p(true class) below e^-5 ~ 0.7% counts as 0.7%
LOG_RATIO_CLIP = 2.0  # a prediction off by more than e^2 ~ 7.4x counts as 7.4x
NOVELTY_CLIP = 10.0  # mean squared z-score: an interaction 3+ standard deviations away on every feature
ROW_DIGITS = 4  # digits of the floats in the assistant's prediction rows


class Task:
    """The behaviour every task shares; subclasses fill in what differs. One instance per task (`TASKS`)."""

    name: ClassVar[str]
    drift: ClassVar[DriftSettings]  # chosen with bench/drift.py on the producers' own streams (ADR 0071)
    summary_counts: ClassVar[tuple[str, ...]] = ()  # summary values also kept in history points and model info
    always_answers: ClassVar[bool] = True  # False: None is an answer (no clusters yet), not a missing prediction

    # --- the model ---------------------------------------------------------------------------------
    def predict(self, state: OnlineModel, x: dict[str, Any]) -> Any:
        """The model's raw answer to features `x`."""
        raise NotImplementedError

    def target(self, y: Any) -> Any:
        """The target as the model and metrics take it."""
        return y

    def score(
        self, state: OnlineModel, x: dict[str, Any], prediction: Any, y: Any, event: Mapping[str, Any], t_ms: int
    ) -> bool:
        """Update the metrics with `prediction` against `y` and feed the drift detector; True if it reports a drift."""
        raise NotImplementedError

    def learn(self, state: OnlineModel, x: dict[str, Any], y: Any) -> None:
        state.model.learn_one(x, y)

    def drift_watch(self) -> DriftWatch:
        return DriftWatch(self.drift.delta, self.drift.grace, self.drift.min_gap)

    # --- what people read ----------------------------------------------------------------------
    def reply(self, state: OnlineModel, raw: Any) -> dict[str, Any]:
        """The domain's prediction fields (`Domain.prediction_fields`) for the raw answer `raw` of `state`."""
        return state.domain.prediction_values(raw)

    def summary(self, state: OnlineModel) -> dict[str, Any]:
        """What the live summary adds to the metrics and counters every model has."""
        return {}

    def history(self, state: OnlineModel) -> dict[str, Any]:
        """What a history point adds to the main metrics."""
        if not self.summary_counts:
            return {}
        summary = self.summary(state)
        return {name: summary[name] for name in self.summary_counts}

    def prediction_row(self, state: OnlineModel, event: Mapping[str, Any], raw: Any) -> dict[str, Any]:
        """One line of the assistant's recent predictions: the event's id and time, the reply's prediction fields
        for `raw` (the test-then-train answer, made before learning the event), the true outcome when the event
        carried it, and the domain's headline fields."""
        domain = state.domain
        row: dict[str, Any] = {"id": event.get(domain.id_field), "timestamp": event.get("timestamp")}
        if raw is None and self.always_answers:
            row["note"] = "no prediction: the model could not learn this event"
        else:
            row.update({k: _rounded(v) for k, v in self.reply(state, raw).items()})
        if domain.target is not None:
            row[f"actual_{domain.target}"] = event.get(domain.target)
        row.update({path: value_at(event, path) for path in domain.headline_fields})
        return row


class Classification(Task):
    """Binary classification: the answer is the probability of the positive class (True)."""

    name = "classification"
    drift = DriftSettings(delta=1e-4, grace=1000, min_gap=500)

    def predict(self, state: OnlineModel, x: dict[str, Any]) -> float:
        proba = state.model.predict_proba_one(x) or {}
        total = sum(proba.values())
        return float(proba.get(True, 0.0) / total) if total > 0 else 0.0

    def target(self, y: Any) -> bool:
        return bool(y)

    def score(
        self, state: OnlineModel, x: dict[str, Any], prediction: Any, y: Any, event: Mapping[str, Any], t_ms: int
    ) -> bool:
        label = prediction >= DECISION_THRESHOLD
        proba = {True: prediction, False: 1.0 - prediction}
        for metric in state.metrics.values():
            metric.update(y, label if getattr(metric, "requires_labels", True) else proba)
        return state.watch_error(self.error_signal(y, prediction))

    def error_signal(self, y: Any, prediction: Any) -> float:
        """The drift detector's error: log loss of the probability (see the module docstring)."""
        p = float(prediction)
        p_true = p if y else 1.0 - p
        return min(-math.log(max(p_true, 1e-12)), LOG_LOSS_CLIP)


class Regression(Task):
    """Regression: the answer is the predicted value, never negative."""

    name = "regression"
    drift = DriftSettings(delta=1e-3, grace=1000, min_gap=500)

    def predict(self, state: OnlineModel, x: dict[str, Any]) -> float:
        y = state.model.predict_one(x)
        return max(float(y), 0.0) if y is not None and math.isfinite(float(y)) else 0.0

    def target(self, y: Any) -> float:
        return float(y)

    def score(
        self, state: OnlineModel, x: dict[str, Any], prediction: Any, y: Any, event: Mapping[str, Any], t_ms: int
    ) -> bool:
        when = _event_time(event, t_ms)
        for metric in state.metrics.values():
            if isinstance(metric, utils.TimeRolling):
                metric.update(y, prediction, t=when)
            else:
                metric.update(y, prediction)
        return state.watch_error(self.error_signal(y, prediction))

    def error_signal(self, y: Any, prediction: Any) -> float:
        """The drift detector's error: absolute log ratio of actual to predicted (see the module docstring)."""
        return min(abs(math.log(max(float(y), 1.0) / max(float(prediction), 1.0))), LOG_RATIO_CLIP)


class Clustering(Task):
    """Clustering: the answer is the cluster id, or None before the model has clusters. Every cluster keeps a
    profile of its events (`Domain.profile_fields`); the silhouette needs two centres or more."""

    name = "clustering"
    drift = DriftSettings(delta=1e-7, grace=1000, min_gap=500)
    summary_counts = ("n_clusters", "n_micro_clusters")
    always_answers = False

    def predict(self, state: OnlineModel, x: dict[str, Any]) -> int | None:
        if state.events_learned == 0:
            return None
        try:
            cluster = state.model.predict_one(x)
        except (ValueError, KeyError, ZeroDivisionError, IndexError):  # DBSTREAM before its first macro-cluster
            return None
        return int(cluster) if cluster is not None else None

    def target(self, y: Any) -> None:
        return None

    def score(
        self, state: OnlineModel, x: dict[str, Any], prediction: Any, y: Any, event: Mapping[str, Any], t_ms: int
    ) -> bool:
        if prediction is None:
            return False
        state.cluster_profile(prediction).update(event, state.domain.profile_fields)
        centers = getattr(state.clusterer(), "centers", None)
        if not centers:
            return False
        scaled = state.scaled(x)
        drifted = False
        if (
            centers.get(prediction) is not None
        ):  # behaviour shift: how far the interaction is from the population the scaler knows
            drifted = state.watch_error(novelty(scaled))
        if len(centers) >= 2:
            for metric in state.metrics.values():
                metric.update(scaled, prediction, centers)
        return drifted

    def learn(self, state: OnlineModel, x: dict[str, Any], y: Any) -> None:
        state.model.learn_one(x)

    def reply(self, state: OnlineModel, raw: Any) -> dict[str, Any]:
        return state.domain.prediction_values(raw, state.describe_cluster(raw))

    def summary(self, state: OnlineModel) -> dict[str, Any]:
        return state.cluster_summary()


TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Regression(), Clustering())}


def task_of(domain: Domain) -> Task:
    """The behaviour of `domain`'s task."""
    return TASKS[domain.task]


def novelty(scaled: Mapping[str, float]) -> float:
    """Clustering's drift signal: the mean squared z-score of an interaction's features, standardised by the
    model's own StandardScaler (its running mean and variance since the model started). ~1 while behaviour is
    stationary; a new kind of customer or a shift of every customer moves it up for as long as the cumulative
    statistics take to absorb it (hundreds to thousands of events), unlike the distance to the assigned centre,
    which DBSTREAM's fast fading brings back within a few dozen events."""
    if not scaled:
        return 0.0
    return min(sum(float(v) ** 2 for v in scaled.values()) / len(scaled), NOVELTY_CLIP)


def _event_time(event: Mapping[str, Any], fallback_ms: int) -> datetime:
    # Naive UTC: River's TimeRolling compares with a naive datetime.min.
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp)
            return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
        except ValueError:
            pass
    return datetime.fromtimestamp(fallback_ms / 1000, UTC).replace(tzinfo=None)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, ROW_DIGITS) if math.isfinite(value) else None
    return value
