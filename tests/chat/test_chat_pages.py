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

from coelho.runtime import Platform
from eventing.domains import DOMAINS
from tests.chat.anthropic_standin import AnthropicStandIn, text, tool_use
from tests.chat.chat_testkit import answer_text, ask, finite, tool_result_json

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
        return [
            text(
                f"This page shows the live fraud model {info['model']}: it has learned {info['events_learned']} transactions, "
                f"ROC AUC {metrics['ROCAUC']}. Your form has amount {page['form']['amount']}."
            )
        ]

    standin.script(
        [text("Let me look."), tool_use("get_model_info", {"domain": "tfd"}), tool_use("get_page_state", {})],
        answer,
    )
    page = {
        "page": "tfd",
        "form": {"amount": 123.45, "currency": "EUR"},
        "last_prediction": {"fraud_probability": 0.12},
    }
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
        "get_page_state",
        "get_model_info",
        "get_cluster_analytics",
        "get_recent_predictions",
        "explain_prediction",
        "get_platform_health",
        "describe_domain",
        "query_lake",
        "compare_models",
        "search_docs",
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


def test_ecci_page_what_does_a_cluster_represent(
    chat_url: str, standin: AnthropicStandIn, live_platform: Platform
) -> None:
    def answer(body: dict[str, Any]) -> Any:
        data = tool_result_json(body)
        biggest = max(data["samples_per_cluster"], key=lambda c: data["samples_per_cluster"][c])
        profile = data["profiles"][biggest]
        top_type = max(profile["event_type"], key=profile["event_type"].get)
        return [
            text(
                f"A cluster is a group of similar interactions. Cluster {biggest} is the largest with "
                f"{data['samples_per_cluster'][biggest]} interactions, mostly {top_type}; "
                f"DBSTREAM finds {data['n_clusters']} clusters now."
            )
        ]

    standin.script([tool_use("get_cluster_analytics", {})], answer)
    status, events = ask(
        chat_url, _session(), "What does a cluster represent?", {"page": "ecci", "tab": "Cluster Analytics"}
    )
    assert status == 200, events
    data = tool_result_json(standin.requests[1].body)
    live = _summary(live_platform, "ecci")
    # The tool's cluster sizes are the learner's live profiles (read a moment earlier: never ahead of them).
    assert data["n_clusters"] >= 1 and data["samples_per_cluster"]
    for cluster, samples in data["samples_per_cluster"].items():
        assert 0 < samples <= live["clusters"][cluster]["samples"]
    assert sum(data["samples_per_cluster"].values()) <= live["events_learned"]
    assert isinstance(data["separating_features"], dict) and data["separating_features"]["centres"]
    biggest = max(data["samples_per_cluster"], key=lambda c: data["samples_per_cluster"][c])
    assert f"Cluster {biggest} is the largest with {data['samples_per_cluster'][biggest]} interactions" in answer_text(
        events
    )
    assert "Cluster Analytics" in standin.requests[0].system_text


def test_home_page_platform_health(chat_url: str, standin: AnthropicStandIn, live_platform: Platform) -> None:
    def answer(body: dict[str, Any]) -> Any:
        health = tool_result_json(body)
        return [
            text(
                f"Down: {', '.join(health['down']) or 'nothing'}. The fraud log holds {health['domains']['tfd']['events_in_log']} events."
            )
        ]

    standin.script([tool_use("get_platform_health", {})], answer)
    status, events = ask(chat_url, _session(), "What does this page show? Is everything healthy?", {"page": "home"})
    assert status == 200, events
    health = tool_result_json(standin.requests[1].body)
    client = redis.Redis.from_url(live_platform.settings.redis_url)
    assert health["services"]["redis"] == "up" and health["services"]["learn"] == "up"
    assert health["services"]["mlflow"] == "up" and health["services"]["checkpoint"] == "up"
    assert health["services"]["predict"] == ("up" if live_platform.running("predict") else "down")
    for domain in DOMAINS:
        assert health["domains"][domain]["events_in_log"] == int(client.get(f"coelho:{domain}:seq"))
    assert health["request_errors"]["learn"]["requests"] >= 3 * 400
    assert f"The fraud log holds {int(client.get('coelho:tfd:seq'))} events." in answer_text(events)
