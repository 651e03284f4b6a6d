"""`coelho up`'s live summary reports a service that died, fed with a real Platform's status.

Cheap stand-in rows (as in test_runtime.py): a plain TCP listener and a `learn` that serves /metrics the way
learn-one does, started and killed by the real runtime; the line is the one `up` prints every interval.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from coelho.cli import summary_line
from coelho.health import Health
from coelho.runtime import Platform
from coelho.services import Service
from coelho.settings import Settings

# A TCP listener on port sys.argv[1].
LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
time.sleep(300)
"""

# learn-one's /metrics, reduced to the counter the summary reads.
METRICS = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
BODY = (
    "# TYPE coelho_events_learned_total counter\\n"
    'coelho_events_learned_total{domain="tfd",model_version="1"} 7\\n'
    'coelho_events_learned_total{domain="tfd",model_version="2"} 5\\n'
    'coelho_events_learned_total{domain="ecci",model_version="1"} 3\\n'
).encode()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _row(name: str, port: str, code: str) -> Service:
    return Service(
        name=name,
        argv=lambda s: [sys.executable, "-c", code, str(s.ports[port])],
        port=port,
        health=Health("tcp"),
        startup_timeout=30.0,
        stop_timeout=5.0,
    )


def _counts(line: str) -> tuple[int, int]:
    m = re.search(r"healthy (\d+)/(\d+)", line)
    assert m, line
    return int(m[1]), int(m[2])


@pytest.mark.process  # the runtime starts and kills the stand-in rows
def test_live_summary_names_a_killed_service_unhealthy(tmp_path: Path) -> None:
    s = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "data")
    plat = Platform(s, services=[_row("learn", "learn", METRICS), _row("sidecar", "chat", LISTENER)])
    try:
        plat.start(None)
        line = summary_line(plat)
        assert _counts(line) == (2, 2), line
        assert "UNHEALTHY" not in line, line
        assert line.endswith("learned: tfd=12 eta=0 ecci=3"), line  # summed over model versions, every domain named

        plat.kill("sidecar")
        line = summary_line(plat)
        assert _counts(line) == (1, 2), line
        assert re.search(r"UNHEALTHY: sidecar(\s|$)", line), line
        assert "learned: tfd=12" in line, line  # the rest of the summary still shows

        plat.kill("learn")
        line = summary_line(plat)
        assert _counts(line) == (0, 2), line
        unhealthy = re.search(r"UNHEALTHY: (.*)$", line)
        assert unhealthy and set(unhealthy[1].split(", ")) == {"learn", "sidecar"}, line
        assert "learned:" not in line, line  # learn-one is gone: no stale figures
    finally:
        assert plat.stop() == []
    assert plat.entries() == {}
