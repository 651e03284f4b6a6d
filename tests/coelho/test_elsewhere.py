"""`coelho status` and `down` run with another COELHO_DATA_DIR say where the running platform is, instead of
"nothing running" while its processes hold the ports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from coelho.cli import main
from coelho.platform_registry import other_platforms
from coelho.runtime import Platform
from coelho.services import BY_NAME
from coelho.settings import Settings


@pytest.mark.process
@pytest.mark.parametrize("registry", [True, False], ids=["registry", "ports"])
def test_status_and_down_point_at_the_platform_of_another_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: bool
) -> None:
    monkeypatch.setenv("COELHO_REGISTRY_DIR", str(tmp_path / "registry"))
    running = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "running")
    plat = Platform(running, services=[BY_NAME["redis"]])
    plat.start(["redis"])
    try:
        if not registry:  # found by who holds the ports alone
            for note in (tmp_path / "registry").glob("*.json"):
                note.unlink()
        elsewhere = {**running.to_environ(), "COELHO_DATA_DIR": str(tmp_path / "elsewhere")}
        runner = CliRunner()
        status = runner.invoke(main, ["status"], env=elsewhere)
        assert status.exit_code == 1
        assert f"COELHO_DATA_DIR={running.data_dir}" in status.output and "redis" in status.output, status.output
        as_json = json.loads(runner.invoke(main, ["status", "--json"], env=elsewhere).output)
        assert [o["data_dir"] for o in as_json["elsewhere"]] == [str(running.data_dir)]
        down = runner.invoke(main, ["down"], env=elsewhere)
        assert "nothing running in" in down.output and f"COELHO_DATA_DIR={running.data_dir}" in down.output
        assert plat.running("redis")  # it pointed at the platform; it stopped nothing of it
    finally:
        assert plat.stop() == []
    assert not list((tmp_path / "registry").glob("*.json"))  # the note goes with the platform
    assert other_platforms(running.with_free_ports(tmp_path / "x")) == []
