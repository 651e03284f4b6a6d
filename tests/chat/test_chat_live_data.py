"""Tools against live data the test creates itself: the learner's own predictions, and an MLflow checkpoint."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from coelho.runtime import Platform
from eventing.cloudevent_types import CHECKPOINT_REQUESTED
from eventing.domains import TFD
from tests.chat.anthropic_standin import AnthropicStandIn, text, tool_use
from tests.chat.chat_testkit import answer_text, ask, post_event, sample_event, tool_result_json

pytestmark = pytest.mark.stack


def test_recent_predictions_are_the_learners_own(
    chat_url: str, standin: AnthropicStandIn, live_platform: Platform
) -> None:
    rng = random.Random(2024)
    learned: list[tuple[str, float, bool]] = []
    for i in range(3):
        event = sample_event(TFD, rng, datetime(2026, 11, 27, 12, 0, tzinfo=UTC) + timedelta(minutes=i))
        response = post_event(live_platform.settings.url("learn"), TFD, "record", event)
        assert response.status_code == 200, response.text
        model = response.json()["models"][0]
        learned.append((event["transaction_id"], model["prediction"], event["is_fraud"]))

    standin.script(
        [tool_use("get_recent_predictions", {"domain": "tfd", "limit": 3})],
        lambda body: [
            text(
                "Latest: "
                + ", ".join(
                    f"{p['id'][:6]}={p['fraud_probability']}"
                    for p in tool_result_json(body)["predictions_newest_first"]
                )
            )
        ],
    )
    status, events = ask(chat_url, "r-" + uuid.uuid4().hex[:12], "Show me the latest predictions.", {"page": "tfd"})
    assert status == 200, events
    rows = tool_result_json(standin.requests[1].body)["predictions_newest_first"]
    assert [r["id"] for r in rows] == [t for t, _, _ in reversed(learned)]
    for row, (_, prediction, is_fraud) in zip(rows, reversed(learned), strict=True):
        assert row["fraud_probability"] == pytest.approx(prediction, abs=1e-4)
        assert row["actual_is_fraud"] is is_fraud and row["is_fraud"] is (prediction >= 0.5)
    assert answer_text(events) == "Latest: " + ", ".join(f"{r['id'][:6]}={r['fraud_probability']}" for r in rows)


def test_model_info_shows_the_registered_mlflow_version(
    chat_url: str, standin: AnthropicStandIn, live_platform: Platform
) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/coelho/tests/chat",
        "ce-type": CHECKPOINT_REQUESTED,
        "content-type": "application/json",
    }
    response = requests.post(
        live_platform.settings.url("checkpoint"), data=json.dumps({"domain": "tfd"}), headers=headers, timeout=120
    )
    assert response.status_code == 200, response.text
    record = response.json()["checkpoints"][0]

    def answer(body: dict[str, Any]) -> Any:
        latest = tool_result_json(body)["mlflow"]["latest_versions"][0]
        return [text(f"Version {latest['version']} was checkpointed after {latest['events_learned']} events.")]

    standin.script([tool_use("get_model_info", {"domain": "tfd"})], answer)
    status, events = ask(chat_url, "v-" + uuid.uuid4().hex[:12], "Which model version is this?", {"page": "tfd"})
    assert status == 200, events
    mlflow = tool_result_json(standin.requests[1].body)["mlflow"]
    latest = mlflow["latest_versions"][0]
    assert mlflow["registered_model"] == "coelho-tfd" == record["registered_model"]
    assert latest["version"] == record["version"] and latest["events_learned"] == record["events_learned"]
    assert latest["run_id"] == record["run_id"] and latest["model"] == TFD.default_model
    assert latest["metrics_at_checkpoint"]["events_learned"] == record["events_learned"]
    assert (
        answer_text(events) == f"Version {record['version']} was checkpointed after {record['events_learned']} events."
    )
