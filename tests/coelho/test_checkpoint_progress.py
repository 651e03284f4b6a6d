"""`coelho checkpoint --wait` on a terminal: the command runs under a pseudo-terminal, as in a shell, and draws its
progress line (models with their new version of all, the bar) until every live model has one, then clears it and
prints each new version on a line of its own. The Broker is a stand-in that accepts the request and, as the
checkpoint function would, stores each model's new checkpoint record in Redis a moment apart.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from coelho.settings import PROJECT_ROOT, Settings
from eventing.domains import get_domain
from functions.model_state import ab
from functions.model_state.keys import model_key
from tests.functions.function_testkit import throwaway_redis

MODELS = ["log_linear_regression", "hoeffding_adaptive_tree"]  # eta's two live models


def _broker(client: redis.Redis, received: list[dict[str, str]]) -> ThreadingHTTPServer:
    """Answers a checkpoint request with 202, then writes each live model's new checkpoint 1 s apart."""

    def checkpoint_later() -> None:
        for version, name in enumerate(MODELS, start=2):
            time.sleep(1.0)
            client.set(model_key("eta", name, "checkpoint"), json.dumps({"version": version, "run_id": "r"}))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
            threading.Thread(target=checkpoint_later, daemon=True).start()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _run_on_a_terminal(argv: list[str], env: dict[str, str], timeout: float) -> str:
    """Everything the command wrote to its terminal (stdout and stderr are the same pseudo-terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=PROJECT_ROOT, close_fds=True)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command exited and the terminal closed
                break
            if not chunk:
                break
            screen += chunk
        assert proc.wait(max(1.0, deadline - time.monotonic())) == 0, screen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return screen.decode(errors="replace")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with throwaway_redis(tmp_path) as url:
        yield url


@pytest.mark.process
def test_checkpoint_wait_on_a_terminal_draws_the_models_done_of_all(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    assert [m.name for m in ab.live_models(client, get_domain("eta"), MODELS)] == MODELS
    received: list[dict[str, str]] = []
    broker = _broker(client, received)
    try:
        settings = Settings.load(environ={}, config_file=tmp_path / "none.toml")
        env = {
            **os.environ,
            **settings.to_environ(),
            "COELHO_PORT_REDIS": redis_url.rsplit(":", 1)[1].split("/")[0],
            "COELHO_DATA_DIR": str(tmp_path / "data"),
            "COLUMNS": "100",
        }
        url = f"http://127.0.0.1:{broker.server_address[1]}/coelho/default"
        argv = [sys.executable, "-m", "coelho.cli", "checkpoint", "eta", "--wait", "--timeout", "60"]
        screen = _run_on_a_terminal([*argv, "--broker", url], env, timeout=120)
    finally:
        broker.shutdown()
        client.close()
    assert len(received) == 1 and received[0]["ce-type"] == "com.coelho.realtime.checkpoint.requested"
    drawn = [f.strip() for f in re.split(r"[\r\n]", screen) if f.strip().startswith("checkpoints")]
    # the line, redrawn in place: none of two, then one, then both, with the bar, the count and the rate
    assert drawn and drawn[0].startswith("checkpoints [....................]") and "0/2 models" in drawn[0], drawn
    assert any(f.startswith("checkpoints [##########..........]") and "1/2 models" in f for f in drawn), drawn
    assert "2/2 models" in drawn[-1] and all("/s" in f for f in drawn), drawn
    # wiped before the result, which follows on lines of its own (the terminal turns each \n into \r\n)
    result = r"\r +\reta hoeffding_adaptive_tree: version 3\r\neta log_linear_regression: version 2\r\n$"
    assert re.search(result, screen), screen
