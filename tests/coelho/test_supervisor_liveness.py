"""The supervisor's liveness check: a service that is alive but does not answer (SIGSTOP'd, hung) is killed and
restarted; one that is starting, briefly stalled, or waiting for a dependency that is down is left alone.

Small HTTP stand-ins keep these quick (thresholds of a second or two instead of 30 s); one stack test stops a real
function (predict-one and its Granian workers) and sees it killed, restarted and serving again.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from coelho.health import Health
from coelho.runtime import Platform
from coelho.services import Service
from coelho.settings import Settings
from coelho.supervisor import Liveness, RestartPolicy, Supervisor, exit_text
from tests.waiting import until

# liveness in seconds instead of tens of seconds; the ratios are the defaults' (checks every 1/6 of the limit)
LIVE = RestartPolicy(
    base=0.2,
    cap=1.6,
    reset_after=30.0,
    interval=0.05,
    unresponsive_after=2.0,
    unresponsive_probes=3,
    probe_period=0.25,
    probe_timeout=0.5,
)

# GET /health: 200, or 503 while the file named by argv[3] exists; it starts listening after the number of seconds
# written in the file argv[2] (0 when missing), as a slow start-up would
HTTPD = """
import http.server, os, sys, time
port, delay_file, fail_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(float(open(delay_file).read()) if os.path.exists(delay_file) else 0.0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if os.path.exists(fail_file) else 200
        self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _row(name: str, port: str, files: Path, depends_on: tuple[str, ...] = ()) -> Service:
    return Service(
        name=name,
        argv=lambda s: [
            sys.executable,
            "-c",
            HTTPD,
            str(s.ports[port]),
            str(files / f"{name}.delay"),
            str(files / "fail"),
        ],
        port=port,
        health=Health("http", "/health"),
        depends_on=depends_on,
        startup_timeout=30.0,
    )


@pytest.fixture
def stand_ins(tmp_path: Path) -> Iterator[tuple[Platform, Supervisor, list[str], Path]]:
    settings = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "data")
    files = tmp_path / "files"
    files.mkdir()
    lines: list[str] = []
    rows = [_row("dep", "predict", files), _row("web", "chat", files, depends_on=("dep",))]
    plat = Platform(settings, services=rows, echo=lines.append)
    sup = Supervisor(plat, LIVE)
    try:
        yield plat, sup, lines, files
    finally:
        sup.stop()
        for name in plat.entries():
            for p in plat.processes(name):
                p.resume()  # a stopped process would take its stop timeout to end
        assert plat.stop() == []


def _stop(plat: Platform, name: str) -> int:
    pid = plat.pid(name)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    return pid


@pytest.mark.process
def test_a_stopped_service_is_killed_and_restarted(stand_ins: tuple[Platform, Supervisor, list[str], Path]) -> None:
    plat, sup, lines, _ = stand_ins
    plat.start(["web"])
    sup.start_thread()
    stopped = _stop(plat, "web")
    until(lambda: plat.pid("web") != stopped and plat.status()["web"].healthy, timeout=60)
    assert not psutil.pid_exists(stopped) or psutil.Process(stopped).status() == psutil.STATUS_ZOMBIE
    st = plat.status()["web"]
    assert st.restarts == 1, st
    last = st.last_exit
    assert last is not None and last["reason"] == "unresponsive" and last["signal"] == "SIGKILL", last
    assert last["failing_for"] >= LIVE.unresponsive_after and last["failed_checks"] >= LIVE.unresponsive_probes
    assert exit_text(last).startswith("unresponsive for"), exit_text(last)
    assert any("UNRESPONSIVE" in line and f"SIGKILL pid {stopped}" in line for line in lines), lines
    assert plat.status()["dep"].restarts == 0  # the others are left alone


@pytest.mark.process
def test_stalls_shorter_than_the_limit_are_left_alone(stand_ins: tuple[Platform, Supervisor, list[str], Path]) -> None:
    """A load spike: the service stops answering for a quarter of the limit, several times, and answers between."""
    plat, sup, _, _ = stand_ins
    plat.start(["web"])
    sup.start_thread()
    pid = plat.pid("web")
    for _ in range(6):
        _stop(plat, "web")
        time.sleep(LIVE.unresponsive_after / 4)
        os.kill(pid or 0, signal.SIGCONT)
        time.sleep(LIVE.unresponsive_after / 4)
    time.sleep(LIVE.unresponsive_after)
    assert plat.pid("web") == pid and plat.status()["web"].restarts == 0


