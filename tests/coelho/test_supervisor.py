"""The supervisor restarts what exits, with a backoff; a crash loop is reported and bounded; stop wins over restart.

Small stand-in rows (a TCP listener, a process that exits at once) keep these quick; one stack test kills a real
function with SIGKILL and sees it serve again.
"""

from __future__ import annotations

import os
import signal
import socket
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
from coelho.supervisor import RestartPolicy, Supervisor, request_restart, rotate_log
from tests.waiting import until

FAST = RestartPolicy(base=0.2, cap=1.6, reset_after=30.0, crash_loop_after=3, interval=0.05)

LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"hello")
    c.close()
"""


def _settings(tmp_path: Path) -> Settings:
    return Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "data")


def _listener() -> Service:
    return Service(
        name="echo",
        argv=lambda s: [sys.executable, "-c", LISTENER, str(s.ports["chat"])],
        port="chat",
        health=Health("tcp"),
        startup_timeout=30.0,
    )


def _serves(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
            return c.recv(5) == b"hello"
    except OSError:
        return False


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Platform, Supervisor, list[str]]]:
    lines: list[str] = []
    crasher = Service(
        name="crasher",
        argv=lambda s: [sys.executable, "-c", "import sys; print('boom: bad config', flush=True); sys.exit(3)"],
        port="predict",
        health=Health("tcp"),
    )
    plat = Platform(_settings(tmp_path), services=[_listener(), crasher], echo=lines.append)
    sup = Supervisor(plat, FAST)
    try:
        yield plat, sup, lines
    finally:
        sup.stop()
        assert plat.stop() == []


@pytest.mark.process
def test_kill_9_comes_back_and_serves(supervised: tuple[Platform, Supervisor, list[str]]) -> None:
    plat, sup, lines = supervised
    plat.start(["echo"])
    sup.start_thread()
    port = plat.settings.ports["chat"]
    assert _serves(port)
    first = plat.pid("echo")
    assert first is not None
    os.killpg(first, signal.SIGKILL)
    until(lambda: plat.pid("echo") != first and plat.status()["echo"].healthy)
    assert _serves(port)
    st = plat.status()["echo"]
    assert st.restarts == 1 and st.phase in ("running", "starting")
    assert st.last_exit is not None and st.last_exit["signal"] == "SIGKILL" and st.last_exit["code"] is None
    assert any("killed by SIGKILL" in line and "restarting" in line for line in lines), lines
    until(lambda: plat.entries()["echo"].get("phase") == "running")
    assert plat.entries()["echo"]["recovered_in"] > 0


@pytest.mark.process
def test_a_service_that_always_exits_is_reported_crash_looping_with_bounded_restarts(
    supervised: tuple[Platform, Supervisor, list[str]],
) -> None:
    plat, sup, lines = supervised
    plat._launch(plat.by_name["crasher"], plat.by_name["crasher"].argv(plat.settings))  # as if it had started
    sup.start_thread()
    until(lambda: plat.entries()["crasher"].get("phase") == "crash-loop")
    begin = time.monotonic()
    time.sleep(3.0)
    elapsed = time.monotonic() - begin + 0.4  # + the delays before the crash loop was declared (0.2 + 0.4 s)
    st = plat.status()["crasher"]
    assert st.phase in ("crash-loop", "starting") and not st.healthy
    assert st.last_exit is not None and st.last_exit["code"] == 3
    # backoff 0.2, 0.4, 0.8, 1.6, 1.6 ...: never more restarts than the delays allow (a tight loop would make ~100)
    bound = 2 + int(elapsed / 0.2) if elapsed < 0.6 else 3 + int((elapsed - 0.6) / 0.8) + 2
    assert 3 <= st.restarts <= bound, (st.restarts, bound)
    crash_lines = [line for line in lines if "CRASH-LOOPING" in line]
    assert crash_lines and "exit code 3" in crash_lines[0] and "boom: bad config" in crash_lines[0], lines


@pytest.mark.process
def test_stop_wins_over_a_pending_restart(supervised: tuple[Platform, Supervisor, list[str]]) -> None:
    plat, sup, _ = supervised
    plat.start(["echo"])
    sup.start_thread()
    pid = plat.pid("echo")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    until(lambda: plat.entries()["echo"].get("phase") in ("backoff", "starting", "running") and plat.pid("echo"))
    sup.stop()
    assert plat.stop() == []
    time.sleep(FAST.cap + 0.5)  # longer than any pending backoff
    assert plat.entries() == {}
    assert not [p for p in psutil.process_iter(["cmdline"]) if LISTENER in (p.info["cmdline"] or [])]


@pytest.mark.process
def test_restart_request_replaces_the_process(supervised: tuple[Platform, Supervisor, list[str]]) -> None:
    plat, sup, lines = supervised
    plat.start(["echo"])
    sup.start_thread()
    pid = plat.pid("echo")
    request_restart(plat, "echo")
    until(lambda: plat.pid("echo") != pid and plat.entries()["echo"].get("phase") == "running")
    assert not psutil.pid_exists(pid or 0) or psutil.Process(pid or 0).status() == psutil.STATUS_ZOMBIE
    assert _serves(plat.settings.ports["chat"])
    assert any("restart requested" in line for line in lines)


def test_rotate_log_keeps_n_files_and_the_writer_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    with log.open("ab", buffering=0) as writer:  # the service's descriptor, in append mode
        for round_ in range(5):
            writer.write(f"round {round_} ".encode() * 100)
            assert rotate_log(log, max_bytes=500, keep=2)
        writer.write(b"after")
        assert not rotate_log(log, max_bytes=500, keep=2)  # small again: nothing to do
    assert log.read_bytes() == b"after"  # written at the start of the emptied file, no hole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc.log", "svc.log.1", "svc.log.2"]
    assert (tmp_path / "svc.log.1").read_bytes().startswith(b"round 4")
    assert (tmp_path / "svc.log.2").read_bytes().startswith(b"round 3")


@pytest.mark.stack
def test_kill_9_of_a_function_comes_back_and_serves(platform: Platform) -> None:
    platform.start(["predict"])
    sup = Supervisor(platform, FAST)
    sup.start_thread()
    try:
        pid = platform.pid("predict")
        assert pid is not None
        platform.kill("predict")
        until(lambda: platform.pid("predict") != pid and platform.healthy("predict"), timeout=180)
        st = platform.status()["predict"]
        assert st.restarts >= 1 and st.last_exit is not None and st.last_exit["signal"] == "SIGKILL"
        r = requests.get(platform.settings.url("predict") + "/health/readiness", timeout=10)
        assert r.status_code == 200
    finally:
        sup.stop()
