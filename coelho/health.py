"""How the embedded runtime tells a service is ready or alive: an HTTP status, a TCP connect, a Redis PING, a Kafka
metadata round trip. No third-party imports, so `coelho status` and the live summary stay light.

    >>> Health("http", "/healthz").kind
    'http'
"""

from __future__ import annotations

import socket
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass

from coelho.settings import Settings


@dataclass(frozen=True)
class Health:
    """How to tell a service is ready: kind is "http", "tcp", "redis" or "kafka" ("redis-alive": Redis answers at
    all, even with an error such as "-LOADING" while it reads its append-only file: a liveness check)."""

    kind: str
    path: str = "/"
    port: str | None = None  # port name; default: the service's port

    def check(self, settings: Settings, port_name: str, timeout: float = 1.0) -> bool:
        port = settings.ports[self.port or port_name]
        try:
            if self.kind == "http":
                return http_ok(f"http://{settings.host}:{port}{self.path}", timeout)
            if self.kind == "tcp":
                with socket.create_connection((settings.host, port), timeout=timeout):
                    return True
            if self.kind == "redis":
                return redis_ping(settings.host, port, timeout)
            if self.kind == "redis-alive":
                return redis_ping(settings.host, port, timeout, any_reply=True)
            if self.kind == "kafka":
                return kafka_metadata(settings.host, port, timeout)
        except OSError:
            return False
        raise ValueError(f"unknown health check kind {self.kind!r}")

    def describe(self, settings: Settings, port_name: str) -> str:
        port = settings.ports[self.port or port_name]
        if self.kind == "http":
            return f"http://{settings.host}:{port}{self.path}"
        return f"{self.kind}://{settings.host}:{port}"


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when the URL answers with a status below 400."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return int(resp.status) < 400
    except urllib.error.HTTPError:
        return False
    except (OSError, ValueError):
        return False


def redis_ping(host: str, port: int, timeout: float = 1.0, any_reply: bool = False) -> bool:
    """RESP PING; a Redis still loading its AOF answers -LOADING and is not ready (but alive: `any_reply`)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = sock.recv(64)
        return reply.startswith(b"+PONG") or (any_reply and reply[:1] in (b"+", b"-"))


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> bool:
    """A Kafka Metadata v0 request (all topics) gets an answer with our correlation id.

    Tansu says "ready" even when it cannot reach its storage and then drops every connection: a real metadata
    round trip is the only trustworthy readiness check.
    """
    client_id = b"coelho-health"
    body = struct.pack(">hhih", 3, 0, 4242, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        head = b""
        while len(head) < 8:
            chunk = sock.recv(8 - len(head))
            if not chunk:
                return False
            head += chunk
        size, correlation = struct.unpack(">ii", head)
        return size >= 4 and correlation == 4242
