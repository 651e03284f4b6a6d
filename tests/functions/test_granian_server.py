"""The default function server (Granian, ADR 0075): a worker process serves the app; killing the function's
process with SIGKILL, as a crash would, takes the worker with it and frees the port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest
import requests

from coelho.settings import free_port

pytestmark = pytest.mark.process  # a function process under Granian


def test_sigkill_of_the_function_takes_granian_worker_and_port_with_it() -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "COELHO_SERVER": "granian", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.predict"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = requests.get(f"http://127.0.0.1:{port}/health/liveness", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "predict-one did not start under granian"
                time.sleep(0.3)
        assert reply.status_code == 200 and reply.json()["function"] == "predict"
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 1, "granian serves from one worker process"
        worker = workers[0]
        proc.kill()
        proc.wait(10)
        gone, alive = psutil.wait_procs([worker], timeout=10)
        assert worker in gone and not alive, "the worker outlived its killed parent"
        listening = [
            c
            for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
        ]
        assert not listening, f"port {port} still held after the function was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
