"""The Broker's HTTP ingress: POST a CloudEvent (binary or structured mode), get 202 once Kafka has it.

Paths: `/` (the namespace's `default` Broker) and `/<namespace>/<broker>`, as Knative's Kafka broker ingress.
A request that is not a valid CloudEvent gets 400 with the reason, an unknown Broker 404, a body over the limit
413 (from its Content-Length, before the body is read), another method than GET/POST 405; Kafka not taking the
event is 503 with Retry-After (retryable, and the body names no internal address). Every connection has a
socket timeout (see eventing/router/httpserver.py).
GET /health/readiness is 200 once every consumer group has its partitions and its polling thread runs,
GET /health/liveness always 200.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kafka.errors import MessageSizeTooLargeError

from eventing.router.event import InvalidEvent, WireEvent
from eventing.router.httpserver import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT_S,
    BodyError,
    BoundedHandler,
    bounded_handler,
    serve,
)
from eventing.router.metrics import RouterMetrics
from eventing.router.sinks import KafkaTopicSink

log = logging.getLogger(__name__)


class BrokerIngress:
    def __init__(
        self,
        host: str,
        port: int,
        brokers: dict[tuple[str, str], KafkaTopicSink],
        default_namespace: str,
        ready: Callable[[], bool],
        metrics: RouterMetrics,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        self.brokers = brokers
        self.default_namespace = default_namespace
        self.ready = ready
        self.metrics = metrics
        self.server = serve(host, port, bounded_handler(self._handler_class(), max_body_bytes, timeout))
        self._thread = threading.Thread(target=self.server.serve_forever, name="broker-ingress", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _broker_for(self, path: str) -> KafkaTopicSink | None:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if not parts:
            return self.brokers.get((self.default_namespace, "default"))
        if len(parts) == 2:
            return self.brokers.get((parts[0], parts[1]))
        return None

    def _handler_class(self) -> type[BoundedHandler]:
        ingress = self
        events_in = self.metrics.events_in.labels("ingress")
        rejected = self.metrics.ingress_rejected

        class Handler(BoundedHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.startswith("/health/liveness"):
                    self.reply(200, "ok")
                elif self.path.startswith("/health/readiness"):
                    ok = ingress.ready()
                    self.reply(200 if ok else 503, "ready" if ok else "starting")
                else:
                    self.reply(404, "not found")

            def do_POST(self) -> None:  # noqa: N802
                sink = ingress._broker_for(self.path)
                try:
                    body = self.read_body()
                except BodyError as exc:
                    rejected.labels(str(exc.status)).inc()
                    self.body_error(exc)
                    return
                if sink is None:
                    rejected.labels("404").inc()
                    self.reply(404, "no broker at this path (use / or /<namespace>/<broker>)")
                    return
                try:
                    event = WireEvent.from_http(dict(self.headers.items()), body)
                except InvalidEvent as exc:
                    rejected.labels("400").inc()
                    self.reply(400, f"not a valid CloudEvent: {exc}")
                    return
                try:
                    sink.send_and_wait(event)
                except MessageSizeTooLargeError:
                    rejected.labels("413").inc()
                    self.reply(413, "the event (data and attributes) is over the broker's record size limit")
                    return
                except Exception as exc:
                    log.warning("ingress: Kafka did not take event %s: %s", event.get("id"), exc)
                    self.reply(503, "broker storage unavailable; retry later", headers={"Retry-After": "1"})
                    return
                events_in.inc()
                self.reply(202)

        return Handler
