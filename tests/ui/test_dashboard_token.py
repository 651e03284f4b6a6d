"""The dashboard with the token switch on (COELHO_API_TOKEN set): its SQL page and its assistant panel send the
bearer token, so the sql and chat functions answer them instead of 401.

The functions are the real ones, served on a thread of this process (wsgiref): the SQL function over a one-row
lake; the assistant over a private Redis with a stand-in for the model API (marked `process` through the
`redis_server` fixture). A chat function made of the middleware and routes of the same shape checks the panel's
requests in the fast lane."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import deltalake
import pyarrow as pa
import pytest
from flask import Flask, Response, request

from coelho.settings import Settings
from functions.middleware.auth import TOKEN_ENV

TOKEN = "dashboard-token-" + "y" * 32
SESSION = "web-0123456789abcdef"


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def served(app: Any) -> Iterator[str]:
    """`app` on a free port of 127.0.0.1, on a thread, until the generator is closed: its URL."""
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [event async for event in stream]


# --- the SQL page -------------------------------------------------------------------------------------------------
@pytest.fixture()
def sql_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The sql function, token required, over a lake of one table with one row."""
    from functions.lake.catalog import LakeCatalog
    from functions.lake.sql import SqlEngine
    from functions.sql import create

    deltalake.write_deltalake(str(tmp_path / "trips"), pa.table({"trip_id": ["a"]}))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    yield from served(create(SqlEngine(LakeCatalog(root=str(tmp_path)))))


def test_the_sql_page_lists_tables_and_runs_queries_with_the_token_on(sql_url: str) -> None:
    from ui.pages.sql import SqlPage

    page = SqlPage(Settings())
    page.url = sql_url
    asyncio.run(page.load_tables())
    assert "trips" in page.tables_pane.object, page.tables_pane.object
    page.editor.value = "SELECT count(*) AS n FROM trips"
    asyncio.run(page._run())
    assert page.error is None, page.error
    assert page.result is not None and page.result["rows"] == [[1]]


def test_the_sql_page_shows_the_refusal_of_a_wrong_token(sql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.pages.sql import SqlPage

    page = SqlPage(Settings())
    page.url = sql_url
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    page.editor.value = "SELECT 1"
    asyncio.run(page._run())
    assert page.result is None and "bearer token is not valid" in str(page.error)


# --- the assistant panel, fast lane: the middleware's token switch in front of routes shaped like the chat's -----
@pytest.fixture()
def chat_shaped_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from functions.middleware.app import create_app

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    app: Flask = create_app("chat", lambda event: None, accepts=["com.example.none"])

    @app.post("/chat")
    def chat() -> Response:
        lines = [{"type": "text", "text": "hello"}, {"type": "done", "answer": "hello", "tools": []}]
        return Response("".join(json.dumps(line) + "\n" for line in lines), mimetype="application/x-ndjson")

    @app.get("/chat/history")
    def history() -> Response:
        message = {"role": "user", "content": "asked before"}
        return Response(json.dumps({"session_id": request.args["session_id"], "messages": [message]}))

    yield from served(app)


def test_the_chat_panel_sends_the_token_to_the_middleware(chat_shaped_url: str) -> None:
    from ui.chat_panel import ChatClient

    client = ChatClient(chat_shaped_url, timeout=30)
    assert client.history(SESSION) == [{"role": "user", "content": "asked before"}]
    events = asyncio.run(collect(client.stream(SESSION, "hi", {"page": "home"})))
    assert [e["type"] for e in events] == ["text", "done"], events


# --- the assistant panel against the real chat function (a private Redis, the model API stood in) --------------
@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[str]:
    from tests.functions.function_testkit import throwaway_redis

    with throwaway_redis(tmp_path) as url:
        yield url


@pytest.fixture()
def chat_url(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from functions.chat import ChatConfig, create_chat_app
    from tests.chat.anthropic_standin import AnthropicStandIn, text

    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with AnthropicStandIn() as api:
        api.default = [text("The fraud rate is low.")]
        yield from served(create_chat_app(ChatConfig(api_key="test", base_url=api.url, api_max_retries=0)))


def test_the_chat_panel_talks_to_the_chat_function_with_the_token_on(
    chat_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui.chat_panel import ChatClient

    client = ChatClient(chat_url, timeout=60)
    events = asyncio.run(collect(client.stream(SESSION, "How is fraud?", {"page": "tfd"})))
    assert not [e for e in events if e["type"] == "error"], events
    assert any(e["type"] == "done" and "fraud rate is low" in e["answer"] for e in events), events
    contents = [m["content"] for m in client.history(SESSION)]
    assert "How is fraud?" in contents and "The fraud rate is low." in contents, contents
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")  # a dashboard with another token is refused, and says so
    refused = asyncio.run(collect(ChatClient(chat_url).stream(SESSION, "again?", {"page": "tfd"})))
    assert [e["type"] for e in refused] == ["error"] and "bearer token" in refused[0]["error"], refused
