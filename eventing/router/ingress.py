"""The Broker's HTTP ingress: POST a CloudEvent (binary or structured mode), get 202 once Kafka has it.

Paths: `/` (the namespace's `default` Broker) and `/<namespace>/<broker>`, as Knative's Kafka broker ingress.
A request that is not a valid CloudEvent gets 400 with the reason; an unknown Broker 404.
GET /health/readiness is 200 once every consumer group has its partitions, GET /health/liveness always 200.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eventing.router.event import InvalidEvent, WireEvent
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
    ):
        self.brokers = brokers
        self.default_namespace = default_namespace
        self.ready = ready
        self.metrics = metrics
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="broker-ingress", daemon=True)

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

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        ingress = self
        events_in = self.metrics.events_in.labels("ingress")
        rejected = self.metrics.ingress_rejected

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
                return

            def _reply(self, status: int, text: str = "") -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.startswith("/health/liveness"):
                    self._reply(200, "ok")
                elif self.path.startswith("/health/readiness"):
                    ok = ingress.ready()
                    self._reply(200 if ok else 503, "ready" if ok else "starting")
                else:
                    self._reply(404, "not found")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink = ingress._broker_for(self.path)
                if sink is None:
                    rejected.labels("404").inc()
                    self._reply(404, f"no broker at {self.path}")
                    return
                try:
                    event = WireEvent.from_http(dict(self.headers.items()), body)
                except InvalidEvent as exc:
                    rejected.labels("400").inc()
                    self._reply(400, f"not a valid CloudEvent: {exc}")
                    return
                try:
                    sink.send_and_wait(event)
                except Exception as exc:
                    log.warning("ingress: Kafka did not take event %s: %s", event.get("id"), exc)
                    self._reply(503, f"broker storage unavailable: {exc}")
                    return
                events_in.inc()
                self._reply(202)

        return Handler
