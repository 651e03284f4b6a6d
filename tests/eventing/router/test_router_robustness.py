"""The router survives bad input and its own errors: poison records are dead-lettered with the reason and the
consumer carries on, no CR/LF from an attribute reaches a request, a failing delivery never kills a worker, and
its HTTP servers are bounded in time and size and answer 4xx (never 5xx) to what a client sent.

The first tests need no broker; the last module part runs a router against the real Kafka-protocol broker.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kafka import KafkaProducer

from coelho.settings import Settings
from eventing.router.delivery import HttpSender, deliver
from eventing.router.dispatcher import TriggerDispatcher
from eventing.router.event import InvalidEvent, WireEvent
from eventing.router.httpserver import MetricsHandler, bounded_handler, serve
from eventing.router.ingress import BrokerIngress
from eventing.router.manifests import DeliverySpec, Manifests
from eventing.router.metrics import RouterMetrics
from eventing.router.router import Router
from eventing.router.testing import RecordingSubscriber, read_topic, unique_namespace
from tests.eventing.router import harness
from tests.eventing.router.harness import running_router
from tests.eventing.router.raw_subscriber import by_event_id

BINARY_HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e-1"),
    ("ce_source", b"/tests"),
    ("ce_type", b"test.robust"),
]


# --- poison records: decoding ------------------------------------------------------------------------------
def test_a_non_utf8_ce_header_is_an_invalid_event_not_a_crash() -> None:
    headers = [*BINARY_HEADERS, ("ce_subject", b"\xff\xfe")]
    with pytest.raises(InvalidEvent, match="ce_subject.*not UTF-8"):
        WireEvent.from_kafka_cloudevent(b"k", headers, b"{}")


@pytest.mark.parametrize("value", [b"text/plain\r\nX-Injected: yes", b"application/json\n", b"a\x00b"])
def test_a_control_character_in_datacontenttype_is_an_invalid_event(value: bytes) -> None:
    with pytest.raises(InvalidEvent, match="datacontenttype"):
        WireEvent.from_kafka_cloudevent(b"k", [*BINARY_HEADERS, ("content-type", value)], b"{}")


def test_an_attribute_name_that_is_not_a_token_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="attribute name"):
        WireEvent.from_kafka_cloudevent(b"k", [*BINARY_HEADERS, ("ce_a\r\nb", b"x")], b"{}")


def test_a_structured_mode_body_with_crlf_in_datacontenttype_is_refused() -> None:
    doc = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "datacontenttype": "text/plain\r\nX: 1"}
    with pytest.raises(InvalidEvent):
        WireEvent.from_http({"Content-Type": "application/cloudevents+json"}, json.dumps(doc).encode())


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
GARBLED_CHUNKS = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n"


def test_deliver_never_writes_crlf_from_an_attribute_into_the_request() -> None:
    server = by_event_id({}, OK)
    try:
        event = WireEvent({**dict((k[3:], v.decode()) for k, v in BINARY_HEADERS), "datacontenttype": "a\r\nX: 1"}, b"")
        outcome = deliver(event, server.url, DeliverySpec(retry=3), HttpSender(2.0), threading.Event())
        assert not outcome.delivered and outcome.invalid and outcome.attempts == 0
        assert "datacontenttype" in (outcome.error or "")
        assert server.requests == []  # nothing was sent
    finally:
        server.stop()


def test_a_garbled_response_is_a_retryable_failure_not_an_exception() -> None:
    server = by_event_id({}, GARBLED_CHUNKS)
    try:
        event = WireEvent({k[3:]: v.decode() for k, v in BINARY_HEADERS}, b"{}")
        outcome = deliver(
            event, server.url, DeliverySpec(retry=1, backoff_delay=0.01), HttpSender(2.0), threading.Event()
        )
        assert not outcome.delivered and outcome.attempts == 2 and "ValueError" in (outcome.error or "")
    finally:
        server.stop()


# --- delivery workers survive errors -------------------------------------------------------------------------
class ListSink:
    def __init__(self, fail: bool = False) -> None:
        self.address = "kafka://test-dead-letters"
        self.events: list[WireEvent] = []
        self.fail = fail

    def send(self, event: WireEvent, on_done: Any) -> None:
        if self.fail:
            raise RuntimeError("sink exploded")
        self.events.append(event)
        on_done()


def _trigger(ordered: bool) -> Any:
    annotations = {"kafka.eventing.knative.dev/delivery.order": "ordered"} if ordered else {}
    docs = [
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default", "namespace": "t"}},
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "tr", "namespace": "t", "annotations": annotations},
            "spec": {
                "broker": "default",
                "subscriber": {"uri": "http://unused/"},
                "delivery": {"retry": 0},
            },
        },
    ]
    return Manifests.from_documents(docs).triggers[("t", "tr")]


@pytest.mark.parametrize("ordered", [False, True])
def test_an_exception_in_delivery_does_not_kill_the_worker(ordered: bool) -> None:
    """A reply that cannot be written (the Broker sink raises) dead-letters that event; the worker (the only one,
    so an ordered key's only lane) goes on delivering, and every event's offset is released (done called)."""
    reply = b"HTTP/1.1 200 OK\r\nce-specversion: 1.0\r\nce-id: r\r\nce-source: /s\r\nce-type: t\r\nContent-Length: 0\r\n\r\n"
    server = by_event_id({"boom": reply}, OK)
    dead = ListSink()
    dispatcher = TriggerDispatcher(
        _trigger(ordered),
        server.url,
        "topic",
        "unused:9092",
        ListSink(fail=True),  # the Broker sink: replies fail
        dead,
        RouterMetrics(),
        workers=1,
        own_consumer=False,
    )
    dispatcher.start()
    done: list[str] = []
    try:
        for ce_id in ("boom", "after-1", "after-2"):
            event = WireEvent(
                {"specversion": "1.0", "id": ce_id, "source": "/s", "type": "t", "partitionkey": "k"}, b""
            )
            assert dispatcher.offer(event, 0, functools.partial(done.append, ce_id))
        deadline = time.monotonic() + 30
        while len(done) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(done) == ["after-1", "after-2", "boom"]
        assert [e.get("id") for e in dead.events] == ["boom"]
        reason = base64.b64decode(dead.events[0].attributes["knativeerrordata"]).decode()
        assert "sink exploded" in reason
        assert all(t.is_alive() for t in dispatcher.threads)
    finally:
        dispatcher.stop_workers(2)
        server.stop()


# --- HTTP servers: timeouts, size limit, 4xx --------------------------------------------------------------------
class FakeBrokerSink:
    def __init__(self, error: Exception | None = None) -> None:
        self.events: list[WireEvent] = []
        self.error = error

    def send_and_wait(self, event: WireEvent) -> None:
        if self.error is not None:
            raise self.error
        self.events.append(event)


@contextlib.contextmanager
def started_ingress(sink: FakeBrokerSink, **limits: Any) -> Iterator[BrokerIngress]:
    """A Broker ingress on a free port whose Broker `ns/default` writes to `sink`; `limits` go to BrokerIngress."""
    server = BrokerIngress(
        "127.0.0.1", 0, {("ns", "default"): cast(Any, sink)}, "ns", lambda: True, RouterMetrics(), **limits
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def ingress() -> Iterator[tuple[BrokerIngress, FakeBrokerSink]]:
    sink = FakeBrokerSink()
    with started_ingress(sink, max_body_bytes=1000, timeout=0.5) as server:
        yield server, sink


def _raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = [int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")]
                if length and len(body) >= length[0]:
                    break
        return data


def _event_request(body: bytes, extra: str = "", length: int | None = None) -> bytes:
    head = (
        "POST / HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: t\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body) if length is None else length}\r\n{extra}\r\n"
    )
    return head.encode() + body


def test_ingress_answers_413_from_content_length_before_reading_the_body(ingress: Any) -> None:
    server, sink = ingress
    started = time.monotonic()
    answer = _raw(server.port, _event_request(b"", length=50_000_000))  # the body is never sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert b"over the limit of 1000 bytes" in answer
    assert time.monotonic() - started < 0.45  # answered before the read timeout could fire
    assert sink.events == []


def test_ingress_takes_a_chunked_body_and_refuses_one_over_the_limit(ingress: Any) -> None:
    server, sink = ingress
    chunked = "POST / HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: c\r\nce-source: /s\r\nce-type: t\r\n"
    chunked += "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ok = _raw(server.port, chunked.encode() + b"2\r\n{}\r\n0\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 202"), ok[:80]
    assert sink.events[0].data == b"{}"
    big = _raw(server.port, chunked.encode() + b"7d0\r\n" + b"x" * 2000 + b"\r\n0\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 413"), big[:80]


def test_ingress_times_out_a_client_that_stops_sending(ingress: Any) -> None:
    server, _ = ingress
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(_event_request(b"", length=100))  # announces 100 bytes, sends none
        started = time.monotonic()
        data = b""
        while chunk := s.recv(65536):  # until the server closes
            data += chunk
        assert time.monotonic() - started < 4  # the server gave up after its 0.5 s timeout and closed
    assert data.startswith(b"HTTP/1.1 408"), data[:80]


@pytest.mark.parametrize(
    "request_bytes,status",
    [
        (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"BREW / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", b"400"),  # no ce-* headers
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"POST /a/b/c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"404"),
    ],
)
def test_ingress_answers_4xx_to_bad_requests(ingress: Any, request_bytes: bytes, status: bytes) -> None:
    server, _ = ingress
    answer = _raw(server.port, request_bytes)
    assert answer.split(b" ")[1] == status, answer[:120]
    assert b"127.0.0.1" not in answer and b"Python" not in answer


def test_ingress_503_when_kafka_refuses_names_no_internal_address() -> None:
    sink = FakeBrokerSink(error=RuntimeError("KafkaTimeoutError: 10.0.3.7:9092 unreachable"))
    with started_ingress(sink) as server:
        answer = _raw(server.port, _event_request(b"{}"))
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
    assert b"10.0.3.7" not in answer and b"9092" not in answer


def test_metrics_server_is_bounded_too() -> None:
    metrics = RouterMetrics()
    server = serve("127.0.0.1", 0, bounded_handler(MetricsHandler, 0, 0.5, registry=metrics.registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert b"coelho_router_poison_records_total" in _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _raw(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 405")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")  # never ends its headers
            started = time.monotonic()
            s.recv(65536)
            assert time.monotonic() - started < 4
    finally:
        server.shutdown()
        server.server_close()


# --- against the real broker ---------------------------------------------------------------------------------
NS = unique_namespace("rb")
DEAD_TOPIC = f"{NS}-dead-letters"
SOURCE_TOPIC = f"{NS}-source"
SOURCE_DEAD_TOPIC = f"{NS}-source-dead-letters"
MANIFESTS = [
    harness.broker(NS, harness.dead_letters("dead-letters", retry=1, backoffDelay="PT0.05S")),
    harness.kafka_sink(NS, "dead-letters", DEAD_TOPIC),
    harness.kafka_sink(NS, "source-dead-letters", SOURCE_DEAD_TOPIC),
    harness.kafka_source(NS, "src", SOURCE_TOPIC, delivery=harness.dead_letters("source-dead-letters")),
    harness.trigger(NS, "ordered", "sub", attributes={"type": "test.robust"}, ordered=True),
]


@pytest.fixture(scope="module")
def stack(kafka_settings: Settings, tmp_path_factory: Any) -> Iterator[tuple[Router, RecordingSubscriber]]:
    sub = RecordingSubscriber()
    try:
        with running_router(kafka_settings, NS, MANIFESTS, tmp_path_factory.mktemp("robust"), {"sub": sub.url}) as r:
            yield r, sub
    finally:
        sub.stop()


@pytest.mark.stack
def test_poison_records_are_dead_lettered_and_the_consumer_carries_on(
    stack: Any, kafka_settings: Settings, kafka_producer: KafkaProducer
) -> None:
    router, sub = stack
    topic = router.manifests.broker(NS, "default").topic

    def record(ce_id: bytes, *extra: tuple[str, bytes]) -> None:
        headers = [("ce_specversion", b"1.0"), ("ce_id", ce_id), ("ce_source", b"/t"), ("ce_type", b"test.robust")]
        kafka_producer.send(topic, key=b"k1", value=b"{}", headers=headers + list(extra)).get(timeout=10)

    record(b"before")
    record(b"not-utf8", ("ce_subject", b"\xc3\x28"))
    record(b"crlf", ("content-type", b"text/plain\r\nX-Injected: yes"))
    record(b"after")
    # a plain record on the KafkaSource's topic whose content-type is not UTF-8
    kafka_producer.send(SOURCE_TOPIC, key=b"k2", value=b"{}", headers=[("content-type", b"\xff")]).get(timeout=10)
    got = sub.wait_for(2, timeout=60)
    assert [g.headers["ce-id"] for g in got] == ["before", "after"]  # the key's order kept, the bad ones skipped
    assert all("x-injected" not in g.headers for g in got)
    dead = read_topic(kafka_settings.kafka_bootstrap, DEAD_TOPIC, 2, timeout=60)
    reasons = {
        dict(r.headers)["ce_kafkaheaderceid"].decode(): base64.b64decode(
            dict(r.headers)["ce_knativeerrordata"]
        ).decode()
        for r in dead
    }
    assert "not UTF-8" in reasons["not-utf8"] and "datacontenttype" in reasons["crlf"]
    source_dead = read_topic(kafka_settings.kafka_bootstrap, SOURCE_DEAD_TOPIC, 1, timeout=60)
    assert "not UTF-8" in base64.b64decode(dict(source_dead[0].headers)["ce_knativeerrordata"]).decode()
    assert router.ready()  # every consumer still polls
    assert all(c.restarts == 0 for c in router.consumers())


@pytest.mark.stack
def test_a_kafka_source_feeding_triggers_directly_has_the_broker_groups_window(stack: Any) -> None:
    """Its records wait for their deliveries: a Trigger whose subscriber is down must not fill a small window and
    stop the source for every Trigger (a 2,000-record window did, with the lake function not started)."""
    router, _ = stack
    assert router.direct_sources and router.kafka_sources and router.fanouts
    window = router.fanouts[0].consumer.max_inflight
    assert window >= 20000
    assert all(source.consumer.max_inflight == window for source in router.kafka_sources)
