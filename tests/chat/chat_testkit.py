"""Helpers of the assistant's tests: seeded events, posting CloudEvents, asking the chat function."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from eventing.domain import Domain

PROJECT = Path(__file__).resolve().parents[2]
TEST_KEY = "sk-ant-test-" + "k3y" * 8  # what the chat function sends; must never come back in a reply
EVENTS_PER_DOMAIN = 400


def sample_event(domain: Domain, rng: random.Random, t: datetime) -> dict[str, Any]:
    """A valid record of `domain` drawn from its declaration, with a target that depends on the features."""
    event: dict[str, Any] = {}
    for path, field in domain.leaf_fields():
        if field.role == "target":
            continue
        if field.choices:
            value: Any = rng.choice(field.choices)
        elif field.type == "boolean":
            value = rng.random() < 0.85
        elif field.type in ("number", "integer"):
            low = field.minimum if field.minimum is not None else 0.0
            high = field.maximum if field.maximum is not None else 100.0
            if field.unit == "degrees":
                low, high = max(low, -40.0), min(high, 60.0)
            high = min(high, low + 2_000) if high - low > 2_000 else high
            value = rng.uniform(low, high)
            value = int(value) if field.type == "integer" else round(value, 3)
        elif field.type == "timestamp":
            value = t.isoformat()
        else:
            value = f"{field.name}-{rng.randrange(10_000)}"
        node = event
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    event[domain.id_field] = uuid.UUID(int=rng.getrandbits(128)).hex
    if domain.name == "tfd":
        risky = (not event["cvv_provided"]) + (event["account_age_days"] < 200) + (event["payment_method"] == "crypto")
        event["is_fraud"] = rng.random() < 0.05 + 0.3 * risky
    elif domain.name == "eta":
        km = event["estimated_distance_km"] = round(rng.uniform(1, 40), 2)
        event["initial_estimated_travel_time_seconds"] = round(km * 90, 1)
        slow = 1.4 if event["weather"] in ("rain", "heavy_rain", "snow") else 1.0
        event["simulated_actual_travel_time_seconds"] = round(km * 100 * slow + rng.uniform(0, 120), 1)
    return event


def post_event(url: str, domain: Domain, kind: str, data: dict[str, Any]) -> requests.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": f"/coelho/tests/{domain.name}",
        "ce-type": domain.type(kind),
        "ce-domain": domain.name,
        "ce-partitionkey": str(data.get(domain.key_field, "k")),
        "content-type": "application/json",
    }
    return requests.post(url, data=json.dumps(data), headers=headers, timeout=10)


def ask(
    url: str, session_id: str, message: str, page: dict[str, Any] | None = None, sse: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    """POST /chat and read the whole stream: (status, events in arrival order)."""
    headers = {"accept": "text/event-stream"} if sse else {}
    response = requests.post(
        f"{url}/chat",
        json={"session_id": session_id, "message": message, "page": page or {}},
        headers=headers,
        stream=True,
        timeout=60,
    )
    if response.status_code != 200:
        return response.status_code, [response.json()]
    events = []
    if sse:
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    else:
        for line in response.iter_lines(decode_unicode=True):
            if line:
                events.append(json.loads(line))
    return 200, events


def answer_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "text")


def tool_result_json(body: dict[str, Any], index: int = 0) -> Any:
    """The JSON of the index-th tool_result in the last message of a request the stand-in received."""
    block = [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"][index]
    return json.loads(block["content"])


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
