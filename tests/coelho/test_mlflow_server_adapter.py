"""coelho.mlflow_server relies on one private MLflow name (`mlflow.server._exec_cmd`): these fail if MLflow changes it.

The unit tests run MLflow's real `server` command in this process up to the point where it would start uvicorn;
the stack test starts the platform's MLflow and checks it serves from a single process.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from coelho import mlflow_server
from coelho.services import _mlflow_argv, _mlflow_prepare
from coelho.settings import Settings


@pytest.fixture
def mlflow_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """mlflow.server, with its launcher and this process's environment restored afterwards."""
    import mlflow.server as server

    monkeypatch.setattr(server, "_exec_cmd", server._exec_cmd)
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    environ = dict(os.environ)
    try:
        yield server
    finally:
        # MLflow's server command also sets this process's tracking and registry URIs to its SQLite store: left
        # set, every later MlflowClient of the test session would read that file instead of the platform's server.
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        os.environ.clear()
        os.environ.update(environ)


def test_mlflow_still_has_the_launcher_the_adapter_replaces(mlflow_module: Any) -> None:
    spawn = getattr(mlflow_module, "_exec_cmd", None)
    assert callable(spawn), "mlflow.server._exec_cmd is gone: see coelho.mlflow_server.serve_uvicorn_in_process"
    params = inspect.signature(spawn).parameters
    assert next(iter(params)) == "cmd" and "extra_env" in params, params
    # `_run_server` must look it up as a module global at call time, or replacing the attribute changes nothing
    assert "_exec_cmd" in mlflow_module._run_server.__code__.co_names


def test_mlflow_server_command_runs_uvicorn_through_the_adapter(mlflow_module: Any, tmp_path: Path) -> None:
    settings = Settings.load().with_free_ports(tmp_path)
    command = _mlflow_argv(settings)  # the command line `coelho up` runs, store on SQLite
    argv = command[command.index("coelho.mlflow_server") + 1 :]
    _mlflow_prepare(settings)
    calls: list[list[str]] = []
    with pytest.raises(SystemExit) as stop:
        mlflow_server.main(argv, run=calls.append)
    assert stop.value.code == 0
    assert len(calls) == 1, calls
    args = calls[0]
    assert args[-1] == "mlflow.server.fastapi_app:app", args
    assert args[args.index("--port") + 1] == str(settings.ports["mlflow"]), args
    assert args[args.index("--workers") + 1] == "1", args
    # MLflow hands the app its configuration in the environment: it must have reached this process
    store = argv[argv.index("--backend-store-uri") + 1]
    assert store in os.environ.values(), store


def test_other_commands_still_go_to_mlflows_launcher(mlflow_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[Any] = []

    def launcher(cmd: list[str], *, extra_env: dict[str, str] | None = None, **kwargs: Any) -> str:
        launched.append((cmd, extra_env, kwargs))
        return "launched"

    monkeypatch.setattr(mlflow_module, "_exec_cmd", launcher)
    assert mlflow_server.serve_uvicorn_in_process(run=lambda args: pytest.fail("uvicorn must not run"))
    assert mlflow_module._exec_cmd is not launcher
    assert (
        mlflow_module._exec_cmd([sys.executable, "-m", "huey"], extra_env={"A": "1"}, synchronous=False) == "launched"
    )
    assert launched == [([sys.executable, "-m", "huey"], {"A": "1"}, {"synchronous": False})]


def test_without_the_private_launcher_nothing_is_replaced(mlflow_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(mlflow_module, "_exec_cmd")
    assert not mlflow_server.serve_uvicorn_in_process(run=lambda args: None)
    assert not hasattr(mlflow_module, "_exec_cmd")


def test_uvicorn_args() -> None:
    assert mlflow_server.uvicorn_args(["/usr/bin/python", "-m", "uvicorn", "--port", "1", "app"]) == [
        "--port",
        "1",
        "app",
    ]
    assert mlflow_server.uvicorn_args(["/usr/bin/python", "-m", "huey"]) is None
    assert mlflow_server.uvicorn_args(["uvicorn"]) is None


@pytest.mark.stack
def test_platform_mlflow_serves_from_one_process(platform: Any) -> None:
    platform.start(["mlflow"])
    processes = platform.processes("mlflow")
    assert len(processes) == 1, [p.cmdline() for p in processes]  # two: the adapter no longer applies
    assert "coelho.mlflow_server" in processes[0].cmdline()
    resp = requests.post(
        f"{platform.settings.mlflow_uri}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=30
    )
    assert resp.status_code == 200 and "experiments" in resp.json(), resp.text
