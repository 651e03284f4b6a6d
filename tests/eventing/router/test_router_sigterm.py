"""SIGTERM: `python -m eventing.router` exits quickly and cleanly, with a delivery still in progress, and the
delivery it abandoned is not committed (it comes again after a restart, at-least-once)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coelho.settings import Settings
from eventing.router.testing import RecordingSubscriber, ce_headers, unique_namespace
from tests.eventing.router import harness
from tests.eventing.router.harness import post

pytestmark = pytest.mark.stack

NS = unique_namespace("sigterm")
TRIGGERS = 8  # several consumer groups, as the real manifests have: they all stop in parallel


MANIFESTS = [
    harness.broker(NS, {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"}),
    harness.kafka_source(NS, "records", f"{NS}-records"),
    *[
        harness.trigger(
            NS, f"t{i}", "coelho-learn", {"type": f"test.sigterm.t{i}"}, ordered=True, delivery={"timeout": "PT60S"}
        )
        for i in range(TRIGGERS)
    ],
]


@pytest.fixture
def slow_subscriber() -> Iterator[RecordingSubscriber]:
    sub = RecordingSubscriber(delay=20.0)  # far longer than a stop may take
    yield sub
    sub.stop()


def wait_received(sub: RecordingSubscriber, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(sub.received) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(sub.received) >= n, f"subscriber got {len(sub.received)} of {n} deliveries"


def test_sigterm_exits_quickly_and_leaves_the_abandoned_delivery_uncommitted(
    kafka_settings: Settings, slow_subscriber: RecordingSubscriber, tmp_path: Path
) -> None:
    router = harness.router_process(kafka_settings, NS, MANIFESTS, tmp_path, slow_subscriber.url)
    router.start()
    try:
        response = post(router, ce_headers("test.sigterm.t0", "in-flight-1", partitionkey="k"), b'{"n": 1}')
        assert response.status_code == 202, response.text
        wait_received(slow_subscriber, 1, 60)  # the subscriber now holds the delivery for 20 s
        seconds, code = router.terminate()
    finally:
        router.stop()
    print(f"router exit after SIGTERM with a delivery in flight and {TRIGGERS + 1} consumer groups: {seconds:.2f} s")
    assert code == 0
    assert seconds < 8, f"router took {seconds:.1f} s to exit on SIGTERM (the runtime SIGKILLs at 10 s)"

    # The abandoned delivery was not committed: a new router delivers it again.
    router.start()
    try:
        wait_received(slow_subscriber, 2, 60)
        assert slow_subscriber.received[1].headers["ce-id"] == "in-flight-1"
        seconds, code = router.terminate()
    finally:
        router.stop()
    assert code == 0
    assert seconds < 8, f"router took {seconds:.1f} s to exit on SIGTERM"
