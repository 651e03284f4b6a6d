"""A Trigger's deliveries in flight: the router's 16 by default, or what the Trigger declares with the annotation
coelho-realtime/delivery.max-in-flight (docs/router-and-knative.md; Knative bounds them cluster-wide with the
dispatcher's `max.poll.records`).

No broker needed: the dispatcher is driven directly, its subscriber an in-process HTTP server that holds every
request until the test lets them go, as the lake holds each until its batch is committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from eventing.router.dispatcher import TriggerDispatcher
from eventing.router.event import WireEvent
from eventing.router.manifests import MAX_IN_FLIGHT_ANNOTATION, ManifestError, Manifests
from eventing.router.metrics import RouterMetrics
from eventing.router.testing import Received, RecordingSubscriber

BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default", "namespace": "t"},
}


def trigger_doc(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "t", "annotations": annotations},
        "spec": {"broker": "default", "subscriber": {"uri": "http://unused/"}, "delivery": {"timeout": "PT30S"}},
    }


class HeldSubscriber:
    """A RecordingSubscriber whose requests wait (each answered 204) until `release()`."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.recording = RecordingSubscriber(responder=self._hold)

    def _hold(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        self.gate.wait(30)
        return 204, {}, b""

    def release(self) -> None:
        self.gate.set()

    def stop(self) -> None:
        self.gate.set()
        self.recording.stop()


@pytest.fixture
def held() -> Iterator[HeldSubscriber]:
    subscriber = HeldSubscriber()
    try:
        yield subscriber
    finally:
        subscriber.stop()


def deliver_held(doc: dict[str, Any], held: HeldSubscriber, events: int, expected: int) -> tuple[int, int]:
    """Offer `events` events to the Trigger `doc` while its subscriber holds every request; once `expected` are held
    (or a minute passed) and a moment more, release them. (most requests held at once, events finished)."""
    trigger = Manifests.from_documents([BROKER, doc]).triggers[("t", doc["metadata"]["name"])]
    dispatcher = TriggerDispatcher(
        trigger, held.recording.url, "topic", "unused:9092", cast(Any, None), None, RouterMetrics(), own_consumer=False
    )
    dispatcher.start()
    finished = threading.Semaphore(0)
    try:
        for i in range(events):
            attributes = {"specversion": "1.0", "id": f"e-{i}", "source": "/s", "type": "t", "partitionkey": f"k{i}"}
            dispatcher.offer(WireEvent(attributes, b"{}"), 0, finished.release)
        # (a connection the subscriber's small accept backlog dropped comes again after the kernel's SYN retry)
        deadline = time.monotonic() + 60
        while held.recording.max_active < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # room for any delivery beyond the bound to show up
        most = held.recording.max_active
        held.release()
        done = sum(1 for _ in range(events) if finished.acquire(timeout=30))
        return most, done
    finally:
        dispatcher.stop_workers(5)


def test_a_trigger_keeps_as_many_deliveries_in_flight_as_it_declares(held: HeldSubscriber) -> None:
    doc = trigger_doc("wide", {MAX_IN_FLIGHT_ANNOTATION: "48"})
    most, done = deliver_held(doc, held, events=120, expected=48)
    assert most == 48  # all 48 at once, never more: the others wait in the router's queue
    assert done == 120


def test_a_trigger_that_declares_none_keeps_the_routers_sixteen(held: HeldSubscriber) -> None:
    most, done = deliver_held(trigger_doc("default", {}), held, events=40, expected=16)
    assert (most, done) == (16, 40)


def test_an_ordered_trigger_declares_its_lanes(held: HeldSubscriber) -> None:
    """On an ordered Trigger the annotation sizes the key lanes, each still one event at a time."""
    doc = trigger_doc("lanes", {MAX_IN_FLIGHT_ANNOTATION: "4", "kafka.eventing.knative.dev/delivery.order": "ordered"})
    most, done = deliver_held(doc, held, events=40, expected=4)
    assert (most, done) == (4, 40)
    assert held.recording.max_active_per_key == 1


@pytest.mark.parametrize("value", ["0", "-3", "many", "10001", "1.5"])
def test_a_max_in_flight_that_is_not_a_whole_number_in_range_is_refused(value: str) -> None:
    with pytest.raises(ManifestError, match="max-in-flight"):
        Manifests.from_documents([BROKER, trigger_doc("bad", {MAX_IN_FLIGHT_ANNOTATION: value})])
