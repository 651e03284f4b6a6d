"""Delivery (`deliver` with the router's HttpSender) against real subscribers that answer with each HTTP/1.1
framing a server may use: chunked (with a reply event and trailers), Connection: close, 204 No Content, a body
ended by closing the connection (HTTP/1.0), a 100 Continue before the answer, a kept-alive connection the
subscriber closed between two deliveries, a subscriber that hangs up or never answers (the Trigger's timeout).
The tests only look at what the subscriber saw and at the outcome, so they hold for any client (ADR 0020)."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator

import pytest

from eventing.router.delivery import HttpSender, deliver
from eventing.router.event import WireEvent
from eventing.router.manifests import DeliverySpec
from tests.eventing.router.raw_subscriber import scripted

EVENT = WireEvent({"specversion": "1.0", "id": "e1", "source": "/tests/router", "type": "t"}, b'{"x": 1}')
NO_RETRY = DeliverySpec(retry=0, backoff_policy="linear", backoff_delay=0.01)
ONE_RETRY = DeliverySpec(retry=1, backoff_policy="linear", backoff_delay=0.01)


@pytest.fixture
def sender() -> Iterator[HttpSender]:
    s = HttpSender(5)
    yield s
    s.close()


def test_a_chunked_reply_with_trailers_becomes_the_reply_event_and_the_connection_is_reused(sender: HttpSender) -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
        b"ce-specversion: 1.0\r\nce-id: r1\r\nce-source: /reply\r\nce-type: reply.t\r\n\r\n"
        b'4\r\n{"a"\r\n3;ext=1\r\n: 1\r\n1\r\n}\r\n0\r\nx-trailer: yes\r\n\r\n'
    )
    # Transfer-Encoding wins over a (wrong) Content-Length, as RFC 9112 says.
    with_length = reply.replace(
        b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\nContent-Length: 999\r\n"
    )
    sub = scripted([(reply, False), (with_length, False), (reply, False)])
    try:
        for _ in range(3):
            outcome = deliver(EVENT, sub.url, NO_RETRY, sender, threading.Event())
            assert outcome.delivered and outcome.status == 200 and outcome.attempts == 1
            assert outcome.reply is not None
            assert outcome.reply.attributes["id"] == "r1" and outcome.reply.attributes["type"] == "reply.t"
            assert outcome.reply.data == b'{"a": 1}'
        assert sub.connections == 1  # the chunked body and its trailers were consumed exactly
        # Binary mode, the path and query of the subscriber URL, the event's data as the body.
        first = sub.requests[0].decode("latin-1").lower()
        assert first.startswith("post /sub?x=1 http/1.1") and "ce-id: e1" in first
    finally:
        sub.stop()


def test_connection_close_then_the_next_delivery_opens_a_new_connection(sender: HttpSender) -> None:
    ok_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    sub = scripted([(ok_close, True), (ok_close, True)])
    try:
        for _ in range(2):
            outcome = deliver(EVENT, sub.url, NO_RETRY, sender, threading.Event())
            assert outcome.delivered and outcome.attempts == 1 and outcome.body == b"ok"
        assert sub.connections == 2
    finally:
        sub.stop()


def test_204_no_content_and_100_continue_keep_the_connection(sender: HttpSender) -> None:
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    continued = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    sub = scripted([(no_content, False), (continued, False), (no_content, False)])
    try:
        statuses = []
        for _ in range(3):
            outcome = deliver(EVENT, sub.url, NO_RETRY, sender, threading.Event())
            assert outcome.delivered and outcome.body == b"" and outcome.reply is None
            statuses.append(outcome.status)
        assert statuses == [204, 202, 204]
        assert sub.connections == 1
    finally:
        sub.stop()


def test_a_body_ended_by_close_500_is_retried_and_a_400_is_dead_lettered_with_the_body() -> None:
    until_close_500 = b"HTTP/1.0 500 Oops\r\nContent-Type: text/plain\r\n\r\nbusy, ends at close"
    until_close_400 = b"HTTP/1.0 400 Bad\r\nContent-Type: text/plain\r\n\r\nbad event, ends at close"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    sub = scripted([(until_close_500, True), (ok, False), (until_close_400, True)])
    sender = HttpSender(5)
    try:
        outcome = deliver(EVENT, sub.url, ONE_RETRY, sender, threading.Event())
        assert outcome.delivered and outcome.attempts == 2  # 500, then 200 on a new connection
        outcome = deliver(EVENT, sub.url, ONE_RETRY, sender, threading.Event())
        assert not outcome.delivered and outcome.status == 400 and outcome.attempts == 1
        assert outcome.body == b"bad event, ends at close"
        ext = outcome.dead_letter_extensions(sub.url)
        assert ext["knativeerrorcode"] == "400"
        assert base64.b64decode(ext["knativeerrordata"]) == b"bad event, ends at close"
        assert sub.connections == 2
    finally:
        sender.close()
        sub.stop()


def test_a_kept_alive_connection_the_subscriber_closed_is_not_a_failed_delivery(sender: HttpSender) -> None:
    # The subscriber announces keep-alive, then closes the idle connection (as servers do on their idle
    # timeout). The next delivery must go out on a new connection, with no retry from the Trigger's policy.
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    sub = scripted([(ok, True), (ok, False)])
    try:
        assert deliver(EVENT, sub.url, NO_RETRY, sender, threading.Event()).delivered
        assert sub.closed.wait(5)
        outcome = deliver(EVENT, sub.url, NO_RETRY, sender, threading.Event())
        assert outcome.delivered and outcome.attempts == 1
        assert sub.connections == 2
    finally:
        sub.stop()


def test_a_subscriber_that_hangs_up_or_never_answers_is_a_network_error_retried_then_given_up() -> None:
    sub = scripted([])  # reads the request, closes without an answer
    sender = HttpSender(5)
    try:
        outcome = deliver(EVENT, sub.url, ONE_RETRY, sender, threading.Event())
        assert not outcome.delivered and outcome.status is None and outcome.attempts == 2 and outcome.error
        assert "knativeerrorcode" not in outcome.dead_letter_extensions(sub.url)
    finally:
        sender.close()
        sub.stop()

    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts connections; nobody ever answers
    sender = HttpSender(0.3)  # the Trigger's `timeout`
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        outcome = deliver(EVENT, url, ONE_RETRY, sender, threading.Event())
        assert not outcome.delivered and outcome.status is None and outcome.attempts == 2
        assert "timed out" in (outcome.error or "").lower()
    finally:
        sender.close()
        silent.close()


def test_many_deliveries_reuse_one_kept_alive_connection_per_worker(sender: HttpSender) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    sub = scripted([(ok, False)] * 20)
    try:
        for i in range(20):
            event = WireEvent({**EVENT.attributes, "id": f"e{i}"}, EVENT.data)
            assert deliver(event, sub.url, NO_RETRY, sender, threading.Event()).delivered
        assert len(sub.requests) == 20 and sub.connections == 1
        assert [h.split(b"ce-id: ")[1].split(b"\r\n")[0] for h in sub.requests] == [f"e{i}".encode() for i in range(20)]
    finally:
        sub.stop()
