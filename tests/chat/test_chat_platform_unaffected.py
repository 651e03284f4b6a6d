"""When the Claude API fails, the rest of the platform is unaffected: right after a failing chat
request on the same platform, learn-one and predict-one keep answering (and learning)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime

import pytest
import requests

from coelho.runtime import Platform
from eventing.domains import get_domain
from tests.chat.anthropic_standin import AnthropicStandIn, error
from tests.chat.chat_testkit import sample_event

pytestmark = pytest.mark.stack


def _cloudevent_headers(ce_type: str, domain: str, key: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/coelho/tests/chat",
        "ce-type": ce_type,
        "ce-domain": domain,
        "ce-partitionkey": key,
        "content-type": "application/json",
    }


@pytest.mark.parametrize("status", [529, 500])
def test_a_failing_chat_api_leaves_learn_and_predict_answering(
    chat_url: str, standin: AnthropicStandIn, live_platform: Platform, status: int
) -> None:
    live_platform.start(["predict"])
    tfd = get_domain("tfd")
    event = sample_event(tfd, random.Random(status), datetime(2026, 11, 28, 9, 0, tzinfo=UTC))
    predict, learn = live_platform.settings.url("predict"), live_platform.settings.url("learn")
    standin.script(error(status))
    failed = requests.post(
        f"{chat_url}/chat",
        json={"session_id": "u-" + uuid.uuid4().hex[:12], "message": "hi", "page": {"page": "tfd"}},
        timeout=30,
    )
    assert failed.status_code >= 500 and failed.json()["error"], failed.text  # the chat failed, clearly
    assert len(standin.requests) == 1
    # Right after, on the same platform: predictions and learning carry on.
    features = {k: v for k, v in event.items() if k != tfd.target}
    answer = requests.post(
        predict,
        data=json.dumps(features),
        timeout=10,
        headers=_cloudevent_headers(tfd.type("prediction.requested"), "tfd", event["user_id"]),
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["ce-type"] == tfd.type("prediction") and 0.0 <= answer.json()["fraud_probability"] <= 1.0
    learned = requests.post(
        learn,
        data=json.dumps(event),
        timeout=10,
        headers=_cloudevent_headers(tfd.type("record"), "tfd", event["user_id"]),
    )
    assert learned.status_code == 200, learned.text
    assert learned.json()["duplicate"] is False and learned.json()["models"][0]["learned"] is True
    assert requests.get(f"{chat_url}/health/readiness", timeout=5).status_code == 200  # and chat itself stays up
