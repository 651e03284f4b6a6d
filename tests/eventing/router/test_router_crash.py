"""At-least-once across a crash: `python -m eventing.router` killed with SIGKILL mid-stream and started again
loses no event (duplicates are allowed, as in Knative); events accepted by the ingress survive too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from coelho.settings import Settings
from eventing.router.testing import RecordingSubscriber, RouterProcess, ce_headers, unique_namespace
from tests.eventing.router import harness
from tests.eventing.router.harness import post

pytestmark = pytest.mark.stack

NS = unique_namespace("crash")
TOPIC = f"{NS}-records"
RECORDS = 3000


MANIFESTS = [
    harness.broker(NS, {"retry": 5, "backoffPolicy": "exponential", "backoffDelay": "PT0.05S"}),
    harness.kafka_source(NS, "records", TOPIC),
    harness.trigger(
        NS,
        "learn",
        "coelho-learn",
        filters=[{"any": [{"exact": {"type": "dev.knative.kafka.event"}}, {"exact": {"type": "test.crash.ingress"}}]}],
        ordered=True,
    ),
]


@pytest.fixture
def subscriber() -> Iterator[RecordingSubscriber]:
    sub = RecordingSubscriber(delay=0.02)
    yield sub
    sub.stop()


@pytest.fixture
def router_process(
    kafka_settings: Settings, subscriber: RecordingSubscriber, tmp_path: Path
) -> Iterator[RouterProcess]:
    proc = harness.router_process(kafka_settings, NS, MANIFESTS, tmp_path, subscriber.url)
    yield proc
    proc.stop()


def test_router_killed_mid_stream_and_restarted_loses_no_event(
    kafka_producer: KafkaProducer, subscriber: RecordingSubscriber, router_process: RouterProcess
) -> None:
    futures = [
        kafka_producer.send(TOPIC, key=f"user-{i % 20}".encode(), value=b'{"i": %d}' % i) for i in range(RECORDS)
    ]
    kafka_producer.flush()
    expected = {f"partition:{m.partition}/offset:{m.offset}" for m in (f.get(10) for f in futures)}

    router_process.start()
    # Accepted by the ingress just before the crash: must survive it.
    accepted = []
    for i in range(20):
        assert post(router_process, ce_headers("test.crash.ingress", f"in-{i}"), b"{}").status_code == 202
        accepted.append(f"in-{i}")
    before = subscriber.wait_for(200, timeout=60)
    assert 0 < len(before) < RECORDS, "kill the router mid-stream, not before or after"
    router_process.kill()
    delivered_before_kill = len(subscriber.received)

    router_process.start()
    want = expected | set(accepted)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not want <= set(subscriber.ids()):
        time.sleep(0.2)
    missing = want - set(subscriber.ids())
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:5]}"
    assert delivered_before_kill < RECORDS + len(accepted)
    # Ordered Trigger: per key, offsets first arrive in increasing order, across the crash too.
    first_seen: dict[str, list[int]] = {}
    seen: set[str] = set()
    for got in subscriber.received:
        ce_id = got.headers["ce-id"]
        if ce_id in seen or not ce_id.startswith("partition:"):
            continue
        seen.add(ce_id)
        first_seen.setdefault(got.headers["ce-partitionkey"], []).append(int(ce_id.rsplit(":", 1)[1]))
    for key, offsets in first_seen.items():
        assert offsets == sorted(offsets), f"{key} out of order"
