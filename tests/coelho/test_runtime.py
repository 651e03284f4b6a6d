"""Runtime behaviour on failures, with real Redis and small stand-in rows (fast: no MLflow here)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from coelho.engines import BinaryMissing
from coelho.health import Health
from coelho.processes import port_in_use
from coelho.runtime import Platform, StartError
from coelho.services import BY_NAME, SERVICES, Service
from coelho.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "data")


def _row(name: str, code: str, **kw: object) -> Service:
    return Service(
        name=name,
        argv=lambda s: [sys.executable, "-c", code],
        port="chat",
        health=Health("tcp"),
        **kw,  # type: ignore[arg-type]
    )


def _missing(s: Settings) -> list[str]:
    raise BinaryMissing("frobnicator is not installed: apt-get install frobnicator")


def test_port_in_use_is_one_clear_line_and_nothing_starts(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    plat = Platform(s)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", s.ports["redis"]))
        blocker.listen()
        with pytest.raises(StartError) as err:
            plat.start(["redis"])
    msg = str(err.value)
    assert msg.startswith("redis: port ") and "in use" in msg and "COELHO_PORT_REDIS" in msg
    assert "\n" not in msg
    assert plat.entries() == {}


@pytest.mark.process
def test_never_healthy_stops_everything_this_start_began(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    sleeper = _row("sleeper", "import time; time.sleep(120)", depends_on=("redis",), startup_timeout=2.0)
    plat = Platform(s, services=[BY_NAME["redis"], sleeper])
    with pytest.raises(StartError) as err:
        plat.start(["sleeper"])
    assert str(err.value).startswith("sleeper: not healthy after 2 s")
    assert plat.entries() == {}
    assert not port_in_use("127.0.0.1", s.ports["redis"])  # redis, started for it, is gone too
    assert not [p for p in psutil.process_iter(["cmdline"]) if "time.sleep(120)" in " ".join(p.info["cmdline"] or [])]


@pytest.mark.process
def test_crash_during_start_names_the_log_line(tmp_path: Path) -> None:
    plat = Platform(
        _settings(tmp_path), services=[_row("crasher", "import sys; print('boom: no config'); sys.exit(3)")]
    )
    with pytest.raises(StartError) as err:
        plat.start(["crasher"])
    assert "exited with code 3" in str(err.value) and "boom: no config" in str(err.value)
    assert plat.entries() == {}


def test_missing_binary(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    required = Service(name="needs", argv=_missing, port="chat", health=Health("tcp"))
    with pytest.raises(StartError) as err:
        Platform(s, services=[required]).start(["needs"])
    assert str(err.value) == "needs: frobnicator is not installed: apt-get install frobnicator"
    lines: list[str] = []
    optional = Service(name="extra", argv=_missing, port="chat", health=Health("tcp"), optional=True)
    assert Platform(s, services=[optional], echo=lines.append).start(["extra"]) == {}
    assert len(lines) == 1 and "frobnicator" in lines[0]


def test_a_missing_module_is_a_start_up_error_naming_the_row(tmp_path: Path) -> None:
    """Never a platform that quietly leaves a service out: named, needed as a dependency or part of everything."""
    s = _settings(tmp_path)
    gone = _row("gone", "pass", module="functions.no_such_module_xyz")
    needs_it = _row("needs_it", "pass", depends_on=("gone",))
    plat = Platform(s, services=[gone, needs_it])
    for names in (None, ["gone"], ["needs_it"]):
        with pytest.raises(StartError) as err:
            plat.start(names)
        assert err.value.service == "gone"
        assert "functions.no_such_module_xyz is missing" in str(err.value) and "coelho/services.py" in str(err.value)
    assert plat.entries() == {}


@pytest.mark.process
def test_kill_shows_unhealthy_and_restart_recovers(tmp_path: Path) -> None:
    plat = Platform(_settings(tmp_path), services=[BY_NAME["redis"]])
    try:
        plat.start(["redis"])
        assert plat.status()["redis"].healthy
        pid = plat.kill("redis")
        st = plat.status()["redis"]
        assert st.pid == pid and not st.running and not st.healthy
        plat.restart("redis")
        st = plat.status()["redis"]
        assert st.healthy and st.pid != pid
    finally:
        assert plat.stop() == []
    assert plat.entries() == {}


def test_no_producers_plan_leaves_out_exactly_the_producers(tmp_path: Path) -> None:
    plat = Platform(_settings(tmp_path))
    everything = {svc.name for svc in plat.plan(None)}
    without = {svc.name for svc in plat.plan(None, producers=False)}
    producers = {svc.name for svc in SERVICES if svc.kind == "producer"}
    assert producers == {"producer_tfd", "producer_eta", "producer_ecci"}
    assert producers <= everything
    assert without == everything - producers


def _needs(name: str, s: Settings) -> set[str]:
    """Everything `name` waits for before it starts (transitively)."""
    out: set[str] = set()
    todo = list(BY_NAME[name].dependencies(s))
    while todo:
        dep = todo.pop()
        if dep not in out:
            out.add(dep)
            todo.extend(BY_NAME[dep].dependencies(s))
    return out


def test_only_learn_and_checkpoint_wait_for_mlflow(tmp_path: Path) -> None:
    """MLflow takes ~20 s to start: nothing but the functions that restore/save models may wait for it."""
    s = _settings(tmp_path)
    assert {svc.name for svc in SERVICES if "mlflow" in _needs(svc.name, s)} == {"learn", "checkpoint"}
    assert _needs("mlflow", s) == set()  # and it starts at once, alongside the rest


# A listener on sys.argv[1] that first waits for the file sys.argv[2] (when given) to exist.
LISTENER = """
import os, socket, sys, time
while len(sys.argv) > 2 and not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
time.sleep(300)
"""


def _listener(name: str, port: str, *flag: Path, **kw: object) -> Service:
    return Service(
        name=name,
        argv=lambda s: [sys.executable, "-c", LISTENER, str(s.ports[port]), *map(str, flag)],
        port=port,
        health=Health("tcp"),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.process
def test_a_slow_service_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """The scheduler starts what does not depend on a slow service (MLflow) at once; only its dependents wait."""
    flag = tmp_path / "slow-may-listen"
    slow = _listener(
        "slow", "mlflow", flag, startup_timeout=60.0
    )  # first in the table, like MLflow before the functions
    fast = _listener("fast", "chat", startup_timeout=60.0)
    after = _listener("after", "predict", depends_on=("slow",), startup_timeout=60.0)
    lines: list[str] = []
    plat = Platform(_settings(tmp_path), services=[slow, fast, after], echo=lines.append)
    result: dict[str, float] = {}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.update(plat.start(None))
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("fast ") for line in lines) and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        assert not errors, errors
        assert any(line.startswith("fast ") and "ready in" in line for line in lines), ("fast never ready", lines)
        assert plat.running("slow") and not plat.healthy("slow")  # launched, still starting
        assert "after" not in plat.entries()  # its dependent waits for it
        flag.touch()
        thread.join(60)
        assert not thread.is_alive() and not errors, errors
        assert set(result) == {"slow", "fast", "after"}
        ready = [line.split()[0] for line in lines if "ready in" in line]
        assert ready == ["fast", "slow", "after"], lines
    finally:
        flag.touch()
        thread.join(60)
        assert plat.stop() == []
    assert plat.entries() == {}
