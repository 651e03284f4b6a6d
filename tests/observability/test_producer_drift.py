"""A drift injected by a producer's `--drift-at` is detected after the drift point and never before it.

The producer's own stream (`make_generator(domain, seed, drift_at)`, what `coelho produce DOMAIN --drift-at N`
sends) is applied in-process exactly as learn-one applies each event: `Domain.validate`, then `OnlineModel.apply`
(predict, score, watch the error with the model's drift detector, learn). The same stream without `drift_at`
must give no detection at all. Settings and measurements: docs/adr/0071-drift-detection-on-producer-drift.md,
bench/drift.py.
"""

from __future__ import annotations

import pytest

from eventing.domains import DOMAINS
from functions.model_state.drift import DriftWatch
from functions.model_state.online_model import OnlineModel
from producers.generators import make_generator

pytestmark = pytest.mark.slow  # statistical checks over thousands of events: the full suite runs them

COUNT = 3000
DRIFT_AT = 2000
WITHIN = 600  # records after the drift point by which a detection must have happened
SEED = 2


def detections(domain: str, seed: int, count: int, drift_at: int | None) -> list[int]:
    d = DOMAINS[domain]
    state = OnlineModel.fresh(d)
    found = []
    seq = 0
    for event in make_generator(domain, seed=seed, drift_at=drift_at).take(count):
        if event.kind != "record":
            continue
        seq += 1
        if state.learn_one(seq, "record", d.validate(event.data), int(event.time * 1000)).drift:
            found.append(seq)
    assert state.learn_errors == 0, state.last_error
    return found


@pytest.mark.parametrize("domain", ["tfd", "eta", "ecci"])
def test_producer_drift_is_detected_after_the_drift_point_and_not_before(domain: str) -> None:
    assert detections(domain, SEED, COUNT, None) == [], "false alarm on the stationary stream"
    found = detections(domain, SEED, COUNT, DRIFT_AT)
    assert [p for p in found if p <= DRIFT_AT] == [], f"detection before the drift at {DRIFT_AT}: {found}"
    assert any(DRIFT_AT < p <= DRIFT_AT + WITHIN for p in found), (
        f"drift at {DRIFT_AT} not detected within {WITHIN}: {found}"
    )


def test_the_detector_reports_increases_after_its_warm_up_and_keeps_a_gap() -> None:
    watch = DriftWatch(delta=0.002, grace=100, min_gap=300)
    reported = [i for i in range(1, 1201) if watch.update(0.1 if i <= 400 or 600 < i <= 800 else 1.0).drift_detected]
    # A step up at 401 is reported (after the warm-up); the step down at 601 is not; the step up at 801 is.
    assert len(reported) == 2 and 400 < reported[0] < 450 and 800 < reported[1] < 850, reported
    early = DriftWatch(delta=0.002, grace=500, min_gap=300)
    assert not any(early.update(0.1 if i <= 400 else 1.0).drift_detected for i in range(1, 501))  # inside the warm-up
