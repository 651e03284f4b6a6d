"""Delivering one event to a subscriber the way a Knative Kafka dispatcher does.

Binary content mode over a kept-alive HTTP/1.1 connection; retries with the Trigger's backoff only on 5xx,
404, 408, 409, 429 and network errors; the outcome says whether to dead-letter and carries the reply event.

>>> is_retryable(503), is_retryable(404), is_retryable(400)
(True, True, False)
"""

from __future__ import annotations

import base64
import http.client
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from eventing.router.event import InvalidEvent, WireEvent
from eventing.router.manifests import DeliverySpec

RETRYABLE_STATUS = frozenset({404, 408, 409, 429})
ERROR_DATA_LIMIT = 1024  # bytes of the response body kept in knativeerrordata


def is_retryable(status: int | None) -> bool:
    """Network errors (no status), 5xx, 404, 408, 409 and 429 are retried; other failures are not."""
    return status is None or status >= 500 or status in RETRYABLE_STATUS


class HttpSender:
    """Keep-alive connections, one per host:port; owned by one thread (http.client is not thread-safe)."""

    def __init__(self, timeout: float | None = None):
        self.timeout = timeout
        self._conns: dict[tuple[str, int], http.client.HTTPConnection] = {}
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
                conn = http.client.HTTPConnection(addr[0], addr[1], timeout=self.timeout)
                self._conns[addr] = conn
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
                    self._conns.pop(addr, None)
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.HTTPException, OSError):
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
    """Post `event` to `url` in binary mode, retrying as `spec` says; never raises."""
    headers = event.http_headers()
    attempt = 0
    while True:
        status: int | None = None
        body = b""
        error = None
        try:
            status, resp_headers, body = sender.post(url, headers, event.data)
        except (http.client.HTTPException, OSError) as exc:
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
