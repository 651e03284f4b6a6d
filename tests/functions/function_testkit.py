"""Helpers of the function tests (imported as tests.functions.function_testkit): CloudEvent messages, free ports,
function processes with the platform's environment, a throwaway Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import requests
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event
from cloudevents.core.v1.event import CloudEvent


def free_port() -> int:
    from coelho.settings import free_port as pick  # below the ephemeral range: no client socket takes it meanwhile

    return pick()


def wait_ready(proc: subprocess.Popen[Any], ready: Callable[[], bool], what: str, seconds: float, every: float) -> None:
    """Returns once `ready()` is true (a refused connection counts as not yet); fails when `proc` exits first or
    `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(redis.ConnectionError, requests.ConnectionError):
            if ready():
                return
        assert proc.poll() is None and time.monotonic() < deadline, f"{what} did not become ready"
        time.sleep(every)


@contextlib.contextmanager
def throwaway_redis(workdir: Path) -> Iterator[str]:
    """A private redis-server (the platform's binary) on a free port of 127.0.0.1 that persists nothing, working in
    `workdir`: its URL once it answers a PING; stopped on exit."""
    from coelho.engines import redis_bin

    port = free_port()
    argv = [redis_bin(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*argv, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        wait_ready(proc, lambda: bool(client.ping()), "redis-server", seconds=10, every=0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def cloudevent(
    ce_type: str, data: Any, source: str = "/coelho/tests", ce_id: str | None = None, **ext: Any
) -> HTTPMessage:
    """A binary-mode HTTP message of a JSON CloudEvent."""
    attributes = {
        "specversion": "1.0",
        "id": ce_id or str(uuid.uuid4()),
        "source": source,
        "type": ce_type,
        "datacontenttype": "application/json",
        **ext,
    }
    return to_binary_event(CloudEvent(attributes, data))


def empty_domain(settings: Any, domain: str) -> None:
    """No state of `domain` in Redis and no registered version in MLflow: otherwise a learner that starts restores
    the latest one (a checkpoint that ran earlier in the session, e.g. from the router's PingSource) and the log
    starts after it."""
    import mlflow

    client = redis.Redis.from_url(settings.redis_url)
    keys = client.keys(f"coelho:{domain}:*")
    if keys:
        client.delete(*keys)
    with contextlib.suppress(mlflow.exceptions.RestException):  # none registered yet
        mlflow.tracking.MlflowClient(tracking_uri=settings.mlflow_uri).delete_registered_model(f"coelho-{domain}")


def function_env(settings: Any, port_name: str, port: int | None = None) -> dict[str, str]:
    from coelho.services import python_service_env

    env = {**os.environ, **python_service_env(settings, port_name)}
    if port is not None:
        env["PORT"] = str(port)
    return env


def post(url: str, message: Any, timeout: float = 10) -> requests.Response:
    return requests.post(url, data=message.body, headers=dict(message.headers), timeout=timeout)


@contextlib.contextmanager
def function_process(settings: Any, name: str, log_dir: Path, **env: str) -> Iterator[str]:
    """Another replica of function `name` on a free port with `env` on top of the platform's (a second pod
    behind the same Service): its URL once ready; stopped with SIGTERM on exit."""
    port = free_port()
    log = (log_dir / f"{name}-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", f"functions.{name}"],
        env={**function_env(settings, name, port), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, lambda: requests.get(url + "/health/readiness", timeout=2).status_code == 200, name, 90, 0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
