"""The router's Kafka producer recovers from kafka-python's fatal state (ADR 0117), against the real broker.

kafka-python's idempotent producer turns fatal on a non-retriable produce error (the S3-backed broker answers one
while its store is away) and then fails every send for good. Here the real producer is put in that state by its own
transaction manager, as the Sender does; the router's wrapper must see it, replace the producer, and a Broker sink
must end up writing every event it was given.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, UnknownError

from coelho.settings import Settings
from eventing.router.event import WireEvent
from eventing.router.producer import ProducerReplacing, RecoveringProducer, kafka_producer_is_fatal
from eventing.router.router import Router
from eventing.router.sinks import KafkaTopicSink
from tests.waiting import until

pytestmark = pytest.mark.stack


@pytest.fixture
def topic(kafka_settings: Settings) -> str:
    name = f"router-producer-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()
    return name


@pytest.fixture
def recovering(kafka_settings: Settings) -> Iterator[RecoveringProducer]:
    made: list[KafkaProducer] = []

    def factory() -> KafkaProducer:
        made.append(KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap, linger_ms=5))
        return made[-1]

    producer = RecoveringProducer(factory, min_interval=0.2)
    try:
        yield producer
    finally:
        producer.close(2)
        for p in made:
            p.close(0.5)


def _turn_fatal(producer: Any) -> None:
    """What kafka-python's Sender does on a non-retriable produce error of an idempotent producer."""
    producer._transaction_manager.transition_to_fatal_error(UnknownError("the broker's store is away"))


def test_a_fatal_kafka_producer_is_seen_and_fails_every_send(kafka_settings: Settings, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        producer.send(topic, value=b"before").get(timeout=30)
        assert not kafka_producer_is_fatal(producer)
        _turn_fatal(producer)
        assert kafka_producer_is_fatal(producer)
        with pytest.raises(KafkaError):
            producer.send(topic, value=b"after").get(timeout=30)  # and so on, for good: why it must be replaced
    finally:
        producer.close(0.5)


def test_the_router_replaces_a_fatal_producer_and_sends_again(recovering: RecoveringProducer, topic: str) -> None:
    recovering.send(topic, key=None, value=b"1", headers=[]).get(timeout=30)
    first = recovering.current
    _turn_fatal(first)
    with contextlib.suppress(ProducerReplacing):  # refused at once while the new producer is being made
        recovering.send(topic, key=None, value=b"2", headers=[])
    until(lambda: recovering.replaced == 1)
    assert recovering.current is not first
    recovering.send(topic, key=None, value=b"3", headers=[]).get(timeout=30)
    assert not kafka_producer_is_fatal(recovering.current)


def test_a_broker_sink_writes_every_event_through_a_fatal_producer(
    recovering: RecoveringProducer, topic: str, kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events handed to the sink while the producer is fatal are retried on the new one: each is written, and
    its `on_done` (which lets the consumer commit the record it came from) runs only then."""
    monkeypatch.setattr("eventing.router.sinks.RETRY_DELAY_S", 0.1)
    sink = KafkaTopicSink(recovering, topic, threading.Event())
    _turn_fatal(recovering.current)
    ids = [f"ev-{i}" for i in range(20)]
    done: list[str] = []
    lock = threading.Lock()

    def on_done(ident: str) -> Any:
        def mark() -> None:
            with lock:
                done.append(ident)

        return mark

    for ident in ids:
        event = WireEvent(
            {"specversion": "1.0", "id": ident, "source": "/tests", "type": "t", "partitionkey": ident}, b"{}"
        )
        sink.send(event, on_done(ident))
    until(lambda: len(done) == len(ids))
    assert recovering.replaced >= 1
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_settings.kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        written = {dict(r.headers).get("ce_id", b"").decode() for r in consumer}
    finally:
        consumer.close()
    assert set(ids) <= written, sorted(set(ids) - written)


def test_the_router_writes_with_a_plain_producer_one_request_in_flight(kafka_settings: Settings) -> None:
    """Idempotent retries across a broker restart were acknowledged without being kept (ADR 0117): the router's
    producer is plain, and one request in flight keeps a partition's order through retries."""
    router = Router.__new__(Router)
    router.bootstrap = kafka_settings.kafka_bootstrap
    producer = router._new_kafka_producer()
    try:
        assert producer.config["enable_idempotence"] is False
        assert producer.config["acks"] == -1  # "all"
        assert producer.config["max_in_flight_requests_per_connection"] == 1
        assert not kafka_producer_is_fatal(producer)
    finally:
        producer.close(0.5)
