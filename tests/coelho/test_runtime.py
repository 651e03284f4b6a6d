"""Runtime behaviour on failures, with real Redis and small stand-in rows (fast: no MLflow here)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import psutil
import pytest

from coelho.runtime import Platform, StartError, port_in_use
from coelho.services import BY_NAME, BinaryMissing, Health, Service
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


def test_missing_module_is_skipped_or_refused(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    row = _row("future", "pass", module="functions.not_written_yet_xyz")
    plat = Platform(s, services=[row])
    assert plat.plan(None) == []
    with pytest.raises(StartError, match="does not exist"):
        plat.start(["future"])


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
