"""Fixtures of the assistant's tests: the Anthropic stand-in, a platform with live models, chat processes.

`live_platform` starts the real learn-one (with Redis, Kafka, S3) and teaches each domain's model a seeded
stream through CloudEvents, so every tool reads real live state. `chat_url` is the platform's own chat
function, started with ANTHROPIC_BASE_URL pointing at the stand-in; `start_chat(env)` starts extra chat
processes (same code) with another environment, for the no-key and network-down paths.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests

from coelho.runtime import Platform
from coelho.services import python_service_env
from coelho.settings import free_port
from eventing.domains import DOMAINS
from tests.chat.anthropic_standin import AnthropicStandIn
from tests.chat.chat_testkit import EVENTS_PER_DOMAIN, PROJECT, TEST_KEY, sample_event


@pytest.fixture(scope="session")
def standin() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_standin(request: pytest.FixtureRequest) -> None:
    if "standin" in request.fixturenames:
        request.getfixturevalue("standin").reset()


@pytest.fixture(scope="session")
def live_platform(platform: Platform) -> Platform:
    """The platform with learn-one running and each domain's model taught EVENTS_PER_DOMAIN events."""
    platform.start(["mlflow"])  # learn-one restores from MLflow when Redis is empty
    platform.start(["learn", "checkpoint"])
    url = platform.settings.url("learn")
    client = redis.Redis.from_url(platform.settings.redis_url)
    rng = random.Random(8)
    start = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    session = requests.Session()
    for domain in DOMAINS.values():
        before = int(client.get(f"coelho:{domain.name}:seq") or 0)
        for i in range(EVENTS_PER_DOMAIN):
            event = sample_event(domain, rng, start + timedelta(seconds=7 * i))
            headers = {
                "ce-specversion": "1.0",
                "ce-id": str(uuid.uuid4()),
                "ce-source": "/coelho/tests/chat",
                "ce-type": domain.type("record"),
                "ce-domain": domain.name,
                "ce-partitionkey": str(event[domain.key_field]),
                "content-type": "application/json",
            }
            response = session.post(url, data=json.dumps(event), headers=headers, timeout=10)
            assert response.status_code in (200, 204), response.text
        deadline = time.time() + 30
        while int(client.get(f"coelho:{domain.name}:seq") or 0) < before + EVENTS_PER_DOMAIN and time.time() < deadline:
            time.sleep(0.1)
    return platform


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="session")
def chat_url(live_platform: Platform, standin: AnthropicStandIn) -> str:
    """The platform's chat function, talking to the stand-in (restarted if someone started it without)."""
    os.environ.update(ANTHROPIC_API_KEY=TEST_KEY, ANTHROPIC_BASE_URL=standin.url, CHAT_API_MAX_RETRIES="0")
    if live_platform.running("chat"):
        live_platform.restart("chat")
    live_platform.start(["chat"])
    url = live_platform.settings.url("chat")
    _wait_http(f"{url}/health/readiness")
    return url


@pytest.fixture(scope="session")
def start_chat(live_platform: Platform) -> Iterator[Callable[[dict[str, str]], str]]:
    """Start an extra chat process with `env` on a free port; returns its URL. Stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    log_dir = live_platform.settings.log_dir

    def start(env: dict[str, str]) -> str:
        port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CHAT_"))}
        full.update(python_service_env(live_platform.settings, "chat"))
        full.update(PORT=str(port), CHAT_API_MAX_RETRIES="0", CHAT_API_TIMEOUT_SECONDS="5", **env)
        log = (log_dir / f"chat-extra-{port}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "functions.chat"], env=full, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/health/readiness")
        return url

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
