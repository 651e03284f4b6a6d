"""A conversation on the Observability page: its example question, the platform-health tool, an answer
built from tool results that match the live platform.

Same shape as test_chat_pages.py: the stand-in plays Claude, asks for get_platform_health, then writes its
answer from the tool_result the chat function sent back; the test reads the same live state itself (Redis,
learn-one's /metrics, the runtime's own health checks) and checks the tool result and the answer carry it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from coelho.runtime import Platform
from eventing.domains import DOMAINS
from functions.assistant.prompt import PAGES
from tests.chat.anthropic_standin import AnthropicStandIn, text, tool_use
from tests.chat.chat_testkit import answer_text, ask, tool_result_json

pytestmark = pytest.mark.stack

# What the dashboard's Observability page sends as its context before its first refresh (ui/observability.py
# `snapshot_context`; after a refresh it adds the figures it shows, tested in tests/observability/test_page_data.py).
OBSERVABILITY_CONTEXT = {"page": "observability", "status": "collecting metrics, nothing shown yet"}

# get_platform_health's service names -> the runtime's service rows.
RUNTIME_NAME = {
    "redis": "redis",
    "learn": "learn",
    "predict": "predict",
    "checkpoint": "checkpoint",
    "mlflow": "mlflow",
    "prometheus": "prometheus",
    "broker": "router",
    "kafka": "kafka",
    "s3": "s3",
    "dashboard": "dashboard",
    "sql": "sql",
}


def _learn_requests(platform: Platform) -> tuple[int, int]:
    """(requests, 5xx answers) learn-one counted so far, from its /metrics."""
    response = requests.get(platform.settings.url("learn") + "/metrics", timeout=5)
    total = errors = 0
    for family in text_string_to_metric_families(response.text):
        if family.name != "coelho_function_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += int(sample.value)
                errors += int(sample.value) if sample.labels.get("code", "").startswith("5") else 0
    return total, errors


def test_observability_page_is_everything_healthy_and_any_drift(
    chat_url: str, standin: AnthropicStandIn, live_platform: Platform
) -> None:
    def answer(body: dict[str, Any]) -> Any:
        health = tool_result_json(body)
        per_domain = "; ".join(
            f"{d}: {v['events_in_log']} events in the log, {v['events_learned']} learned, {v['drifts_detected']} drifts"
            for d, v in health["domains"].items()
        )
        return [
            text(
                f"Down: {', '.join(health['down']) or 'nothing'}. {per_domain}. "
                f"learn-one answered {health['request_errors']['learn']['requests']} requests, "
                f"{health['request_errors']['learn']['5xx']} with a 5xx."
            )
        ]

    standin.script([text("Checking the platform."), tool_use("get_platform_health", {})], answer)
    client: Any = redis.Redis.from_url(live_platform.settings.redis_url)  # its stubs type every reply as a union
    # The seeded streams drift nowhere: put one marker where learn-one records a drift (same key, score and
    # JSON as ModelReplica._drift_marker) so the drift figures are not all zero. Removed at the end.
    model = DOMAINS["eta"].default_model
    marker_key = f"coelho:eta:model:{model}:drift"
    seq = int(client.get("coelho:eta:seq"))
    marker = json.dumps({"seq": seq, "t_ms": 1_764_316_800_000, "events_learned": seq})
    added = client.zadd(marker_key, {marker: seq}, nx=True) if client.zcount(marker_key, seq, seq) == 0 else 0
    try:
        _ask_and_check(chat_url, standin, live_platform, client)
        assert client.zcard(marker_key) >= 1
    finally:
        if added:
            client.zrem(marker_key, marker)


def _ask_and_check(chat_url: str, standin: AnthropicStandIn, live_platform: Platform, client: Any) -> None:
    requests_before = _learn_requests(live_platform)
    status, events = ask(
        chat_url,
        "t-" + uuid.uuid4().hex[:16],
        "Is everything healthy, and has any drift been detected?",
        OBSERVABILITY_CONTEXT,
    )
    assert status == 200, events
    assert events[0]["type"] == "start" and events[-1]["type"] == "done", events
    assert [e["name"] for e in events if e["type"] == "tool"] == ["get_platform_health"]
    assert [e["ok"] for e in events if e["type"] == "tool_result"] == [True]

    # The page's context rode with the request, and the prompt told the model what this page shows.
    first, second = standin.requests
    assert '<page_context page="observability">' in first.system_text
    assert json.dumps(OBSERVABILITY_CONTEXT, sort_keys=True) in first.system_text
    assert PAGES["observability"] in first.system_text
    assert "Is everything healthy, and has any drift been detected?" in json.dumps(first.messages)
    assert [b["type"] for b in second.messages[-1]["content"]] == ["tool_result"]

    # The tool's figures are the live platform's.
    health = tool_result_json(second.body)
    requests_after = _learn_requests(live_platform)
    for tool_name, service in RUNTIME_NAME.items():
        running = service in live_platform.entries() and live_platform.healthy(service)
        assert health["services"][tool_name] == ("up" if running else "down"), (tool_name, health["services"])
    assert {"redis", "learn", "checkpoint", "mlflow", "kafka", "s3"} <= {
        n for n, v in health["services"].items() if v == "up"
    }
    assert health["down"] == sorted(n for n, v in health["services"].items() if v != "up")
    for name, domain in DOMAINS.items():
        got = health["domains"][name]
        model = domain.default_model
        summary = json.loads(client.hget(f"coelho:{name}:model:{model}:summary", "json"))
        drift_key = f"coelho:{name}:model:{model}:drift"
        assert got["model"] == model
        assert got["events_in_log"] == int(client.get(f"coelho:{name}:seq"))
        # learn-one publishes its summary every 0.5 s: the tool read it a moment before the test did.
        assert 1 <= got["events_learned"] <= summary["events_learned"]
        # head - the summary's log position when the tool read it (the summary only moves on since).
        assert got["events_in_log"] - summary["seq"] <= got["learning_lag_events"] <= got["events_in_log"]
        assert got["learning_lag_events"] >= 0
        assert got["drifts_detected"] == client.zcard(drift_key)
        newest = client.zrevrange(drift_key, 0, 0)
        assert got["last_drift"] == (json.loads(newest[0]) if newest else None)
        assert got["training"] == ("paused" if client.exists(f"coelho:{name}:paused_at") else "live")
    learn = health["request_errors"]["learn"]
    assert requests_before[0] <= learn["requests"] <= requests_after[0]
    assert requests_before[1] <= learn["5xx"] <= requests_after[1]  # (fault tests in the session may have caused some)
    assert learn["requests"] >= len(DOMAINS) * 400  # the records live_platform taught

    # The answer is built from those results.
    said = answer_text(events)
    assert f"Down: {', '.join(health['down']) or 'nothing'}." in said
    for name in DOMAINS:
        got = health["domains"][name]
        assert (
            f"{name}: {got['events_in_log']} events in the log, {got['events_learned']} learned, {got['drifts_detected']} drifts"
            in said
        )
    eta = health["domains"]["eta"]
    assert eta["drifts_detected"] >= 1 and eta["last_drift"]["seq"] == eta["events_in_log"]
    assert f"learn-one answered {learn['requests']} requests, {learn['5xx']} with a 5xx." in said
    assert events[-1]["tools"] == ["get_platform_health"] and events[-1]["answer"] == said.strip()
