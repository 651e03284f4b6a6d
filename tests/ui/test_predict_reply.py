"""The dashboard takes predict-one's reply only when it has the fields the domain declares: the pages read those
fields and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coelho.settings import Settings
from eventing.domains import DOMAINS
from ui import predict_client
from ui.sample import sample_payload

REPLIES: dict[str, dict[str, Any]] = {
    "tfd": {"fraud_probability": 0.82, "is_fraud": True, "risk_level": "high"},
    "eta": {"eta_seconds": 930.0, "eta_minutes": 15.5},
    "ecci": {"cluster": 2, "cluster_description": "cluster 2: 40 interactions"},
}


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status_code = 200
        self.content = json.dumps(body).encode()
        self.text = self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


class _Session:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def post(self, *args: Any, **kwargs: Any) -> _Response:
        return _Response(self.body)


def _ask(monkeypatch: pytest.MonkeyPatch, name: str, body: dict[str, Any]) -> predict_client.PredictionReply:
    monkeypatch.setattr(predict_client, "_session", lambda: _Session(body))
    d = DOMAINS[name]
    return predict_client.request_prediction(Settings(), d, sample_payload(d))


@pytest.mark.parametrize("name", list(DOMAINS))
def test_a_declared_reply_is_shown_and_anything_else_is_an_error(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    common = {
        "domain": name,
        "model": DOMAINS[name].default_model,
        "version": None,
        "frozen": False,
        "events_learned": 10,
        "seq": 12,
    }
    reply = _ask(monkeypatch, name, {**common, **REPLIES[name]})
    assert reply.ok and reply.data == {**common, **REPLIES[name]}
    first, *_ = REPLIES[name]
    missing = _ask(monkeypatch, name, {**common, **{k: v for k, v in REPLIES[name].items() if k != first}})
    assert not missing.ok and f"{first}: missing" in (missing.error or "")
    mistyped = _ask(monkeypatch, name, {**common, **REPLIES[name], "events_learned": "10"})
    assert not mistyped.ok and "events_learned" in (mistyped.error or "")
