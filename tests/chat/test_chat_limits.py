"""The assistant's limits and privacy, on the Anthropic stand-in with a private Redis, the chat app in process:
a per-session rate limit and a daily token budget (429 with Retry-After), a session's history readable only by
that session (and CloudEvent conversations kept apart from the dashboard's), tool results with personal data
minimised before they reach the model API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from functions.assistant.limits import TOKENS_KEY
from functions.chat import ChatConfig, create_chat_app
from tests.chat.anthropic_standin import AnthropicStandIn, text, tool_use
from tests.functions.conftest import redis_server, redis_url  # noqa: F401  (fixtures: a private redis-server)


@pytest.fixture()
def api() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn() as server:
        server.default = [text("An answer.")]
        yield server


def chat_client(api: AnthropicStandIn, **limits: Any) -> Any:
    config = ChatConfig(api_key="test", base_url=api.url, api_max_retries=0, **limits)
    return create_chat_app(config).test_client()


def ask(client: Any, session: str, message: str = "How is the fraud model doing?", page: Any = None) -> Any:
    response = client.post("/chat", json={"session_id": session, "message": message, "page": page or {}})
    response.get_data()  # the whole stream
    return response


def session() -> str:
    return "web-" + uuid.uuid4().hex


def test_a_session_is_rate_limited(api: AnthropicStandIn, redis_url: str) -> None:  # noqa: F811
    client = chat_client(api, rate_per_minute=2)
    busy, other = session(), session()
    assert [ask(client, busy).status_code for _ in range(2)] == [200, 200]
    refused = ask(client, busy)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "at most 2 a minute" in refused.json["error"] and refused.json["retryable"] is True
    assert ask(client, other).status_code == 200  # other sessions are not held up
    assert len(api.requests) == 3  # the refused question never reached the model API


def test_the_daily_token_budget(api: AnthropicStandIn, redis_url: str) -> None:  # noqa: F811
    client = chat_client(api, daily_tokens=50)
    assert ask(client, session()).status_code == 200
    spent = sum(int(v) for k, v in _tokens(redis_url).items())
    assert spent >= 50  # the stand-in reports the tokens of its answers, as the API does
    refused = ask(client, session())
    assert refused.status_code == 429 and "token budget for today" in refused.json["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
    assert len(api.requests) == 1


def _tokens(url: str) -> dict[str, str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return {k: client.get(k) or "0" for k in client.scan_iter(TOKENS_KEY.format(day="*"))}


def test_a_history_is_readable_only_by_its_session(api: AnthropicStandIn, redis_url: str) -> None:  # noqa: F811
    client = chat_client(api)
    mine, theirs = session(), session()
    ask(client, mine, "my private question about user 42")
    own = client.get("/chat/history", query_string={"session_id": mine}).json["messages"]
    assert own[0]["content"] == "my private question about user 42"
    assert client.get("/chat/history", query_string={"session_id": theirs}).json["messages"] == []
    # a chat.requested CloudEvent naming the dashboard session's id neither reads nor extends that conversation
    headers = {
        "ce-id": "1",
        "ce-source": "/somewhere",
        "ce-specversion": "1.0",
        "ce-type": "com.coelho.realtime.chat.requested",
    }
    answer = client.post("/", json={"session_id": mine, "message": "what did I ask before?"}, headers=headers)
    assert answer.status_code == 200
    sent = api.requests[-1].messages
    assert all("user 42" not in json.dumps(m) for m in sent)
    assert len(client.get("/chat/history", query_string={"session_id": mine}).json["messages"]) == 2


def test_tool_results_minimise_personal_data(api: AnthropicStandIn, redis_url: str) -> None:  # noqa: F811
    api.script([tool_use("get_page_state", {}, "t1")], [text("The form shows a purchase.")])
    page = {
        "page": "tfd",
        "form": {
            "user_id": "USER-8812",
            "ip_address": "203.0.113.9",
            "user_agent": "Mozilla/5.0 (X11)",
            "location": {"lat": 40.41678, "lon": -3.70379},
            "amount": 125.5,
        },
    }
    assert ask(client := chat_client(api), session(), "what is on this page?", page).status_code == 200
    result = json.dumps(api.requests[-1].tool_results())
    for personal in ("USER-8812", "203.0.113.9", "Mozilla", "40.41678", "-3.70379"):
        assert personal not in result, personal
    assert "125.5" in result and "user_id~" in result and "40.4" in result
    assert client is not None
