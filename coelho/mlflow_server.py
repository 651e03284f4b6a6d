"""`mlflow server` with its uvicorn in the same process: MLflow is imported once instead of twice.

`mlflow server` resolves its options, initialises the SQLite store, then starts `python -m uvicorn ...` as a child
and waits for it: two Python processes that both import MLflow (CPU time at start, memory for good). This runs
MLflow's own `server` command unchanged and only replaces that last step: the same uvicorn command line runs in
this process (with --workers 1 uvicorn serves in-process). Any other command goes to MLflow's usual launcher.

    python -m coelho.mlflow_server --host 127.0.0.1 --port 5000 --workers 1 --backend-store-uri sqlite:///...
"""

from __future__ import annotations

import os
import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    import mlflow.server as server

    spawn = getattr(server, "_exec_cmd", None)

    def serve_in_process(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        if "-m" in cmd and cmd.index("-m") + 1 < len(cmd) and cmd[cmd.index("-m") + 1] == "uvicorn":
            os.environ.update(kwargs.get("extra_env") or {})
            from uvicorn.main import main as uvicorn

            uvicorn.main(args=list(cmd[cmd.index("-m") + 2 :]), prog_name="uvicorn")  # exits when serving ends
        assert spawn is not None
        return spawn(cmd, *args, **kwargs)

    if spawn is not None:  # (a future MLflow without it: plain `mlflow server`, two processes)
        server._exec_cmd = serve_in_process
    from mlflow.cli import cli

    cli.main(args=["server", *(sys.argv[1:] if argv is None else argv)], prog_name="mlflow")


if __name__ == "__main__":
    main()
