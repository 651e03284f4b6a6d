"""The assistant's HTTP edge, in process: bounded input (413 before reading, nested JSON and text bodies 400)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.chat import ChatConfig, create_chat_app


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")  # never reached: every request here is refused first
    return create_chat_app(ChatConfig(api_key="test-key", base_url="http://127.0.0.1:9")).test_client()


def test_a_body_past_the_limit_is_413(client: Any) -> None:
    response = client.post("/chat", data=json.dumps({"message": "x" * 60_000}), content_type="application/json")
    assert response.status_code == 413 and "limit is 48000 bytes" in response.json["error"]


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        ("[" * 20_000 + "]" * 20_000, "application/json", "nested too deeply"),
        (
            json.dumps(
                {
                    "session_id": "s" * 10,
                    "message": "hi",
                    "page": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
                }
            ),
            "application/json",
            "nests too deeply",
        ),
        ("message=hi", "text/plain", "send a JSON object"),
        ("{not json", "application/json", "send a JSON object"),
    ],
)
def test_bad_bodies_are_400(client: Any, body: str, content_type: str, reason: str) -> None:
    response = client.post("/chat", data=body, content_type=content_type)
    assert response.status_code == 400 and reason in response.json["error"], response.json
