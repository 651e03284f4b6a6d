"""A conversation on each page: the example question, the tool loop, an answer built from live platform data.

The stand-in plays Claude: it asks for a tool, then writes its answer from the tool_result the chat function
sent back. The test reads the same live state straight from Redis (the learner's summary, the log, a follower
replica of the model) and checks the answer carries those figures.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
from anthropic_standin import AnthropicStandIn, text, tool_use
from chat_testkit import answer_text, ask, finite, tool_result_json

from coelho.runtime import Platform
from eventing.domains import DOMAINS

pytestmark = pytest.mark.stack


def _summary(platform: Platform, domain: str) -> dict[str, Any]:
    client = redis.Redis.from_url(platform.settings.redis_url)
    model = DOMAINS[domain].default_model
    return json.loads(client.hget(f"coelho:{domain}:model:{model}:summary", "json"))


def _session() -> str:
    return "t-" + uuid.uuid4().hex[:16]


def test_tfd_page_what_does_this_page_show(chat_url: str, standin: AnthropicStandIn, live_platform: Platform) -> None:
    def answer(body: dict[str, Any]) -> Any:
        info = tool_result_json(body, 0)
        page = tool_result_json(body, 1)
        metrics = info["main_metrics"]
        return [text(
            f"This page shows the live fraud model {info['model']}: it has learned {info['events_learned']} transactions, "
            f"ROC AUC {metrics['ROCAUC']}. Your form has amount {page['form']['amount']}."
        )]

    standin.script(
        [text("Let me look."), tool_use("get_model_info", {"domain": "tfd"}), tool_use("get_page_state", {})],
        answer,
    )
    page = {"page": "tfd", "form": {"amount": 123.45, "currency": "EUR"}, "last_prediction": {"fraud_probability": 0.12}}
    status, events = ask(chat_url, _session(), "What does this page show?", page)
    assert status == 200, events
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert [e["name"] for e in events if e["type"] == "tool"] == ["get_model_info", "get_page_state"]
    assert all(e["ok"] for e in events if e["type"] == "tool_result")
    assert sum(1 for e in events if e["type"] == "text") > 3, "the answer arrives in several chunks"

    # What the function sent: the system prompt explains pages, the page context rides with the request,
    # and the read-only tools are the only ones offered.
    first, second = standin.requests
    assert "Transaction Fraud Detection" in first.system_text and "What does this page show?" in first.system_text
    assert '<page_context page="tfd">' in first.system_text and "123.45" in first.system_text
    assert set(first.tool_names) == {
        "get_page_state", "get_model_info", "get_cluster_analytics", "get_recent_predictions",
        "explain_prediction", "get_platform_health", "describe_domain",
    }
    assert first.body["stream"] is True and first.body["model"] == "claude-sonnet-4-5"
    assert [b["type"] for b in second.messages[-1]["content"]] == ["tool_result", "tool_result"]

    # The answer carries the live figures.
    info = tool_result_json(second.body, 0)
    live = _summary(live_platform, "tfd")
    assert info["events_learned"] >= 1
    assert info["model"] == DOMAINS["tfd"].default_model
    # The learner publishes its summary every 0.5 s; the tool read it a moment before the test did.
    assert info["events_learned"] <= live["events_learned"]
    if info["events_learned"] == live["events_learned"]:
        assert info["main_metrics"]["ROCAUC"] == pytest.approx(live["metrics"]["ROCAUC"], abs=1e-4)
    assert finite(info["main_metrics"]["ROCAUC"])
    text_out = answer_text(events)
    assert f"learned {info['events_learned']} transactions" in text_out
    assert f"ROC AUC {info['main_metrics']['ROCAUC']}" in text_out
    assert "amount 123.45" in text_out
    done = events[-1]
    assert done["tools"] == ["get_model_info", "get_page_state"] and done["answer"] == text_out.strip()
