"""Where the local router matches Knative's Kafka broker and where it knowingly differs
(docs/router-and-knative.md lists each case; every case there has a test here).

No broker needed: the dispatchers, sinks and manifests are driven directly.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from coelho.settings import Settings
from eventing.router.dispatcher import TriggerDispatcher
from eventing.router.event import WireEvent
from eventing.router.manifests import DeliverySpec, Manifests
from eventing.router.metrics import RouterMetrics
from eventing.router.router import Router
from eventing.router.sinks import HttpSink, KafkaTopicSink, Sink
from eventing.router.testing import RecordingSubscriber, always

BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default", "namespace": "t"},
    "spec": {"delivery": {"retry": 5, "backoffPolicy": "linear", "backoffDelay": "PT0.01S"}},
}


NO_SINK = cast(Any, None)  # a Broker sink the test never reaches (no replies)


def trigger_doc(name: str, delivery: dict[str, Any] | None = None, ordered: bool = False) -> dict[str, Any]:
    annotations = {"kafka.eventing.knative.dev/delivery.order": "ordered"} if ordered else {}
    spec: dict[str, Any] = {"broker": "default", "subscriber": {"uri": "http://unused/"}}
    if delivery is not None:
        spec["delivery"] = delivery
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "t", "annotations": annotations},
        "spec": spec,
    }


class Dispatching:
    """Trigger dispatchers of BROKER driven directly (no Kafka consumer of their own, no broker) and the subscribers
    they deliver to, all stopped when the test ends."""

    def __init__(self) -> None:
        self.dispatchers: list[TriggerDispatcher] = []
        self.subscribers: list[RecordingSubscriber] = []

    def subscriber(self, **kwargs: Any) -> RecordingSubscriber:
        self.subscribers.append(RecordingSubscriber(**kwargs))
        return self.subscribers[-1]

    def trigger(
        self,
        doc: dict[str, Any],
        subscriber: RecordingSubscriber,
        dead_letter_sink: Sink | None = None,
        metrics: RouterMetrics | None = None,
        **kwargs: Any,
    ) -> TriggerDispatcher:
        """A started dispatcher of the Trigger `doc` (on BROKER) delivering to `subscriber`; `kwargs` go to
        TriggerDispatcher (workers)."""
        trigger = Manifests.from_documents([BROKER, doc]).triggers[("t", doc["metadata"]["name"])]
        dispatcher = TriggerDispatcher(
            trigger,
            subscriber.url,
            "topic",
            "unused:9092",
            NO_SINK,
            dead_letter_sink,
            metrics or RouterMetrics(),
            own_consumer=False,
            **kwargs,
        )
        dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher

    def stop(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.stop_workers(2)
        for subscriber in self.subscribers:
            subscriber.stop()


@pytest.fixture
def dispatching() -> Iterator[Dispatching]:
    started = Dispatching()
    try:
        yield started
    finally:
        started.stop()


def event(ce_id: str, key: str) -> WireEvent:
    return WireEvent({"specversion": "1.0", "id": ce_id, "source": "/s", "type": "t", "partitionkey": key}, b"{}")


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


# --- matched: an explicit retry: 0 ---------------------------------------------------------------------------
def test_explicit_retry_zero_inherits_the_brokers_retries_as_in_knative() -> None:
    """Knative merges a Trigger's delivery with the Broker's field by field, a zero meaning unset."""
    m = Manifests.from_documents([BROKER, trigger_doc("zero", {"retry": 0}), trigger_doc("none")])
    assert m.triggers[("t", "zero")].delivery.retry == 5
    assert m.triggers[("t", "none")].delivery == m.brokers[("t", "default")].delivery


def test_a_trigger_retry_zero_is_delivered_with_the_brokers_retries(dispatching: Dispatching) -> None:
    sub = dispatching.subscriber(responder=always(503))
    done = threading.Event()
    dispatcher = dispatching.trigger(trigger_doc("zero", {"retry": 0}), sub, workers=1)
    dispatcher.offer(event("z-1", "k"), 0, done.set)
    assert done.wait(10)
    assert sub.ids() == ["z-1"] * 6  # the first attempt and the Broker's 5 retries


# --- matched: a failing dead-letter sink over HTTP ------------------------------------------------------------
def test_a_failing_http_dead_letter_sink_is_logged_and_the_record_committed_as_in_knative(
    dispatching: Dispatching,
) -> None:
    """Knative's dispatcher commits a record whose dead-letter delivery failed (failedToSendToDeadLetterSink)."""
    sub = dispatching.subscriber(responder=always(400))
    dls = dispatching.subscriber(responder=always(500))
    done = threading.Event()
    dead_letters = HttpSink(dls.url, DeliverySpec(retry=2, backoff_delay=0.01), threading.Event())
    dispatcher = dispatching.trigger(
        trigger_doc("dls", {"retry": 1, "backoffDelay": "PT0.01S"}), sub, dead_letters, workers=1
    )
    dispatcher.offer(event("d-1", "k"), 0, done.set)
    assert done.wait(10)  # released (committed) after the sink's own retries
    assert dls.ids() == ["d-1"] * 3


