"""SIGTERM: `python -m eventing.router` exits quickly and cleanly, with a delivery still in progress, and the
delivery it abandoned is not committed (it comes again after a restart, at-least-once)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from coelho.settings import Settings
from eventing.router.testing import RecordingSubscriber, RouterProcess, ce_headers, router_settings, unique_namespace

pytestmark = pytest.mark.stack

NS = unique_namespace("sigterm")
TRIGGERS = 8  # several consumer groups, as the real manifests have: they all stop in parallel


def manifests() -> str:
    docs = [
        f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: {NS}}}
spec:
  delivery: {{retry: 2, backoffPolicy: linear, backoffDelay: PT0.1S}}
---
apiVersion: sources.knative.dev/v1beta1
kind: KafkaSource
metadata: {{name: records, namespace: {NS}}}
spec:
  bootstrapServers: [unused-locally]
  topics: [{NS}-records]
  consumerGroup: {NS}-records
  initialOffset: earliest
  sink:
    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
"""
    ]
    for i in range(TRIGGERS):
        docs.append(f"""
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t{i}
  namespace: {NS}
  annotations: {{kafka.eventing.knative.dev/delivery.order: ordered}}
spec:
  broker: default
  filter: {{attributes: {{type: test.sigterm.t{i}}}}}
  subscriber:
    ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: coelho-learn}}
  delivery: {{timeout: PT60S}}
""")
    return "---".join(docs)


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
    (tmp_path / "m.yaml").write_text(manifests())
    settings = router_settings(kafka_settings, NS, tmp_path / "data")
    router = RouterProcess(settings, tmp_path, slow_subscriber.url)
    router.start()
    try:
        response = requests.post(
            settings.broker_url,
            data=b'{"n": 1}',
            headers=ce_headers("test.sigterm.t0", "in-flight-1", partitionkey="k"),
            timeout=10,
        )
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
