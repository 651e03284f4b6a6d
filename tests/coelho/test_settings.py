"""Configuration: defaults, coelho.toml [ports], COELHO_* environment overrides, and what services receive."""

from __future__ import annotations

from pathlib import Path

from coelho.services import BY_NAME, python_service_env
from coelho.settings import DEFAULT_PORTS, Settings


def test_environment_overrides_ports_and_data_dir(tmp_path: Path) -> None:
    s = Settings.load(
        environ={"COELHO_PORT_KAFKA": "29999", "COELHO_DATA_DIR": str(tmp_path / "d")},
        config_file=tmp_path / "absent.toml",
    )
    assert s.ports["kafka"] == 29999
    assert s.kafka_bootstrap == "127.0.0.1:29999"
    assert s.data_dir == tmp_path / "d"
    assert s.ports["redis"] == DEFAULT_PORTS["redis"]
    # the broker really gets the overridden port
    argv = BY_NAME["kafka"].argv(s)
    assert "tcp://127.0.0.1:29999" in argv


def test_config_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "coelho.toml"
    cfg.write_text('data_dir = "somewhere"\nkafka_storage = "memory"\n[ports]\nredis = 7001\nmlflow = 7002\n')
    s = Settings.load(environ={"COELHO_PORT_MLFLOW": "7100"}, config_file=cfg)
    assert s.ports["redis"] == 7001
    assert s.ports["mlflow"] == 7100  # the environment wins over the file
    assert s.data_dir.name == "somewhere" and s.data_dir.is_absolute()
    assert s.kafka_storage == "memory"
    assert "memory://tansu/" in BY_NAME["kafka"].argv(s)
    assert BY_NAME["kafka"].dependencies(s) == ()  # memory storage needs no S3


def test_child_process_environment_round_trips(tmp_path: Path) -> None:
    s = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path)
    env = python_service_env(s, "learn")
    assert env["PORT"] == str(s.ports["learn"])
    assert env["HOST"] == "127.0.0.1"
    assert env["REDIS_URL"] == s.redis_url
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == s.kafka_bootstrap
    again = Settings.load(environ=env, config_file=tmp_path / "none.toml")
    assert again.ports == s.ports
    assert again.data_dir == s.data_dir
