"""The router's HTTP servers (Broker ingress, /metrics): bounded in time and size, 4xx for anything a client sent.

`BoundedHandler` is the stdlib's request handler with the limits a server facing the network needs:
- a socket timeout (`timeout`, seconds) on every read and write, so a client that sends half a request, or
  stops reading the answer, frees its thread instead of holding it for ever;
- a body size limit checked on the *announced* length: a Content-Length above it gets 413 before one byte of
  the body is read (the connection is then closed, as the unread body cannot be skipped);
- chunked request bodies read up to the same limit (413 past it), a missing length on a POST is an empty body,
  an unparsable one 400, a body that stops coming 408;
- a method the handler does not serve is 405 (the stdlib answers 501, a server error, for client input);
- error bodies are plain text that say what was wrong with the request, never the server's version, host or
  port.

>>> BoundedHandler.max_body_bytes, BoundedHandler.timeout
(1000000, 10.0)
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Kafka's default record limit is 1 MiB (kafka-python's max_request_size 1,048,576, the broker's
# message.max.bytes 1,048,588), headers included: a larger event could never be written to the Broker topic.
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_TIMEOUT_S = 10.0
ENV_MAX_BODY = "COELHO_ROUTER_MAX_BODY_BYTES"
ENV_TIMEOUT = "COELHO_ROUTER_HTTP_TIMEOUT_S"
SERVED_METHODS = ("GET", "POST")


def limits_from_env() -> tuple[int, float]:
    """(max body bytes, timeout seconds) from COELHO_ROUTER_MAX_BODY_BYTES / COELHO_ROUTER_HTTP_TIMEOUT_S."""
    return (
        int(os.environ.get(ENV_MAX_BODY) or DEFAULT_MAX_BODY_BYTES),
        float(os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT_S),
    )


class BodyError(Exception):
    """The request body cannot be read: `status` (400, 411 or 413) and the reason for the client."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BoundedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "coelho-router"
    sys_version = ""
    timeout = DEFAULT_TIMEOUT_S  # StreamRequestHandler sets it on the socket
    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        return

    def reply(self, status: int, text: str = "", close: bool = False, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's errors (bad request line, headers too long, unknown method) as short plain text."""
        if code == 501:  # no do_<METHOD>: the client used a method this server does not serve
            code, message = 405, f"method {self.command} not allowed"
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":  # unparsable request line: answer HTTP/1.1
            self.request_version = "HTTP/1.1"
        try:
            self.reply(code, (message or explain or "bad request"), close=True, headers=self._allow(code))
        except OSError:
            self.close_connection = True

    def _allow(self, code: int) -> dict[str, str]:
        return {"Allow": ", ".join(SERVED_METHODS)} if code == 405 else {}

    def read_body(self) -> bytes:
        """The request body, at most `max_body_bytes`; BodyError (400/408/413) otherwise, before reading too much."""
        try:
            return self._read_body(self.max_body_bytes)
        except TimeoutError:
            raise BodyError(408, "timed out reading the request body") from None

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise BodyError(400, "Content-Length is not a number") from None
        if length < 0:
            raise BodyError(400, "Content-Length is negative")
        if length > limit:
            raise BodyError(413, f"body of {length} bytes is over the limit of {limit} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            raise BodyError(400, "body shorter than its Content-Length")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "malformed chunked body") from None
            if size < 0:
                raise BodyError(400, "malformed chunked body")
            if size == 0:
                while self.rfile.readline(8194) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                raise BodyError(413, f"chunked body over the limit of {limit} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise BodyError(400, "chunked body ended early")
            parts.append(chunk)
            self.rfile.readline(3)  # CRLF after the chunk

    def body_error(self, exc: BodyError) -> None:
        """Answer a BodyError; the rest of the body is unread, so the connection closes."""
        self.reply(exc.status, exc.reason, close=True)


def bounded_handler(
    base: type[BoundedHandler], max_body_bytes: int, timeout: float, **attributes: Any
) -> type[BoundedHandler]:
    """`base` with these limits (a subclass, so several servers in one process keep their own)."""
    return type(base.__name__, (base,), {"max_body_bytes": max_body_bytes, "timeout": timeout, **attributes})


def serve(host: str, port: int, handler: type[BoundedHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


class MetricsHandler(BoundedHandler):
    """GET /metrics (Prometheus text format) of `registry`; a BoundedHandler, unlike prometheus_client's server."""

    registry: Any = None

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.path.split("?")[0] not in ("/metrics", "/"):
            self.reply(404, "not found")
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
