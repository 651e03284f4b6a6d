"""Bounded, clean input at every function: the body limit (413 before the body is read), a bad Content-Length
(400), and the inputs that once answered 500 (integers too large for a float, dates out of range, deeply nested
JSON, text/plain bodies) answer 400, with error bodies that name the problem but no internal address.

The middleware's checks are tested on a small function (every function is one `create_app`); the domain inputs on
the real predict-one, learn-one, lake, SQL and chat apps, in process."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from eventing.domains import DOMAINS
from functions.middleware.app import create_app, event_data, reply
from functions.middleware.contract import DependencyUnavailable, error_response
from functions.middleware.limits import DEFAULT_MAX_BODY_BYTES, max_body_bytes
from tests.functions.streams import events

CE = {"ce-id": "1", "ce-source": "/t", "ce-specversion": "1.0", "ce-type": "com.example.order"}


class Unreadable(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


def small_app(max_body: int = 1000) -> Flask:
    seen: list[Any] = []

    def handler(event: Any) -> Any:
        seen.append(event_data(event))
        return reply(event, "com.example.done", "/t", {"ok": True})

    app = create_app(
        "edge", handler, accepts=["com.example.order"], json_routes={"/echo": lambda r, p, q: p}, max_body=max_body
    )

    @app.post("/flask-route")
    def flask_route() -> str:  # a route of the function's own (the assistant's /chat is one)
        return "reached"

    app.config["seen"] = seen
    return app


@pytest.mark.parametrize("path", ["/", "/echo", "/flask-route"])
def test_a_body_past_the_limit_is_413_before_it_is_read(path: str) -> None:
    app = small_app(max_body=1000)
    response = app.test_client().post(
        path,
        headers={**CE, "content-type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": "1001", "wsgi.input": Unreadable()},
    )
    assert response.status_code == 413
    assert response.json == {"error": "request body too large: 1001 bytes, the limit is 1000 bytes"}
    assert app.config["seen"] == []
    within = app.test_client().post(
        path, data=json.dumps({"a": "x" * 900}), headers={**CE, "content-type": "application/json"}
    )
    assert within.status_code == 200


def test_a_chunked_body_is_read_up_to_the_limit_only() -> None:
    app = small_app(max_body=1000)
    big = io.BytesIO(b'{"a": "' + b"x" * 5000 + b'"}')
    response = app.test_client().post(
        "/",
        headers={**CE, "content-type": "application/json", "transfer-encoding": "chunked"},
        environ_overrides={"wsgi.input": big, "wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert response.status_code == 413 and big.tell() == 1001
    small = io.BytesIO(b'{"a": 1}')
    response = app.test_client().post(
        "/",
        headers={**CE, "content-type": "application/json", "transfer-encoding": "chunked"},
        environ_overrides={"wsgi.input": small, "wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert response.status_code == 200 and app.config["seen"] == [{"a": 1}]


@pytest.mark.parametrize("length", ["-5", "abc", "1e3", "１２", " 12"])
@pytest.mark.parametrize("path", ["/", "/echo", "/flask-route"])
def test_a_content_length_that_is_not_a_count_is_400(path: str, length: str) -> None:
    response = (
        small_app()
        .test_client()
        .post(
            path,
            data=b"{}",
            headers={**CE, "content-type": "application/json"},
            environ_overrides={"CONTENT_LENGTH": length},
        )
    )
    assert response.status_code == 400
    assert response.json == {"error": "Content-Length must be a non-negative integer"}


def test_the_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_body_bytes({}) == DEFAULT_MAX_BODY_BYTES
    monkeypatch.setenv("COELHO_MAX_BODY_BYTES", "50")
    app = create_app("edge", lambda e: None, accepts=["com.example.order"])
    response = app.test_client().post(
        "/", data=json.dumps({"a": "x" * 60}), headers={**CE, "content-type": "application/json"}
    )
    assert response.status_code == 413
    with pytest.raises(ValueError, match="positive integer"):
        max_body_bytes({"COELHO_MAX_BODY_BYTES": "-1"})


def test_probes_stay_open_and_bounded() -> None:
    client = small_app().test_client()
    assert client.get("/health/liveness").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/health/liveness", environ_overrides={"CONTENT_LENGTH": "99999"}).status_code == 413


@pytest.mark.parametrize("path", ["/", "/echo"])
def test_deeply_nested_json_and_text_bodies_are_400(path: str) -> None:
    client = small_app(max_body=DEFAULT_MAX_BODY_BYTES).test_client()
    nested = "[" * 50_000 + "]" * 50_000
    response = client.post(path, data=nested, headers={**CE, "content-type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json["error"]
    response = client.post(path, data="hello", headers={**CE, "content-type": "text/plain"})
    assert response.status_code == 400


def test_error_bodies_hold_no_internal_address_nor_trace() -> None:
    status, body = error_response("predict", DependencyUnavailable("redis at redis://:pw@10.1.2.3:6379/0 is down"))
    assert status == 503 and "10.1.2.3" not in body["error"] and "6379" not in body["error"]
    status, body = error_response("predict", ConnectionError("Error 111 connecting to redis.coelho.svc:6379."))
    assert status == 503 and "redis.coelho.svc" not in body["error"]
    status, body = error_response("predict", KeyError("no route to http://10.9.8.7:8080/x"))
    assert status == 500 and "10.9.8.7" not in body["error"] and "KeyError" in body["error"]
    assert "ref " in body["error"] and "Traceback" not in body["error"]

    def broken(event: Any) -> Any:
        raise RuntimeError("cannot reach http://mlflow.internal:5000/api")

    app = create_app("edge", broken, accepts=["com.example.order"])
    response = app.test_client().post("/", json={}, headers=CE)
    assert response.status_code == 500 and "mlflow.internal" not in response.text and "Traceback" not in response.text

    def down() -> None:
        raise DependencyUnavailable("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    app = create_app("edge", broken, accepts=["com.example.order"], ready=down)
    response = app.test_client().get("/health/readiness")
    assert response.status_code == 503 and "6379" not in response.text and "Connection refused" in response.text


# --- the domains' inputs, on the real functions ---------------------------------------------------------------
def bad_payloads(domain_name: str) -> Iterator[tuple[str, Any, str]]:
    """(case, payload, the field the 400 names) of inputs that once answered 500, or are too long."""
    domain = DOMAINS[domain_name]
    good = events(domain_name, 1)[0]
    number = next(p for p, f in domain.leaf_fields() if f.type in ("number", "integer") and "." not in p)
    timestamp = next(p for p, f in domain.leaf_fields() if f.type == "timestamp")
    yield "integer too large for a float", {**good, number: 10**400}, number
    yield "date past 9999 in UTC", {**good, timestamp: "9999-12-31T23:30:00-05:00"}, timestamp
    yield "date before year 1 in UTC", {**good, timestamp: "0001-01-01T00:10:00+05:00"}, timestamp
    yield "an id too long", {**good, domain.key_field: "k" * 10_000}, domain.key_field


@pytest.fixture()
def predict_app(redis_url: str) -> Iterator[Flask]:
    from functions import predict

    app = predict.create()
    yield app
    app.config["predictor"].stop()


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_predict_one_answers_400_to_what_once_was_500(predict_app: Flask, domain_name: str) -> None:
    domain = DOMAINS[domain_name]
    client = predict_app.test_client()
    for case, payload, field in bad_payloads(domain_name):
        for response in (
            client.post(f"/predict/{domain_name}", json=payload),
            client.post("/", json=payload, headers={**CE, "ce-type": domain.type("prediction.requested")}),
        ):
            assert response.status_code == 400, (case, response.json)
            assert field in response.json["fields"], (case, response.json)
    nested = '{"a": ' + "[" * 20_000 + "]" * 20_000 + "}"
    response = client.post(f"/predict/{domain_name}", data=nested, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json["error"]
    response = client.post(f"/predict/{domain_name}", data="amount=3", content_type="text/plain")
    assert response.status_code == 400
    headers = {**CE, "ce-type": domain.type("prediction.requested"), "ce-time": "9999-12-31T23:59:59-05:00"}
    response = client.post("/", json=events(domain_name, 1)[0], headers=headers)
    assert response.status_code == 400 and "out of range" in response.json["error"]


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_learn_one_answers_400_and_learns_nothing_bad(redis_url: str, domain_name: str) -> None:
    import redis

    from functions import learn

    domain = DOMAINS[domain_name]
    client = learn.create().test_client()
    for case, payload, _field in bad_payloads(domain_name):
        headers = {**CE, "ce-id": str(uuid.uuid4()), "ce-type": domain.type("record")}
        response = client.post("/", json=payload, headers=headers)
        assert response.status_code == 400, (case, response.json)
    assert int(redis.Redis.from_url(redis_url).get(f"coelho:{domain_name}:seq") or 0) == 0


def test_the_lake_answers_400(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.lake.service import Lake

    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "test")
    from functions.lake.writer import LakeConfig

    lake = Lake(LakeConfig.from_env())
    app = create_app("lake", lake.handle, accepts=lambda t: True)
    client = app.test_client()
    for domain_name, domain in DOMAINS.items():
        for case, payload, field in bad_payloads(domain_name):
            headers = {**CE, "ce-id": str(uuid.uuid4()), "ce-type": domain.type("record")}
            response = client.post("/", json=payload, headers=headers)
            assert response.status_code == 400 and field in response.text, (case, response.json)


@pytest.mark.parametrize("data", [{"domains": 5}, {"domains": {"tfd": 1}}, {"domains": [[1]]}, {"domain": 3.5}])
def test_checkpoint_requests_of_the_wrong_shape_are_400(redis_url: str, data: Any) -> None:
    from functions import checkpoint

    client = checkpoint.create().test_client()
    headers = {**CE, "ce-type": "com.coelho.realtime.checkpoint.requested"}
    response = client.post("/", json=data, headers=headers)
    assert response.status_code == 400, response.json


@pytest.mark.parametrize("data", [{"tables": 5}, {"tables": {"trips": 1}}, {"tables": [[1]]}, {"table": 3}])
def test_lake_maintenance_requests_of_the_wrong_shape_are_400(monkeypatch: pytest.MonkeyPatch, data: Any) -> None:
    from eventing.cloudevent_types import LAKE_MAINTENANCE_REQUESTED
    from functions.lake.service import ACCEPTED, Lake
    from functions.lake.writer import LakeConfig

    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    lake = Lake(LakeConfig.from_env())
    client = create_app("lake", lake.handle, accepts=ACCEPTED).test_client()
    response = client.post("/", json=data, headers={**CE, "ce-type": LAKE_MAINTENANCE_REQUESTED})
    assert response.status_code == 400, response.json
