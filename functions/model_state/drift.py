"""Each model's drift detector: ADWIN on a per-task error signal, with a warm-up, a direction and a minimum gap.

What is watched (`error_signal`), per task, and why (measured in docs/adr/0071-drift-detection-on-producer-drift.md):

- classification (tfd): the log loss of the fraud probability, clipped at 5 nats. The 0/1 error at threshold 0.5
  is ~2-4% on this stream and a missed new fraud pattern moves it by only a few points: ADWIN needed thousands of
  events. The log loss weighs a confident miss (p(fraud) ~ 0.01 on a fraud) ~100x a correct answer.
- regression (eta): the absolute log ratio of the actual to the predicted travel time, clipped at 2. The raw
  absolute error (seconds) swings 2-5x with the hour of day (rush hours, trip length) and ADWIN fired every
  300-600 events on a stationary stream; the relative error is scale-free.
- clustering (ecci): `novelty`, the mean squared z-score of the interaction under the model's own scaler. The
  distance to the assigned cluster centre was tried first: DBSTREAM's fast fading makes new micro-clusters for a
  new segment within a few dozen events, so that distance barely moved (1.3-1.5 -> 1.4-1.8 per 250 events).

`DriftWatch` then only reports a drift
- after a warm-up (`grace` events): the error of a fresh model falls while it converges, which ADWIN sees as change;
- when the error went UP (ADWIN also cuts its window when the error falls, e.g. as a model adapts after a drift);
- at least `min_gap` events after the previous report (ADWIN can cut several times while one change settles).

It is part of `OnlineModel` (pickled with it), so every replica that applies the same log reports the same drifts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import drift

LOG_LOSS_CLIP = 5.0  # nats: p(true class) below e^-5 ~ 0.7% counts as 0.7%
LOG_RATIO_CLIP = 2.0  # a prediction off by more than e^2 ~ 7.4x counts as 7.4x
NOVELTY_CLIP = 10.0  # mean squared z-score: an interaction 3+ standard deviations away on every feature


@dataclass(frozen=True)
class DriftSettings:
    delta: float  # ADWIN's confidence: smaller = fewer false alarms, later detections
    grace: int  # events learned before the detector listens
    min_gap: int  # events between two reported drifts


# Chosen with bench/drift.py on the producers' own streams (ADR 0071).
SETTINGS = {
    "classification": DriftSettings(delta=1e-4, grace=1000, min_gap=500),
    "regression": DriftSettings(delta=1e-3, grace=1000, min_gap=500),
    "clustering": DriftSettings(delta=1e-7, grace=1000, min_gap=500),
}


def error_signal(task: str, y: Any, prediction: Any) -> float:
    """The per-event error the detector watches for a supervised task: see the module docstring (clustering:
    `novelty`; here `prediction` is then taken as an already computed signal)."""
    if task == "classification":
        p = float(prediction)
        p_true = p if y else 1.0 - p
        return min(-math.log(max(p_true, 1e-12)), LOG_LOSS_CLIP)
    if task == "regression":
        return min(abs(math.log(max(float(y), 1.0) / max(float(prediction), 1.0))), LOG_RATIO_CLIP)
    return min(float(prediction), NOVELTY_CLIP)


def novelty(scaled: Mapping[str, float]) -> float:
    """Clustering's drift signal: the mean squared z-score of an interaction's features, standardised by the
    model's own StandardScaler (its running mean and variance since the model started). ~1 while behaviour is
    stationary; a new kind of customer or a shift of every customer moves it up for as long as the cumulative
    statistics take to absorb it (hundreds to thousands of events), unlike the distance to the assigned centre,
    which DBSTREAM's fast fading brings back within a few dozen events."""
    if not scaled:
        return 0.0
    return min(sum(float(v) ** 2 for v in scaled.values()) / len(scaled), NOVELTY_CLIP)


class DriftWatch:
    """ADWIN with a warm-up, increases only, and a minimum gap. Same interface as River's detectors: `update(x)`,
    then `drift_detected`."""

    def __init__(self, delta: float, grace: int, min_gap: int) -> None:
        self.delta = delta
        self.grace = grace
        self.min_gap = min_gap
        self.adwin = drift.ADWIN(delta=delta)
        self.seen = 0
        self.last_drift: int | None = None  # `seen` at the last reported drift
        self.drift_detected = False

    @classmethod
    def for_task(cls, task: str) -> DriftWatch:
        s = SETTINGS[task]
        return cls(s.delta, s.grace, s.min_gap)

    def update(self, x: float) -> DriftWatch:
        self.seen += 1
        self.drift_detected = False
        if self.seen <= self.grace or not math.isfinite(x):
            return self
        before = self.adwin.estimation
        self.adwin.update(x)
        if not self.adwin.drift_detected or self.adwin.estimation <= before:
            return self
        if self.last_drift is not None and self.seen - self.last_drift < self.min_gap:
            return self
        self.last_drift = self.seen
        self.drift_detected = True
        return self

    @property
    def estimation(self) -> float:
        """Mean of the error signal over ADWIN's current window."""
        return float(self.adwin.estimation)

    def __repr__(self) -> str:
        return f"DriftWatch(delta={self.delta}, grace={self.grace}, min_gap={self.min_gap}, seen={self.seen})"
