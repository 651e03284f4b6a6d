"""SIGTERM: `python -m producers` (what `coelho up` runs) flushes what it sent and exits quickly and cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from coelho.services import producer_row
from coelho.settings import PROJECT_ROOT
from tests.prometheus_text import samples

pytestmark = pytest.mark.stack


def test_sigterm_flushes_and_exits_quickly(kafka_bootstrap: str, redis_url: str, free_port: Any) -> None:
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url}
    argv = [sys.executable, "-m", "producers", "tfd", "--rate", "200", "--metrics-port", str(port)]
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        produced = 0.0
        while produced < 50 and time.monotonic() < deadline:  # running and acknowledged by Kafka
            assert proc.poll() is None, "producer exited early"
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                text = ""
            produced = sum(samples(text, "coelho_producer_events_total").values())
            time.sleep(0.2)
        assert produced >= 50, "the producer did not get going"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        seconds = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    print(f"producer exit after SIGTERM: {seconds:.2f} s")
    assert proc.returncode == 0
    limit = producer_row("tfd").stop_timeout  # the contract: the runtime SIGKILLs a producer after this long
    assert seconds < limit, f"producer took {seconds:.1f} s to exit on SIGTERM (the runtime SIGKILLs at {limit} s)"
    summary = out.decode().strip().splitlines()[-1]
    assert '"errors": 0' in summary, summary
