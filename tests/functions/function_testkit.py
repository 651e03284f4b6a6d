"""Helpers of the function tests (imported as tests.functions.function_testkit): CloudEvent messages, free ports,
function processes with the platform's environment."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event
from cloudevents.core.v1.event import CloudEvent


def free_port() -> int:
    from coelho.settings import free_port as pick  # below the ephemeral range: no client socket takes it meanwhile

    return pick()


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
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(url + "/health/readiness", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, f"{name} did not become ready"
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
