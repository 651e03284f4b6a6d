"""Who may call what: with COELHO_API_TOKEN set, predict-one, the assistant and SQL answer 401 (with a Bearer
challenge) to a request without the token, in constant time; probes and /metrics stay open; learn-one, checkpoint
and the lake take no token. Unset (the embedded default), nothing is asked. The repository's clients send it
(`coelho invoke` only to the functions that ask for it; the dashboard's own: tests/ui/test_dashboard_token.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import click
import deltalake
import pyarrow as pa
import pytest
from flask import Flask

from functions.lake.catalog import LakeCatalog
from functions.lake.sql import SqlEngine
from functions.middleware.app import create_app, reply
from functions.middleware.auth import TOKEN_ENV, auth_headers

TOKEN = "t0ken-" + "x" * 40
CE = {"ce-id": "1", "ce-source": "/t", "ce-specversion": "1.0", "ce-type": "com.example.order"}


def app_named(name: str) -> Flask:
    app = create_app(
        name,
        lambda e: reply(e, "com.example.done", "/t", {"ok": True}),
        accepts=["com.example.order"],
        json_routes={"/predict/": lambda r, p, q: {"ok": True}},
    )

    @app.get("/chat/config")
    def own_route() -> str:
        return "{}"

    return app


@pytest.mark.parametrize("name", ["predict", "chat", "sql"])
def test_the_protected_functions_ask_for_the_token(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    client = app_named(name).test_client()
    for method, path in [("post", "/"), ("post", "/predict/tfd"), ("get", "/chat/config")]:
        bare = getattr(client, method)(path, json={}, headers=CE)
        assert bare.status_code == 401, (path, bare.status_code)
        assert bare.headers["WWW-Authenticate"] == 'Bearer realm="coelho"'
        wrong = getattr(client, method)(path, json={}, headers={**CE, "Authorization": "Bearer " + "x" * 46})
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        assert TOKEN not in wrong.text
        right = getattr(client, method)(path, json={}, headers={**CE, "Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200, (path, right.status_code)
    for open_path in ("/health/liveness", "/health/readiness", "/metrics"):
        assert client.get(open_path).status_code == 200, open_path
    # a refused request is refused before its size is looked at: an outsider learns nothing about the limits
    assert client.post("/", headers=CE, environ_overrides={"CONTENT_LENGTH": "99999999"}).status_code == 401


@pytest.mark.parametrize("name", ["learn", "checkpoint", "lake"])
def test_the_cluster_local_functions_take_no_token(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert app_named(name).test_client().post("/", json={}, headers=CE).status_code == 200


def test_unset_nothing_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert app_named("predict").test_client().post("/", json={}, headers=CE).status_code == 200
    assert auth_headers() == {}


# --- the repository's clients send the token ---------------------------------------------------------------------
class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture()
def sql_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The SQL function, token required, on a thread of this process over a one-row lake."""
    from functions.sql import create

    deltalake.write_deltalake(str(tmp_path / "trips"), pa.table({"trip_id": ["a"]}))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    server = make_server("127.0.0.1", 0, create(SqlEngine(LakeCatalog(root=str(tmp_path)))), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_coelho_sql_and_the_assistant_send_the_token(sql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from coelho.settings import Settings
    from coelho.sql_command import _http
    from functions.assistant.data import PlatformReader

    query = {"query": "SELECT count(*) AS n FROM trips"}
    assert _http("POST", sql_url + "/sql", query)["rows"] == [[1]]
    reader = PlatformReader(Settings.load(), "redis://127.0.0.1:9/0", environ={"SQL_URL": sql_url})
    assert reader.query_lake(query["query"])["rows"] == [[1]]
    monkeypatch.setenv(TOKEN_ENV, "another-token")
    with pytest.raises(click.ClickException, match="bearer token is not valid"):
        _http("POST", sql_url + "/sql", query)
    assert "error" in reader.query_lake(query["query"])


def test_coelho_invoke_sends_the_token_to_the_functions_that_ask_for_it(
    sql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests
    from click.testing import CliRunner

    from coelho.platform_commands import invoke
    from eventing.cloudevent_types import SQL_REQUESTED

    query = '{"query": "SELECT count(*) AS n FROM trips"}'
    result = CliRunner().invoke(invoke, ["sql", "--type", SQL_REQUESTED, "--data", query, "--url", sql_url])
    assert result.exit_code == 0 and result.output.startswith("HTTP 200"), result.output
    assert json.loads(result.output[result.output.index("{") :])["rows"] == [[1]]

    sent: list[dict[str, str]] = []

    class Answer:
        status_code, headers, text = 200, {}, "{}"

    def recorded(url: str, data: bytes, headers: dict[str, str], timeout: float) -> Answer:
        sent.append(headers)
        return Answer()

    monkeypatch.setattr(requests, "post", recorded)
    for function in ("predict", "chat", "learn", "checkpoint", "lake"):
        assert CliRunner().invoke(invoke, [function, "--url", "http://127.0.0.1:9"]).exit_code == 0
    # the cluster-local functions do not check it, so they never see it
    assert [h.get("Authorization") for h in sent] == [f"Bearer {TOKEN}"] * 2 + [None] * 3


def test_the_dashboards_prediction_client_sends_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from coelho.settings import Settings
    from eventing.domains import DOMAINS
    from tests.functions.streams import events
    from ui import predict_client

    sent: dict[str, Any] = {}

    class Recorder:
        def post(self, url: str, headers: dict[str, str], **kwargs: Any) -> Any:
            sent.update(headers)
            raise predict_client.requests.ConnectionError("recorded")

    monkeypatch.setattr(predict_client, "_session", Recorder)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    predict_client.request_prediction(Settings.load(), DOMAINS["tfd"], events("tfd", 1)[0])
    assert sent["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.process
@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_a_served_predict_one_asks_for_the_token_and_bounds_bodies(redis_url: str, server: str) -> None:
    """The real servers pass the Authorization header and Content-Length through; a chunked body over the limit is
    refused too."""
    import os
    import subprocess
    import sys
    import time

    import requests

    from coelho.settings import free_port
    from tests.functions.streams import events

    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "COELHO_SERVER": server,
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url,
        TOKEN_ENV: TOKEN,
        "COELHO_MAX_BODY_BYTES": "4096",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.predict"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert requests.get(url + "/health/liveness", timeout=2).status_code == 200  # open
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "predict-one did not start"
                time.sleep(0.3)
        event = events("tfd", 1)[0]
        bare = requests.post(url + "/predict/tfd", json=event, timeout=10)
        assert bare.status_code == 401 and bare.headers["WWW-Authenticate"].startswith("Bearer")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.post(url + "/predict/tfd", json=event, headers=auth, timeout=10).status_code in (200, 503)
        big = {**event, "padding": "x" * 5000}
        assert requests.post(url + "/predict/tfd", json=big, headers=auth, timeout=10).status_code == 413

        def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 1000

        chunked = requests.post(
            url + "/predict/tfd", data=chunks(), headers={**auth, "Content-Type": "application/json"}, timeout=10
        )
        assert chunked.status_code == 413
        assert requests.get(url + "/openapi.json", timeout=10).json()["paths"]["/predict/tfd"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
