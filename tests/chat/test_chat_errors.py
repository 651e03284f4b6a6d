"""When the assistant cannot answer: no key, the API rate limited or overloaded, the network down, mid-stream
failures, and the CloudEvent path. Each gets a clear message and, where retrying helps, 503 + Retry-After."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
import requests

from coelho.settings import free_port
from tests.chat.anthropic_standin import AnthropicStandIn, error, text, tool_use
from tests.chat.chat_testkit import TEST_KEY, answer_text, ask

pytestmark = pytest.mark.stack


def _session() -> str:
    return "e-" + uuid.uuid4().hex[:16]


def test_no_api_key_answers_clearly(start_chat: Callable[[dict[str, str]], str]) -> None:
    url = start_chat({})
    status, body = ask(url, _session(), "What does this page show?", {"page": "tfd"})
    assert status == 503
    assert (
        body[0]["retryable"] is False
        and "ANTHROPIC_API_KEY" in body[0]["error"]
        and "not configured" in body[0]["error"]
    )
    # The function itself is healthy: the rest of the platform does not depend on the key.
    assert requests.get(f"{url}/health/readiness", timeout=5).status_code == 200
    config = requests.get(f"{url}/chat/config", timeout=5).json()
    assert config == {"model": "claude-sonnet-4-5", "configured": False, "tools": config["tools"]}


@pytest.mark.parametrize(("status", "words"), [(429, "rate limited"), (529, "overloaded")])
def test_rate_limit_and_overload_are_retryable(
    chat_url: str, standin: AnthropicStandIn, status: int, words: str
) -> None:
    standin.script(error(status))
    response = requests.post(
        f"{chat_url}/chat", json={"session_id": _session(), "message": "hi", "page": {}}, timeout=30
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["retryable"] is True and words in body["error"]
    assert len(standin.requests) == 1


def test_network_down_is_retryable(start_chat: Callable[[dict[str, str]], str]) -> None:
    url = start_chat({"ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    response = requests.post(f"{url}/chat", json={"session_id": _session(), "message": "hi", "page": {}}, timeout=30)
    assert response.status_code == 503 and response.json()["retryable"] is True
    assert "cannot reach the Claude API" in response.json()["error"]
    assert "Retry-After" in response.headers


def test_failure_after_a_tool_call_ends_the_stream_with_an_error_event(
    chat_url: str, standin: AnthropicStandIn
) -> None:
    standin.script([text("Checking the model."), tool_use("get_model_info", {"domain": "eta"})], error(529))
    status, events = ask(chat_url, _session(), "How good is the ETA model?", {"page": "eta"})
    assert status == 200
    assert events[-1]["type"] == "error" and events[-1]["retryable"] is True and "overloaded" in events[-1]["error"]
    assert "Checking the model." in answer_text(events)
    assert not any(e["type"] == "done" for e in events)


def test_rejected_key_is_not_retryable(chat_url: str, standin: AnthropicStandIn) -> None:
    standin.script(error(401))
    response = requests.post(
        f"{chat_url}/chat", json={"session_id": _session(), "message": "hi", "page": {}}, timeout=30
    )
    assert response.status_code == 502 and response.json()["retryable"] is False
    assert "ANTHROPIC_API_KEY" in response.json()["error"] and TEST_KEY not in response.text


def test_server_sent_events_and_the_cloudevent_path(chat_url: str, standin: AnthropicStandIn) -> None:
    standin.script([text("Hello from the stand-in, streamed as server-sent events.")])
    status, events = ask(chat_url, _session(), "hello", {"page": "home"}, sse=True)
    assert status == 200 and events[0]["type"] == "start" and events[-1]["type"] == "done"
    assert answer_text(events) == "Hello from the stand-in, streamed as server-sent events."

    standin.script([tool_use("describe_domain", {"domain": "ecci"})], [text("ECCI clusters shoppers.")])
    session = _session()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/coelho/tests/chat",
        "ce-type": "com.coelho.realtime.chat.requested",
        "content-type": "application/json",
    }
    response = requests.post(
        chat_url,
        data=json.dumps({"session_id": session, "message": "What is ECCI?", "page": {"page": "ecci"}}),
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["ce-type"] == "com.coelho.realtime.chat.answer"
    assert response.json() == {"session_id": session, "answer": "ECCI clusters shoppers.", "tools": ["describe_domain"]}

    standin.script(error(529))
    headers["ce-id"] = str(uuid.uuid4())
    response = requests.post(
        chat_url, data=json.dumps({"session_id": session, "message": "again"}), headers=headers, timeout=30
    )
    assert response.status_code == 503, "the broker retries a chat request the API could not serve"
    headers.update({"ce-id": str(uuid.uuid4()), "ce-type": "boson.fn"})
    response = requests.post(chat_url, data=json.dumps({"message": "Hello World"}), headers=headers, timeout=30)
    assert response.status_code == 400 and "com.coelho.realtime.chat.requested" in response.json()["accepted_types"]