@pytest.mark.process
def test_a_slow_start_up_is_not_taken_for_a_hang(stand_ins: tuple[Platform, Supervisor, list[str], Path]) -> None:
    """Restarted, the service takes twice the limit before it listens: within its start-up timeout, not killed."""
    plat, sup, _, files = stand_ins
    plat.start(["web"])
    sup.start_thread()
    (files / "web.delay").write_text(str(2 * LIVE.unresponsive_after))
    first = plat.pid("web")
    os.killpg(first or 0, signal.SIGKILL)
    until(lambda: plat.pid("web") != first and plat.status()["web"].healthy, timeout=60)
    st = plat.status()["web"]
    assert st.restarts == 1 and st.last_exit is not None and st.last_exit.get("reason") is None, st


@pytest.mark.process
def test_a_service_is_not_killed_for_its_dependency(stand_ins: tuple[Platform, Supervisor, list[str], Path]) -> None:
    """Both fail their checks (a shared cause): the dependency is restarted, its dependent waits for it."""
    plat, sup, _, files = stand_ins
    plat.start(["web"])  # and "dep"
    sup.start_thread()
    web = plat.pid("web")
    (files / "fail").write_text("")
    until(lambda: plat.status()["dep"].restarts >= 1, timeout=60)
    time.sleep(2 * LIVE.unresponsive_after)
    assert plat.pid("web") == web and plat.status()["web"].restarts == 0
    (files / "fail").unlink()
    until(lambda: all(st.healthy for st in plat.status().values()), timeout=60)
    assert plat.pid("web") == web


def test_the_liveness_limit_can_be_turned_off() -> None:
    lv = Liveness(after=0.0, probes=1)
    for t in range(100):
        lv.observe("learn", 1, False, float(t), grace_until=0.0)
    assert not lv.unresponsive("learn", 100.0)
    assert RestartPolicy.from_environ({"COELHO_UNRESPONSIVE_AFTER": "45"}).unresponsive_after == 45.0
    assert RestartPolicy().unresponsive_after == 30.0 and RestartPolicy().unresponsive_probes >= 3


def test_a_stall_of_the_checker_itself_counts_no_failure() -> None:
    """After a gap in its own schedule the checker forgets the failures it had seen: they say nothing then."""
    lv = Liveness(after=30.0, probes=3)
    lv.observe("learn", 1, True, 0.0, 60.0)
    for t in (5.0, 10.0, 15.0):
        lv.observe("learn", 1, False, t, 60.0)
    lv.pause_all()
    lv.observe("learn", 1, False, 40.0, 60.0)
    assert not lv.unresponsive("learn", 40.0) and lv.failing_for("learn", 40.0) == 0.0


# on the session's real services: checks as patient as a loaded machine needs (every service is checked)
REAL = RestartPolicy(base=0.2, cap=1.6, interval=0.1, unresponsive_after=10.0, probe_period=1.0, probe_timeout=3.0)


@pytest.mark.stack
def test_a_stopped_function_is_killed_restarted_and_serves(platform: Platform) -> None:
    platform.start(["predict"])
    sup = Supervisor(platform, REAL)
    sup.start_thread()
    try:
        pid = platform.pid("predict")
        restarts = platform.status()["predict"].restarts
        for p in platform.processes("predict"):  # the server and its workers: hung, yet alive
            p.suspend()
        until(lambda: platform.pid("predict") != pid and platform.healthy("predict"), timeout=240)
        st = platform.status()["predict"]
        assert st.restarts == restarts + 1 and st.last_exit is not None, st
        assert st.last_exit["reason"] == "unresponsive", st.last_exit
        assert not [p for p in psutil.process_iter(["status"]) if p.pid == pid and p.info["status"] == "stopped"]
        r = requests.get(platform.settings.url("predict") + "/health/readiness", timeout=10)
        assert r.status_code == 200
    finally:
        sup.stop()
