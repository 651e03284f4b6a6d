"""Fixtures of the producers' tests: the real broker and Redis of the session's platform, and a consumer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kafka_bootstrap(platform: Any) -> str:
    platform.start(["kafka"])
    return str(platform.settings.kafka_bootstrap)


@pytest.fixture(scope="session")
def redis_url(platform: Any) -> str:
    platform.start(["redis"])
    return str(platform.settings.redis_url)


def _free_port() -> int:
    from coelho.settings import free_port  # below the ephemeral range: no client socket takes it meanwhile

    return free_port()


@pytest.fixture
def unused_redis_url() -> str:
    """A Redis URL nobody listens on: producers must keep going without their controls."""
    return f"redis://127.0.0.1:{_free_port()}/0"


@dataclass
class Consumed:
    key: str
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int


def _consume(bootstrap: str, topic: str, want: int, match: Any = None, timeout_s: float = 90.0) -> list[Consumed]:
    """Read `topic` from the beginning with a fresh consumer group until `want` messages accepted by `match`
    arrived (other tests may write to the same topic), in (partition, offset) order."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"coelho-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    found: list[Consumed] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < want and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                for m in messages:
                    item = Consumed(
                        m.key.decode() if m.key else "", m.value, dict(m.headers or []), tp.partition, m.offset
                    )
                    if match is None or match(item):
                        found.append(item)
    finally:
        consumer.close()
    return sorted(found, key=lambda c: (c.partition, c.offset))


def _run_producer(
    *args: str,
    command: tuple[str, ...] = (sys.executable, "-m", "producers"),
    timeout: float = 180,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )


@pytest.fixture
def free_port() -> Any:
    return _free_port


@pytest.fixture
def consume() -> Any:
    return _consume


@pytest.fixture
def run_producer() -> Any:
    return _run_producer


@pytest.fixture
def started_processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; terminated (by pid) when it ends."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