# --- differs: a failing dead-letter sink that is a Kafka topic ------------------------------------------------
class FlakyProducer:
    """kafka-python's producer as KafkaTopicSink uses it, failing the first `failures` sends."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes | None] = []

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("KafkaTimeoutError: metadata not available")
        self.sent.append(key)
        return _Done()


class _Done:
    def add_callback(self, fn: Any) -> None:
        fn(None)

    def add_errback(self, fn: Any) -> None:
        return None


def test_a_kafka_dead_letter_sink_is_retried_until_kafka_takes_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Differs from Knative (which commits and loses the event): the offset waits until the dead letter is in
    Kafka, so nothing is lost while the broker is away; the partition's commits wait with it."""
    monkeypatch.setattr("eventing.router.sinks.RETRY_DELAY_S", 0.01)
    producer = FlakyProducer(failures=3)
    done = threading.Event()
    KafkaTopicSink(producer, "dead", threading.Event()).send(event("k-1", "key"), done.set)  # type: ignore[arg-type]
    assert done.wait(5)
    assert producer.sent == [b"key"] and producer.failures == 0


# --- differs: ordered delivery is per key, not per partition ---------------------------------------------------
def test_ordered_delivery_is_one_event_per_key_not_per_partition(dispatching: Dispatching) -> None:
    """Knative's ordered mode has one event in flight per partition; the router one per partition key, so keys
    that share a partition proceed in parallel. Each key still sees its events one at a time, in order."""
    sub = dispatching.subscriber(delay=0.05)
    finished: list[str] = []
    dispatcher = dispatching.trigger(trigger_doc("ord", ordered=True), sub)
    keys = [f"key-{i}" for i in range(8)]
    for n in range(3):
        for key in keys:
            dispatcher.offer(event(f"{key}-{n}", key), 0, functools.partial(finished.append, f"{key}-{n}"))
    assert wait_until(lambda: len(finished) == 24)
    assert sub.max_active_per_key == 1
    assert sub.max_active > 1  # several events of partition 0 were in flight at once: not Knative's mode
    for key in keys:
        assert [i for i in sub.ids() if i.startswith(key + "-")] == [f"{key}-{n}" for n in range(3)]


# --- differs: one consumer group per Broker (opt out: one per Trigger, as Knative) -------------------------------
def test_triggers_share_one_consumer_group_per_broker_unless_asked_not_to(tmp_path: Path) -> None:
    manifests = Path(__file__).resolve().parents[3] / "knative"
    settings = Settings.load()
    shared = Router(settings, manifests_dir=manifests, shared_group=True).planned_consumer_groups()
    knative = Router(settings, manifests_dir=manifests, shared_group=False).planned_consumer_groups()
    triggers = [g for g in knative if g.startswith("knative-trigger-")]
    assert len(triggers) > 1 and not any(g.startswith("knative-trigger-") for g in shared)
    assert [g for g in shared if g.endswith("-triggers")] == ["knative-broker-coelho-default-triggers"]


# --- matched now: KafkaSource delivery (retries towards an HTTP sink, a dead-letter sink) ----------------------
def test_kafka_source_delivery_is_read_from_the_manifest() -> None:
    doc = {
        "apiVersion": "sources.knative.dev/v1beta1",
        "kind": "KafkaSource",
        "metadata": {"name": "src", "namespace": "t"},
        "spec": {
            "topics": ["x"],
            "sink": {"uri": "http://sink/"},
            "delivery": {
                "retry": 4,
                "backoffDelay": "PT0.5S",
                "deadLetterSink": {"ref": {"kind": "KafkaSink", "name": "dl"}},
            },
        },
    }
    source = Manifests.from_documents([doc]).kafka_sources[("t", "src")]
    assert source.delivery is not None
    assert (source.delivery.retry, source.delivery.backoff_delay) == (4, 0.5)
    assert source.delivery.dead_letter_sink is not None and source.delivery.dead_letter_sink.name == "dl"


# --- differs (internally): a KafkaSource into a Broker skips the Broker topic ---------------------------------------
def test_a_kafka_source_hands_its_events_to_the_brokers_triggers_directly(dispatching: Dispatching) -> None:
    """Knative writes the source's event to the Broker topic and the Triggers read it back; the router hands it to
    the same Triggers (filters, ordered lanes, retries) and releases the source's offset once they finished."""
    from eventing.router.dispatcher import BrokerFanout, DirectBrokerSink

    ordered = trigger_doc("ord", ordered=True)
    sub = dispatching.subscriber()
    metrics = RouterMetrics()
    dispatcher = dispatching.trigger(
        {**ordered, "spec": {**ordered["spec"], "filter": {"attributes": {"type": "t"}}}}, sub, metrics=metrics
    )
    fanout = BrokerFanout("knative-broker-t-default", "group", "unused:9092", [dispatcher], metrics)
    sink = DirectBrokerSink(fanout, "http://broker/t/default")
    taken, skipped = threading.Event(), threading.Event()
    sink.send(event("direct-1", "k"), taken.set)
    other = WireEvent({"specversion": "1.0", "id": "x", "source": "/s", "type": "other"}, b"")
    sink.send(other, skipped.set)
    assert skipped.wait(1)  # no Trigger takes it: finished at once
    assert taken.wait(10) and sub.ids() == ["direct-1"]
