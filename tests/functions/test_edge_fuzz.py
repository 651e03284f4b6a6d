"""Property-based fuzzing of every function's HTTP API from its own OpenAPI description (GET /openapi.json):
Schemathesis generates valid and invalid requests for every operation (bodies, query strings, headers) and the
property is that no input gets a 5xx. A 503 counts only where the test keeps a dependency down on purpose (the
lake's S3 store, checkpoint's MLflow), and then it must say "retry". The embedded router's Broker ingress is fuzzed
the same way.

The apps run in process through their WSGI callables; those that need Redis use the private redis-server (marked
`process`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import deltalake
import pyarrow as pa
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from functions.lake.catalog import LakeCatalog
from functions.lake.sql import SqlEngine
from functions.lake.sql_limits import Limits
from functions.middleware.auth import TOKEN_ENV
from functions.middleware.contract import DependencyUnavailable

# Examples per operation and generation mode: few in the test lanes, more by hand (COELHO_FUZZ_EXAMPLES=500).
FUZZ = settings(
    max_examples=int(os.environ.get("COELHO_FUZZ_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def fuzz(
    schema: Any,
    allow_retry: bool = False,
    methods: tuple[str, ...] = ("GET", "POST"),
    headers: dict[str, str] | None = None,
) -> int:
    """Run the property over every operation of `schema`, with valid and invalid generated requests: the number
    of operations fuzzed."""
    from schemathesis import GenerationMode

    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() not in methods:
            continue
        count += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                check(case, allow_retry, headers)

            try:
                run()
            except Unsatisfiable:  # nothing to get wrong (no body, no parameter): no negative case
                assert mode == GenerationMode.NEGATIVE
    return count


def check(case: Any, allow_retry: bool = False, headers: dict[str, str] | None = None) -> None:
    """The property: no 5xx (or, with `allow_retry`, only a 503 that says a dependency is down)."""
    response = case.call(headers=headers)
    if allow_retry and response.status_code == 503:
        assert "retry" in response.text.lower() or "not ready" in response.text, response.text
        return
    case.validate_response(response, checks=[not_a_server_error])


# --- SQL (in process, over a local lake) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sql_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    from functions.sql import create

    root = tmp_path_factory.mktemp("lake")
    deltalake.write_deltalake(str(root / "trips"), pa.table({"trip_id": ["a", "b"], "eta_seconds": [3.0, 4.0]}))
    return create(SqlEngine(LakeCatalog(root=str(root)), Limits(timeout_s=2.0, rows=100, max_rows=500)))


@pytest.fixture(scope="module")
def sql_schema(sql_app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", sql_app)


def test_sql_never_answers_5xx(sql_schema: Any) -> None:
    assert fuzz(sql_schema) == 6


# --- the lake (in process, its S3 store down: a valid event is a 503 to retry; what is fuzzed is the way in) -----
@pytest.fixture(scope="module")
def lake_schema() -> Iterator[Any]:
    from functions.lake import service
    from functions.lake.service import Lake
    from functions.lake.writer import LakeConfig
    from functions.middleware.app import create_app

    environ = {"S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        lake = Lake(LakeConfig.from_env())

        def store_down(row: Any) -> None:  # what a writer does while S3 is away, without the S3 client's retries
            raise DependencyUnavailable("the lake's S3 store does not answer")

        for writer in lake.writers.values():
            writer.write = store_down  # type: ignore[method-assign]
        patch.setattr(service, "maintain", lambda store, hours: store_down(None))
        from functions.lake.service import ACCEPTED

        yield schemathesis.openapi.from_wsgi("/openapi.json", create_app("lake", lake.handle, accepts=ACCEPTED))


def test_the_lake_never_answers_5xx_to_input(lake_schema: Any) -> None:
    assert fuzz(lake_schema, allow_retry=True, methods=("POST",)) == 1


# --- predict-one, learn-one, the assistant (a private Redis) ------------------------------------------------------
@pytest.fixture()
def predict_schema(redis_url: str) -> Iterator[Any]:
    import redis

    from functions import predict
    from tests.functions.streams import teach

    teach(redis.Redis.from_url(redis_url), 200, "/fuzz")
    app = predict.create()
    yield schemathesis.openapi.from_wsgi("/openapi.json", app)
    app.config["predictor"].stop()


def test_predict_one_never_answers_5xx(predict_schema: Any) -> None:
    assert fuzz(predict_schema) == 7


@pytest.fixture()
def learn_schema(redis_url: str) -> Any:
    from functions import learn

    return schemathesis.openapi.from_wsgi("/openapi.json", learn.create())


def test_learn_one_never_answers_5xx(learn_schema: Any) -> None:
    assert fuzz(learn_schema) == 4


@pytest.fixture()
def chat_schema(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from functions.chat import ChatConfig, create_chat_app
    from tests.chat.anthropic_standin import AnthropicStandIn, text

    monkeypatch.setenv(TOKEN_ENV, "fuzz-token-0123456789")
    with AnthropicStandIn() as api:
        api.default = [text("An answer.")]
        app = create_chat_app(ChatConfig(api_key="test", base_url=api.url, api_max_retries=0))
        yield schemathesis.openapi.from_wsgi("/openapi.json", app)


def test_the_assistant_never_answers_5xx(chat_schema: Any) -> None:
    """With the token switched on, and sent."""
    assert fuzz(chat_schema, headers={"Authorization": "Bearer fuzz-token-0123456789"}) == 7


@pytest.fixture()
def checkpoint_schema(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """checkpoint over a log of 200 events per domain, its MLflow down (nothing listens at the address, and no
    retries): a valid request is a 503 to retry; what is fuzzed is the way in."""
    import redis

    from functions import checkpoint
    from tests.functions.streams import teach

    teach(redis.Redis.from_url(redis_url), 200, "/fuzz")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return schemathesis.openapi.from_wsgi("/openapi.json", checkpoint.create())


def test_checkpoint_never_answers_5xx_to_input(checkpoint_schema: Any) -> None:
    assert fuzz(checkpoint_schema, allow_retry=True) == 4


def test_every_function_serves_its_description(sql_app: Flask) -> None:
    spec = json.loads(sql_app.test_client().get("/openapi.json").data)
    assert {"/sql", "/tables", "/", "/health/readiness", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/metrics"]["get"]["security"] == []


def test_predict_ones_description_is_the_domains_declaration() -> None:
    from eventing.domains import DOMAINS
    from functions.middleware.openapi import FUNCTION_PATHS

    paths = FUNCTION_PATHS["predict"]()
    for name, domain in DOMAINS.items():
        body = paths[f"/predict/{name}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["properties"]) == {f.name for f in domain.fields}
        assert domain.target not in body.get("required", [])
        reply = paths[f"/predict/{name}"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(reply["properties"]) == {f.name for f in domain.reply_fields()}


# --- the embedded router's Broker ingress (in process, on a thread; Kafka replaced by a list) ---------------------
@pytest.fixture()
def broker_ingress() -> Iterator[tuple[str, list[Any]]]:
    from eventing.router.ingress import BrokerIngress
    from eventing.router.metrics import RouterMetrics

    class Taken:
        def __init__(self) -> None:
            self.events: list[Any] = []

        def send_and_wait(self, event: Any) -> None:
            self.events.append(event)

    taken = Taken()
    brokers: dict[tuple[str, str], Any] = {("coelho", "default"): taken}
    server = BrokerIngress("127.0.0.1", 0, brokers, "coelho", lambda: True, RouterMetrics())
    server.start()
    yield f"http://127.0.0.1:{server.port}", taken.events
    server.stop()


def test_the_broker_ingress_never_answers_5xx(broker_ingress: tuple[str, list[Any]]) -> None:
    """The ingress is another area's code: this finds what it answers, it does not change it."""
    url, taken = broker_ingress
    from eventing.domains import DOMAINS
    from functions.middleware.openapi import describe

    types = sorted(d.type(kind) for d in DOMAINS.values() for kind in ("record", "prediction.requested"))
    spec = describe("broker-ingress", accepted=types, protected=False)
    spec["paths"] = {path: spec["paths"][path] for path in ("/", "/health/liveness", "/health/readiness")}
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=url)
    assert fuzz(schema) == 3
    assert taken  # valid events reached "Kafka"
