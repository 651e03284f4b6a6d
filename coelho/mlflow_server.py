"""`mlflow server` with its uvicorn in the same process: MLflow is imported once instead of twice.

`mlflow server` resolves its options, initialises the SQLite store, then starts `python -m uvicorn ...` as a child
and waits for it: two Python processes that both import MLflow (CPU time at start, memory for good). This runs
MLflow's own `server` command unchanged and only replaces that last step: the same uvicorn command line runs in
this process (with --workers 1 uvicorn serves in-process). Any other command goes to MLflow's usual launcher.
The one use of a private MLflow name is in `serve_uvicorn_in_process`.

    python -m coelho.mlflow_server --host 127.0.0.1 --port 5000 --workers 1 --backend-store-uri sqlite:///...
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("coelho.mlflow_server")

UvicornRunner = Callable[[list[str]], Any]


def run_uvicorn(args: list[str]) -> None:
    """`python -m uvicorn ARGS` in this process: uvicorn's own command-line entry point (exits when serving ends)."""
    from uvicorn import main as uvicorn_cli

    uvicorn_cli.main(args=args, prog_name="uvicorn")


def uvicorn_args(cmd: Sequence[str]) -> list[str] | None:
    """The arguments after `-m uvicorn` in a command line, or None if it does not run uvicorn."""
    parts = list(cmd) if not isinstance(cmd, str) else cmd.split()
    for i in range(len(parts) - 1):
        if parts[i] == "-m" and parts[i + 1] == "uvicorn":
            return parts[i + 2 :]
    return None


def serve_uvicorn_in_process(run: UvicornRunner = run_uvicorn) -> bool:
    """Make MLflow's `server` command run its uvicorn child in this process. Returns whether it could.

    Private API used: `mlflow.server._exec_cmd` (MLflow's process launcher, `mlflow.utils.process._exec_cmd`).
    `mlflow.server._run_server` looks it up as a module global and calls it once, as
    `_exec_cmd([python, "-m", "uvicorn", *options, app], extra_env={...}, capture_output=False, synchronous=False)`,
    then waits on the child. No public option keeps `mlflow server` in one process (`--workers 1` still starts
    the child), and serving `mlflow.server.fastapi_app:app` directly would mean re-creating the command's set-up:
    store initialisation and configuration handed to the app in MLflow-private `_MLFLOW_*` environment variables.
    Replacing only the launcher keeps all of that MLflow's own.

    The replacement applies `extra_env` to this process and runs the same uvicorn arguments with `run`. Serving
    ends the process (SystemExit), as the child's exit would have ended `mlflow server`. Other commands go to
    MLflow's launcher.

    Fallback: if the name is gone or no longer takes `extra_env`, nothing is replaced, a warning is logged and
    False is returned. `mlflow server` then runs as usual: two processes, about twice the start-up CPU and
    memory, and a slower stop. tests/coelho/test_mlflow_server_adapter.py fails in that case.
    """
    import mlflow.server as server

    spawn = getattr(server, "_exec_cmd", None)
    try:
        takes_env = callable(spawn) and "extra_env" in inspect.signature(spawn).parameters
    except (TypeError, ValueError):
        takes_env = False
    if spawn is None or not takes_env:
        log.warning("mlflow.server._exec_cmd is gone or changed: MLflow serves from a child process (slower start)")
        return False

    def exec_cmd(cmd: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        uv_args = uvicorn_args(cmd)
        if uv_args is None:
            return spawn(cmd, *args, **kwargs)
        os.environ.update(kwargs.get("extra_env") or {})
        run(uv_args)
        raise SystemExit(0)

    server._exec_cmd = exec_cmd
    return True


def main(argv: list[str] | None = None, run: UvicornRunner = run_uvicorn) -> None:
    serve_uvicorn_in_process(run)
    from mlflow.cli import cli

    cli.main(args=["server", *(sys.argv[1:] if argv is None else argv)], prog_name="mlflow")


if __name__ == "__main__":
    main()
