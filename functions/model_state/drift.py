"""Each model's drift detector: ADWIN on a per-task error signal, with a warm-up, a direction and a minimum gap.

What is watched, per task, and the settings of each are the tasks' (functions/model_state/tasks.py, measured in
docs/adr/0071-drift-detection-on-producer-drift.md).

`DriftWatch` then only reports a drift
- after a warm-up (`grace` events): the error of a fresh model falls while it converges, which ADWIN sees as change;
- when the error went UP (ADWIN also cuts its window when the error falls, e.g. as a model adapts after a drift);
- at least `min_gap` events after the previous report (ADWIN can cut several times while one change settles).

It is part of `OnlineModel` (pickled with it), so every replica that applies the same log reports the same drifts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from river import drift


@dataclass(frozen=True)
class DriftSettings:
    """One task's detector settings (`Task.drift`)."""

    delta: float  # ADWIN's confidence: smaller = fewer false alarms, later detections
    grace: int  # events learned before the detector listens
    min_gap: int  # events between two reported drifts


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
