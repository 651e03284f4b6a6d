"""predict-one through the middleware's one request path: binary and structured mode and the plain-JSON route give
the same prediction; errors follow the failure contract; no request of a CloudEvent or prediction reaches Flask."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from prometheus_client import REGISTRY

from eventing.domains import DOMAINS
from functions.middleware.app import REQUESTS, DependencyUnavailable  # noqa: F401  (REQUESTS: registers the metrics)
from tests.functions import streams
from tests.functions.function_testkit import cloudevent
from tests.functions.streams import events


def teach(url: str, n: int = 300) -> None:
    streams.teach(redis.Redis.from_url(url), n, "/t")


@pytest.fixture()
def app(redis_url: str) -> Iterator[Flask]:
    """A predict-one app on a taught Redis; Flask behind it counts what reaches it."""
    from functions import predict

    teach(redis_url)
    app = predict.create()
    calls = app.config["flask_calls"] = [0]
    function_app = app.config["function_app"]
    inner = function_app.flask_app

    def counted(environ: Any, start_response: Any) -> Any:
        calls[0] += 1
        return inner(environ, start_response)

    function_app.flask_app = counted
    yield app
    app.config["predictor"].follower.stop()


def post(app: Flask, ce_type: str, data: Any, **ext: Any) -> Any:
    message = cloudevent(ce_type, data, **ext)
    return app.test_client().post("/", headers=message.headers, data=message.body)


def structured(app: Flask, ce_type: str, data: Any) -> Any:
    envelope = {
        "specversion": "1.0",
        "id": "s1",
        "source": "/t",
        "type": ce_type,
        "datacontenttype": "application/json",
        "data": data,
    }
    return app.test_client().post(
        "/", data=json.dumps(envelope), headers={"content-type": "application/cloudevents+json"}
    )


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_binary_structured_and_plain_json_predict_alike(app: Flask, domain_name: str) -> None:
    domain = DOMAINS[domain_name]
    ce_type = domain.type("prediction.requested")
    for event in events(domain_name, 5, seed=7):
        a = post(app, ce_type, event, domain=domain_name)
        b = structured(app, ce_type, event)
        c = app.test_client().post(f"/predict/{domain_name}", json=event)
        assert a.status_code == b.status_code == c.status_code == 200
        assert a.headers["ce-type"] == b.headers["ce-type"] == domain.type("prediction")
        assert a.headers["ce-time"].endswith("Z") and len(a.headers["ce-id"]) == 36
        assert a.headers["ce-id"] != b.headers["ce-id"]
        assert a.headers["ce-partitionkey"] == str(event[domain.key_field])
        assert json.loads(a.data) == json.loads(b.data) == c.get_json()
    assert app.config["flask_calls"] == [0]


def test_the_request_is_counted(app: Flask) -> None:
    ce_type = DOMAINS["tfd"].type("prediction.requested")
    labels = {"function": "predict", "type": ce_type, "code": "200"}
    before = REGISTRY.get_sample_value("coelho_function_requests_total", labels) or 0.0
    assert post(app, ce_type, next(iter(events("tfd", 1, seed=3)))).status_code == 200
    assert REGISTRY.get_sample_value("coelho_function_requests_total", labels) == before + 1


def test_errors_and_other_forms_get_the_contract(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    tfd = DOMAINS["tfd"]
    ce_type = tfd.type("prediction.requested")
    event = next(iter(events("tfd", 1, seed=3)))
    client = app.test_client()
    a = post(app, ce_type, {**event, "amount": "lots"})  # invalid field: 400 naming it
    assert a.status_code == 400 and "amount" in a.get_json()["fields"]
    a = post(app, "boson.fn", {"message": "Hello World"})  # a type predict does not take
    assert a.status_code == 400 and ce_type in a.get_json()["accepted_types"]
    message = cloudevent(ce_type, event)
    assert client.post("/", headers=message.headers, data=b"{not json").status_code == 400
    assert client.post("/", data=b"{}", headers={"content-type": "application/json"}).status_code == 400  # no CE
    assert (
        post(app, ce_type, event, someext="x").status_code == 200
    )  # an extension the direct decoder leaves to the SDK
    model = app.config["predictor"].replicas["tfd"][0].model_name
    a = post(app, ce_type, event, model=model)
    assert a.status_code == 200 and json.loads(a.data)["model"] == model
    assert post(app, ce_type, event, model="nope").status_code == 400
    assert app.config["flask_calls"] == [0]

    def down() -> None:
        raise DependencyUnavailable("model state not fresh: redis: down")

    monkeypatch.setattr(app.config["predictor"], "check_fresh", down)
    assert post(app, ce_type, event).status_code == 503


def test_plain_json_route_errors_and_options(app: Flask) -> None:
    event = next(iter(events("tfd", 1, seed=3)))
    model = app.config["predictor"].replicas["tfd"][0].model_name
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("/predict/tfd", {"json": {**event, "amount": "lots"}}, 400),  # naming the field
        ("/predict/tfd", {"data": "{not json", "content_type": "application/json"}, 400),
        ("/predict/tfd", {"data": "null", "content_type": "application/json"}, 400),
        ("/predict/tfd", {"data": json.dumps(event), "content_type": "text/plain"}, 400),
        ("/predict/nope", {"json": event}, 400),
        (f"/predict/tfd?model={model}", {"json": event}, 200),
        ("/predict/tfd?model=nope", {"json": event}, 400),
    ]
    for path, kwargs, status in cases:
        response = app.test_client().post(path, **kwargs)
        assert response.status_code == status, (path, response.get_json())
        assert response.headers["content-type"] == "application/json"
    assert "amount" in app.test_client().post("/predict/tfd", json={**event, "amount": "lots"}).get_json()["fields"]
    assert app.test_client().get("/predict/tfd").status_code == 405
