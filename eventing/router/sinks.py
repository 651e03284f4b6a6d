"""Where events go besides subscribers: a Kafka topic (the Broker's own topic, a KafkaSink) or an HTTP address.

Sending a Destination whose ref is the Broker writes to the Broker's topic, which is what the Broker's ingress
does with an accepted event; so sources, replies and the HTTP ingress all enter the broker the same way.
Every send is asynchronous and calls `on_done` once the event is durable (Kafka acknowledged it) or delivered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from eventing.router.delivery import HttpSender, Outcome, deliver
from eventing.router.event import WireEvent
from eventing.router.manifests import DeliverySpec

log = logging.getLogger(__name__)

OnDone = Callable[[], None]
RETRY_DELAY_S = 1.0  # a write Kafka refused is tried again after this long, until it is taken


class Producer(Protocol):
    """What a KafkaTopicSink needs of a producer: kafka-python's send (eventing/router/producer.py wraps one)."""

    def send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Any) -> Any: ...


class Sink(Protocol):
    address: str

    def send(self, event: WireEvent, on_done: OnDone) -> None: ...


class KafkaTopicSink:
    """Writes events in Kafka binary content mode, keyed by `partitionkey`; retries until Kafka takes them."""

    def __init__(self, producer: Producer, topic: str, stopping: threading.Event, address: str | None = None):
        self.producer = producer
        self.topic = topic
        self.stopping = stopping
        self.address = address or f"kafka://{topic}"

    def send(self, event: WireEvent, on_done: OnDone) -> None:
        """Never raises: a send kafka-python refuses at once (buffer full, metadata unavailable) is retried too."""
        try:
            future = self.producer.send(
                self.topic, key=event.kafka_key, value=event.data, headers=event.kafka_headers()
            )
        except Exception as exc:
            self._retry_later(event, on_done, exc)
            return
        future.add_callback(lambda _meta: on_done())
        future.add_errback(lambda exc: self._retry_later(event, on_done, exc))

    def send_and_wait(self, event: WireEvent, timeout: float = 10.0) -> None:
        future = self.producer.send(self.topic, key=event.kafka_key, value=event.data, headers=event.kafka_headers())
        future.get(timeout=timeout)

    def _retry_later(self, event: WireEvent, on_done: OnDone, exc: BaseException) -> None:
        log.warning("writing to %s failed (%s); retrying in %.1f s", self.topic, exc, RETRY_DELAY_S)
        if not self.stopping.is_set():
            timer = threading.Timer(RETRY_DELAY_S, self.send, args=(event, on_done))
            timer.daemon = True
            timer.start()


class HttpSink:
    """POSTs in binary mode with the given delivery spec; used when a sink is a Service or a URI."""

    def __init__(self, url: str, spec: DeliverySpec, stopping: threading.Event):
        self.address = url
        self.spec = spec
        self.stopping = stopping
        self._sender = HttpSender(spec.timeout)
        self._lock = threading.Lock()

    def send(self, event: WireEvent, on_done: OnDone) -> None:
        """Deliver with the spec's retries. A sink that keeps failing loses the event after logging it, as
        Knative does when a dead-letter sink fails (the record is committed, the failure logged)."""
        with self._lock:
            try:
                outcome = deliver(event, self.address, self.spec, self._sender, self.stopping)
            except Exception as exc:  # deliver() does not raise for what the sink answers; this is a router bug
                log.exception("sink %s: sending event %s failed", self.address, event.get("id"))
                outcome = Outcome(False, None, b"", f"{type(exc).__name__}: {exc}", 1)
        if not outcome.delivered and not outcome.abandoned:
            log.error("sink %s refused event %s: %s %s", self.address, event.get("id"), outcome.status, outcome.error)
        if not outcome.abandoned:
            on_done()
