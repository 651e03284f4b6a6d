"""predict-one's WSGI fast path answers exactly what the Flask route answers, and hands every other case to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import streams
from conftest import cloudevent
from flask import Flask
from streams import events

from eventing.domains import DOMAINS
from functions.middleware.app import REQUESTS, DependencyUnavailable


def teach(url: str, n: int = 300) -> None:
    streams.teach(redis.Redis.from_url(url), n, "/t")


@pytest.fixture()
def apps(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, Flask]]:
    """(fast, plain): two predict-one apps on the same taught Redis, with and without the fast path."""
    from functions import predict

    teach(redis_url)
    fast = predict.create()
    monkeypatch.setenv("COELHO_PREDICT_FAST", "0")
    plain = predict.create()
    assert isinstance(fast.wsgi_app, predict.FastPredict)
    assert not isinstance(plain.wsgi_app, predict.FastPredict)
    yield fast, plain
    for app in (fast, plain):
        app.config["predictor"].follower.stop()


def post(app: Flask, ce_type: str, data: Any, **ext: Any) -> Any:
    message = cloudevent(ce_type, data, **ext)
    return app.test_client().post("/", headers=message.headers, data=message.body)


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_fast_path_answers_like_flask(apps: tuple[Flask, Flask], domain_name: str) -> None:
    fast, plain = apps
    domain = DOMAINS[domain_name]
    for event in events(domain_name, 5, seed=7):
        a = post(fast, domain.type("prediction.requested"), event, domain=domain_name)
        b = post(plain, domain.type("prediction.requested"), event, domain=domain_name)
        assert a.status_code == b.status_code == 200
        assert [k for k, _ in a.headers] == [k for k, _ in b.headers]
        volatile = {"ce-id", "ce-time"}
        assert {k: v for k, v in a.headers if k not in volatile} == {k: v for k, v in b.headers if k not in volatile}
        assert a.headers["ce-time"].endswith("Z") and len(a.headers["ce-id"]) == 36
        assert a.headers["ce-id"] != b.headers["ce-id"]
        assert json.loads(a.data) == json.loads(b.data)
        assert a.data == b.data


def test_fast_path_counts_the_request(apps: tuple[Flask, Flask]) -> None:
    fast, _ = apps
    tfd = DOMAINS["tfd"]
    ce_type = tfd.type("prediction.requested")
    counter = REQUESTS.labels("predict", ce_type, "200")
    before = counter._value.get()
    assert post(fast, ce_type, next(iter(events("tfd", 1, seed=3)))).status_code == 200
    assert counter._value.get() == before + 1


def test_fast_path_leaves_errors_and_other_forms_to_flask(apps: tuple[Flask, Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    fast, plain = apps
    tfd = DOMAINS["tfd"]
    ce_type = tfd.type("prediction.requested")
    event = next(iter(events("tfd", 1, seed=3)))
    client = fast.test_client()
    # invalid field: 400 naming it, same body as Flask
    a, b = post(fast, ce_type, {**event, "amount": "lots"}), post(plain, ce_type, {**event, "amount": "lots"})
    assert a.status_code == b.status_code == 400
    assert a.get_json() == b.get_json() and "amount" in a.get_data(as_text=True)
    # a type predict does not take
    a = post(fast, "boson.fn", {"message": "Hello World"})
    assert a.status_code == 400 and ce_type in a.get_json()["accepted_types"]
    # not JSON
    message = cloudevent(ce_type, event)
    a = client.post("/", headers=message.headers, data=b"{not json")
    assert a.status_code == 400
    # structured mode, an unknown extension, an explicit model: served (by Flask or the fast path) all the same
    structured = {"specversion": "1.0", "id": "s1", "source": "/t", "type": ce_type, "datacontenttype": "application/json",
                  "data": event}
    a = client.post("/", data=json.dumps(structured), headers={"content-type": "application/cloudevents+json"})
    assert a.status_code == 200 and "fraud_probability" in a.get_json()
    assert post(fast, ce_type, event, someext="x").status_code == 200
    model = fast.config["predictor"].replicas["tfd"][0].model_name
    a = post(fast, ce_type, event, model=model)
    assert a.status_code == 200 and json.loads(a.data)["model"] == model
    assert post(fast, ce_type, event, model="nope").status_code == 400
    # a dependency down: 503
    def down() -> None:
        raise DependencyUnavailable("model state not fresh: redis: down")

    monkeypatch.setattr(fast.config["predictor"], "check_fresh", down)
    assert post(fast, ce_type, event).status_code == 503


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_plain_json_route_answers_like_flask(apps: tuple[Flask, Flask], domain_name: str) -> None:
    fast, plain = apps
    for event in events(domain_name, 3, seed=5):
        a = fast.test_client().post(f"/predict/{domain_name}", json=event)
        b = plain.test_client().post(f"/predict/{domain_name}", json=event)
        assert a.status_code == b.status_code == 200
        assert list(a.headers) == list(b.headers)
        assert a.data == b.data


def test_plain_json_route_leaves_errors_and_options_to_flask(apps: tuple[Flask, Flask]) -> None:
    fast, plain = apps
    event = next(iter(events("tfd", 1, seed=3)))
    model = fast.config["predictor"].replicas["tfd"][0].model_name
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/predict/tfd", {"json": {**event, "amount": "lots"}}),  # 400 naming the field
        ("/predict/tfd", {"data": "{not json", "content_type": "application/json"}),
        ("/predict/tfd", {"data": "null", "content_type": "application/json"}),
        ("/predict/tfd", {"data": json.dumps(event), "content_type": "text/plain"}),
        ("/predict/nope", {"json": event}),
        (f"/predict/tfd?model={model}", {"json": event}),
        ("/predict/tfd?model=nope", {"json": event}),
    ]
    for path, kwargs in cases:
        a = fast.test_client().post(path, **kwargs)
        b = plain.test_client().post(path, **kwargs)
        assert (a.status_code, a.get_json()) == (b.status_code, b.get_json()), path
    assert fast.test_client().get("/predict/tfd").status_code == 405
