"""Delivering one event to a subscriber the way a Knative Kafka dispatcher does.

Binary content mode over a kept-alive HTTP/1.1 connection; retries with the Trigger's backoff only on 5xx,
404, 408, 409, 429 and network errors; the outcome says whether to dead-letter and carries the reply event.

>>> is_retryable(503), is_retryable(404), is_retryable(400)
(True, True, False)
"""

from __future__ import annotations

import base64
import http.client
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from eventing.router.event import InvalidEvent, WireEvent, check_attributes
from eventing.router.manifests import DeliverySpec

RETRYABLE_STATUS = frozenset({404, 408, 409, 429})
ERROR_DATA_LIMIT = 1024  # bytes of the response body kept in knativeerrordata


def is_retryable(status: int | None) -> bool:
    """Network errors (no status), 5xx, 404, 408, 409 and 429 are retried; other failures are not."""
    return status is None or status >= 500 or status in RETRYABLE_STATUS


class HttpConnection:
    """A minimal HTTP/1.1 client connection: POST, read the status, headers and body, keep the socket open.

    http.client costs ~200 us of CPU per request (most of it parsing the response headers with email.parser);
    this costs a fraction of that, which is most of the router's own cost per event (ADR 0020).
    """

    def __init__(self, host: str, port: int, timeout: float | None):
        self.host_header = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("connection closed by the subscriber")
        self.buffer += chunk

    def _read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """(status, lower-cased headers, body, whether the server closes the connection)."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST {path} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        self.sock.sendall(request.encode("latin-1") + body)
        while True:
            while b"\r\n\r\n" not in self.buffer:
                self._fill()
            raw_head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            lines = raw_head.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            try:
                status = int(rest[:3])
            except ValueError:
                raise ConnectionResetError(f"not an HTTP response: {lines[0][:80]!r}") from None
            if not 100 <= status < 200 or status == 101:
                break  # interim responses (100 Continue, 103 Early Hints) come before the final one: skip them
        response_headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        connection = response_headers.get("connection", "").lower()
        closes = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        if status in (204, 304) or 100 <= status < 200:
            data = b""
        elif response_headers.get("transfer-encoding", "").lower().endswith("chunked"):  # wins over Content-Length
            parts = []
            while True:
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line():  # trailers end with an empty line
                        pass
                    break
                parts.append(self._read_exactly(size))
                self._read_exactly(2)
            data = b"".join(parts)
        elif "content-length" in response_headers:
            data = self._read_exactly(int(response_headers["content-length"]))
        else:  # the body ends when the server closes
            try:
                while True:
                    self._fill()
            except ConnectionResetError:
                pass
            data, self.buffer, closes = self.buffer, b"", True
        return status, response_headers, data, closes


class HttpSender:
    """Keep-alive connections, one per host:port; owned by one thread."""

    def __init__(self, timeout: float | None = None):
        self.timeout = timeout
        self._conns: dict[tuple[str, int], HttpConnection] = {}
        self._targets: dict[str, tuple[tuple[str, int], str]] = {}

    def _target(self, url: str) -> tuple[tuple[str, int], str]:
        found = self._targets.get(url)
        if found is None:
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            found = ((parts.hostname or "127.0.0.1", parts.port or 80), path)
            self._targets[url] = found
        return found

    def post(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        addr, path = self._target(url)
        for attempt in (0, 1):
            conn = self._conns.get(addr)
            reused = conn is not None
            if conn is None:
                conn = HttpConnection(addr[0], addr[1], self.timeout)
                self._conns[addr] = conn
            try:
                status, response_headers, data, closes = conn.post(path, headers, body)
                if closes:
                    conn.close()
                    self._conns.pop(addr, None)
                return status, response_headers, data
            except TimeoutError:  # the subscriber is slow, not gone: the Trigger's retry policy decides
                conn.close()
                self._conns.pop(addr, None)
                raise
            except OSError:
                conn.close()
                self._conns.pop(addr, None)
                # A kept-alive connection the server closed in between fails once: retry it on a new one.
                if not reused or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


@dataclass
class Outcome:
    delivered: bool
    status: int | None
    body: bytes
    error: str | None
    attempts: int
    reply: WireEvent | None = None
    abandoned: bool = False  # the router is stopping: neither delivered nor dead-lettered, do not commit
    invalid: bool = False  # the event cannot be written as an HTTP request (never sent): dead-letter at once

    def dead_letter_extensions(self, destination: str) -> dict[str, str]:
        """knativeerrordest, knativeerrorcode and knativeerrordata (base64 of the response body, as Knative)."""
        ext = {"knativeerrordest": destination}
        if self.status is not None:
            ext["knativeerrorcode"] = str(self.status)
        data = self.body[:ERROR_DATA_LIMIT] if self.status is not None else (self.error or "").encode()
        if data:
            ext["knativeerrordata"] = base64.b64encode(data).decode()
        return ext


def deliver(
    event: WireEvent,
    url: str,
    spec: DeliverySpec,
    sender: HttpSender,
    stopping: threading.Event,
    on_retry: object = None,
) -> Outcome:
    """Post `event` to `url` in binary mode, retrying as `spec` says; never raises for what the subscriber does.

    An event whose attributes cannot be a request (a CR or LF in `datacontenttype`, an attribute name that is
    not a header token) is never sent: the outcome is a failure with the reason, dead-lettered at once.
    A response the client cannot parse (a garbled status line, chunk size or length) counts as a network error.
    """
    try:
        check_attributes(event.attributes, strict=False)  # other values are percent-encoded into the headers
    except InvalidEvent as exc:
        return Outcome(False, None, b"", f"InvalidEvent: {exc}", 0, invalid=True)
    headers = event.http_headers()
    attempt = 0
    while True:
        status: int | None = None
        body = b""
        error = None
        try:
            status, resp_headers, body = sender.post(url, headers, event.data)
        except (http.client.HTTPException, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status < 300:
            reply = None
            if any(k.startswith("ce-") for k in resp_headers) or resp_headers.get("content-type", "").startswith(
                "application/cloudevents+json"
            ):
                try:
                    reply = WireEvent.from_http(resp_headers, body)
                except InvalidEvent:
                    reply = None
            return Outcome(True, status, body, None, attempt + 1, reply)
        if not is_retryable(status) or attempt >= spec.retry:
            return Outcome(False, status, body, error, attempt + 1)
        attempt += 1
        if callable(on_retry):
            on_retry()
        if stopping.wait(spec.backoff(attempt)):
            return Outcome(False, status, body, error, attempt, abandoned=True)
