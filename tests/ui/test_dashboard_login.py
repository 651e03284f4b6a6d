"""With COELHO_DASHBOARD_PASSWORD set the dashboard asks for it (Panel's login page); /metrics stays open."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from coelho.services import python_service_env
from coelho.settings import PROJECT_ROOT, free_port

pytestmark = [pytest.mark.stack]
PASSWORD = "correct horse battery"


@pytest.fixture
def guarded_dashboard(platform: Any) -> Iterator[str]:
    platform.start(["redis"])
    port = free_port()
    env = {**os.environ, **python_service_env(platform.settings, "dashboard"), "PORT": str(port)}
    env["COELHO_DASHBOARD_PASSWORD"] = PASSWORD
    log = (platform.settings.log_dir / f"dashboard-login-{port}.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "ui"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(url + "/metrics", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_password_guards_the_pages(guarded_dashboard: str) -> None:
    url = guarded_dashboard
    anonymous = requests.get(url + "/tfd", timeout=30, allow_redirects=False)
    assert anonymous.status_code in (302, 303) and "/login" in anonymous.headers["Location"]
    assert requests.get(url + "/metrics", timeout=10).status_code == 200  # Prometheus scrapes without a login
    with requests.Session() as wrong:
        wrong.post(url + "/login", data={"username": "me", "password": "nope"}, timeout=30)
        assert wrong.get(url + "/", timeout=30, allow_redirects=False).status_code in (302, 303)
    with requests.Session() as person:
        person.post(url + "/login", data={"username": "me", "password": PASSWORD}, timeout=30)
        page = person.get(url + "/", timeout=60, allow_redirects=False)
        assert page.status_code == 200 and "COELHO RealTime" in page.text
