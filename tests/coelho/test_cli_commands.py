"""The `coelho` command refuses what it cannot run, with the reason: no process is started here.

A sub-command whose module cannot be loaded is listed by --help as unavailable and fails when run; `up` with a row
whose module is missing exits 1 naming the row before it starts anything.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import coelho.cli as cli
import coelho.runtime as runtime
from coelho.health import Health
from coelho.services import Service
from coelho.settings import Settings


def test_every_registered_sub_command_loads() -> None:
    for name, target in cli.LAZY_COMMANDS.items():
        assert isinstance(cli.load_command(target), click.Command), name


def test_a_sub_command_that_cannot_be_loaded_is_listed_and_fails_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(cli.LAZY_COMMANDS, "ghost", "functions.no_such_module_xyz:ghost")
    monkeypatch.setitem(cli.LAZY_COMMANDS, "hollow", "coelho.platform_commands:no_such_command")
    runner = CliRunner()
    listing = runner.invoke(cli.main, ["--help"])
    assert listing.exit_code == 0, listing.output
    assert "ghost" in listing.output and "unavailable" in listing.output
    ghost = runner.invoke(cli.main, ["ghost", "tfd", "--rate", "5"])
    assert ghost.exit_code == 1
    assert "ghost: cannot load functions.no_such_module_xyz:ghost" in ghost.output
    assert "No module named 'functions.no_such_module_xyz'" in ghost.output
    hollow = runner.invoke(cli.main, ["hollow"])
    assert hollow.exit_code == 1 and "has no click command 'no_such_command'" in hollow.output
    assert runner.invoke(cli.main, ["no-such-command"]).exit_code == 2  # an unknown name stays a usage error


def test_up_with_a_row_whose_module_is_missing_fails_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "data")
    for name, value in settings.to_environ().items():
        monkeypatch.setenv(name, value)
    gone = Service(
        name="gone", argv=lambda s: ["true"], port="chat", health=Health("tcp"), module="functions.no_such_xyz"
    )
    monkeypatch.setattr(runtime, "SERVICES", [gone])
    monkeypatch.setattr(cli, "_stop_on_interrupt", lambda: None)  # keep pytest's own signal handlers
    result = CliRunner().invoke(cli.main, ["up", "--detach"])
    assert result.exit_code == 1, result.output
    assert "error: gone: python module functions.no_such_xyz is missing" in result.output
    assert "(skipped)" not in result.output
    assert runtime.Platform(settings).entries() == {}
