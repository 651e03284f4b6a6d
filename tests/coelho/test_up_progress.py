"""`coelho up` shows its progress while the services start, the way `coelho produce` does: on a terminal a line of
services healthy of all, those still starting and the time so far, under the "ready in" lines; nothing but those
lines when stdout is not a terminal (a log, CI)."""

from __future__ import annotations

import io
import re
import sys
import threading
import time
from pathlib import Path

import pytest

from coelho.cli import _start_progress
from coelho.health import Health
from coelho.progress import ServiceProgress
from coelho.runtime import Platform
from coelho.services import Service
from coelho.settings import Settings
from tests.coelho.test_runtime import LISTENER  # a listener that waits for a file before it binds


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def frames(screen: str) -> list[str]:
    """What the progress line showed, each drawing (the wipes and the printed lines left out)."""
    return [f.rstrip() for f in re.split(r"[\r\n]", screen) if f.strip().startswith("healthy ")]


def test_the_line_counts_the_healthy_names_those_starting_and_the_time() -> None:
    screen = Terminal()
    with ServiceProgress(stream=screen, interval=0) as bar:
        bar.update_services([], ["redis", "kafka", "learn"])
        bar.update_services(["redis"], ["kafka", "learn"])
        bar.echo("redis          ready in   0.4 s   redis://127.0.0.1:16379")
        bar.update_services(["redis", "kafka", "learn"], [])
    drawn = screen.getvalue()
    shown = frames(drawn)
    assert shown[0].startswith("healthy 0/3 [....") and "starting: redis, kafka, learn" in shown[0]
    assert any(f.startswith("healthy 1/3 [") and "starting: kafka, learn" in f for f in shown)
    assert shown[-1].startswith("healthy 3/3 [####################]") and "starting" not in shown[-1]
    assert all(re.search(r"\d+(s|m\d\ds)$", f) for f in shown)  # the time so far ends every line
    # the command's own line is wiped clean of the progress line before it is printed, on a line of its own
    assert re.search(r"\r +\rredis          ready in   0\.4 s   redis://127\.0\.0\.1:16379\n", drawn)
    assert drawn.endswith("\r") and drawn.rstrip("\r").split("\r")[-1].strip() == ""  # cleared at the end


def test_not_a_terminal_only_the_commands_lines() -> None:
    piped = io.StringIO()
    with ServiceProgress(stream=piped, interval=0) as bar:
        bar.update_services([], ["redis", "kafka"])
        bar.echo("redis          ready in   0.4 s")
        bar.update_services(["redis"], ["kafka"])
    assert piped.getvalue() == "redis          ready in   0.4 s\n"


def test_many_services_starting_fit_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((50, 24)))
    screen = Terminal()
    with ServiceProgress(stream=screen, interval=0) as bar:
        bar.update_services(["redis"], [f"service{i}" for i in range(12)])
    (line,) = frames(screen.getvalue())
    assert len(line) <= 49 and line.startswith("healthy 1/13") and "+" in line


def _listener(name: str, port: str, *flag: Path) -> Service:
    return Service(
        name=name,
        argv=lambda s: [sys.executable, "-c", LISTENER, str(s.ports[port]), *map(str, flag)],
        port=port,
        health=Health("tcp"),
        startup_timeout=60.0,
    )


def _platform(tmp_path: Path) -> tuple[Platform, Path]:
    settings = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "data")
    flag = tmp_path / "slow-may-listen"
    return Platform(settings, services=[_listener("slow", "mlflow", flag), _listener("fast", "chat")]), flag


@pytest.mark.process
def test_up_on_a_terminal_shows_what_is_still_starting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat, flag = _platform(tmp_path)
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    reports: list[tuple[list[str], list[str]]] = []

    def open_the_gate() -> None:  # "slow" listens once "fast" is reported healthy
        while not any(ready == ["fast"] for ready, _ in reports):
            time.sleep(0.05)
        flag.touch()

    gate = threading.Thread(target=open_the_gate, daemon=True)
    gate.start()
    try:
        with _start_progress(plat) as bar:

            def report(ready: list[str], waiting: list[str]) -> None:
                reports.append((ready, waiting))
                bar.update_services(ready, waiting)

            plat.progress = report
            plat.start(None)
        assert plat.progress is None and plat.echo is not bar.echo  # the command's own echo is back
    finally:
        flag.touch()
        gate.join(10)
        assert plat.stop() == []
    assert reports[0] == ([], ["slow", "fast"]) and reports[-1] == (["slow", "fast"], [])
    assert (["fast"], ["slow"]) in reports
    drawn = screen.getvalue()
    assert any(f.startswith("healthy 1/2") and "starting: slow" in f for f in frames(drawn))
    assert re.search(r"\n?\rfast +ready in", drawn) and re.search(r"\rslow +ready in", drawn)
    assert drawn.rstrip("\r").split("\r")[-1].strip() == ""  # no progress line left under what follows


@pytest.mark.process
def test_up_in_a_log_prints_only_the_ready_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat, flag = _platform(tmp_path)
    flag.touch()
    log = io.StringIO()
    monkeypatch.setattr(sys, "stdout", log)
    try:
        with _start_progress(plat):
            plat.start(None)
    finally:
        assert plat.stop() == []
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and sorted(line.split()[0] for line in lines) == ["fast", "slow"]
    assert all(" ready in " in line for line in lines)


def test_the_same_line_is_not_written_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import coelho.progress

    monkeypatch.setattr(coelho.progress.time, "monotonic", lambda: 1000.0)  # a frozen clock: the same elapsed time
    screen = Terminal()
    with ServiceProgress(stream=screen, interval=0) as bar:
        for _ in range(10):
            bar.update_services(["redis"], ["kafka"])
        bar.update_services(["redis", "kafka"], [])
    assert [f.split("  ")[0] for f in frames(screen.getvalue())] == [
        "healthy 1/2 [##########..........]",
        "healthy 2/2 [####################]",
    ]
