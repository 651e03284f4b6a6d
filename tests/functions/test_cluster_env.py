"""What the cluster's manifests (knative/) expect of the functions: one learn-one per domain (COELHO_DOMAINS),
predict-one on a read-only Redis user, the Broker token on every post to the Broker (COELHO_BROKER_TOKEN_FILE)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests

from eventing.domains import DOMAINS, get_domain
from functions import learn
from functions.middleware import auth
from functions.middleware.events import make_event, post_event
from tests.functions.function_testkit import cloudevent
from tests.functions.streams import events


def post(app: Any, message: Any) -> Any:
    return app.test_client().post("/", data=message.body, headers=dict(message.headers))


# --- learn-one: COELHO_DOMAINS ------------------------------------------------------------------------------------
def test_served_domains_reads_coelho_domains() -> None:
    assert learn.served_domains({}) == list(DOMAINS)
    assert learn.served_domains({"COELHO_DOMAINS": ""}) == list(DOMAINS)
    assert learn.served_domains({"COELHO_DOMAINS": "eta"}) == ["eta"]
    assert learn.served_domains({"COELHO_DOMAINS": "ecci,tfd"}) == ["ecci", "tfd"]
    with pytest.raises(ValueError, match="nope"):
        learn.served_domains({"COELHO_DOMAINS": "tfd,nope"})


def test_a_single_domain_learn_keeps_only_its_models_and_refuses_other_domains(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COELHO_DOMAINS", "tfd")
    app = learn.create()
    learner = app.config["learner"]
    assert list(learner.replicas) == ["tfd"] and list(learner.logs) == ["tfd"]
    tfd, eta = get_domain("tfd"), get_domain("eta")
    ok = post(app, cloudevent(tfd.type("record"), events("tfd", 1, seed=4)[0]))
    assert ok.status_code == 200 and ok.json["domain"] == "tfd"

    other = post(app, cloudevent(eta.type("record"), events("eta", 1, seed=4)[0]))
    assert other.status_code == 400
    assert eta.type("record") not in other.json["accepted_types"] and tfd.type("record") in other.json["accepted_types"]
    kafka = cloudevent(
        "dev.knative.kafka.event",
        events("eta", 1, seed=5)[0],
        ce_id="partition:0/offset:1",
        source=f"/apis/v1/namespaces/coelho/kafkasources/records#{eta.topic}",
    )
    refused = post(app, kafka)
    assert refused.status_code == 400 and "coelho-learn-eta" in refused.json["error"]
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(f"coelho:{eta.name}:seq") and not client.exists(f"coelho:{eta.name}:log")
    assert ok.json["seq"] == 1


# --- predict-one: a read-only Redis user --------------------------------------------------------------------------
@pytest.fixture()
def read_only_url(redis_url: str) -> Iterator[str]:
    """A Redis user that may read everything and write nothing (Redis 6 has no per-key write selectors: the
    cluster's predict user may also write the served answers, which this one may not)."""
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        "reader", enabled=True, passwords=["+reader-password"], keys=["*"], commands=["+@read", "+@connection", "+info"]
    )
    parts = urlsplit(redis_url)
    yield urlunsplit(parts._replace(netloc=f"reader:reader-password@{parts.hostname}:{parts.port}"))
    admin.acl_deluser("reader")


def test_predict_on_an_empty_redis_serves_the_default_model_without_writing(
    redis_url: str, read_only_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import predict

    with pytest.raises(redis.exceptions.NoPermissionError):  # the user really cannot write
        redis.Redis.from_url(read_only_url).sadd("coelho:tfd:live", "x")
    monkeypatch.setenv("REDIS_URL", read_only_url)
    app = predict.create()
    predictor = app.config["predictor"]
    try:
        predictor.refresh_routing()
        tfd = get_domain("tfd")
        response = app.test_client().post("/predict/tfd", json=events("tfd", 1, seed=6)[0])
        assert response.status_code == 200, response.data
        assert response.get_json()["model"] == tfd.default_model
        assert predictor.routing["tfd"].champion == tfd.default_model
        admin = redis.Redis.from_url(redis_url)
        assert not any(admin.exists(f"coelho:{name}:live") for name in DOMAINS)  # nothing seeded
    finally:
        predictor.stop()


# --- the Broker token -----------------------------------------------------------------------------------------------
def test_broker_headers_follow_the_token_file_as_it_rotates(tmp_path: Path) -> None:
    token = tmp_path / "token"
    env = {"COELHO_BROKER_TOKEN_FILE": str(token)}
    assert auth.broker_headers({}) == {}
    token.write_text("first-token\n")
    assert auth.broker_headers(env) == {"Authorization": "Bearer first-token"}
    rotated = tmp_path / "token.new"  # the kubelet swaps in a new file, as here: a rename over the old one
    rotated.write_text("second-token-longer\n")
    os.replace(rotated, token)
    assert auth.broker_headers(env) == {"Authorization": "Bearer second-token-longer"}
    token.write_text("")
    with pytest.raises(auth.BrokerTokenUnreadable, match="empty"):
        auth.broker_headers(env)
    with pytest.raises(auth.BrokerTokenUnreadable):
        auth.broker_headers({"COELHO_BROKER_TOKEN_FILE": str(tmp_path / "missing")})


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).seen.append(dict(self.headers))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def broker() -> Iterator[tuple[str, list[dict[str, str]]]]:
    _Recorder.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/coelho/default", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_post_event_sends_the_broker_token(
    broker: tuple[str, list[dict[str, str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = broker
    event = make_event("com.coelho.realtime.tfd.drift", "/coelho/functions/learn/tfd", {"domain": "tfd"})
    monkeypatch.delenv("COELHO_BROKER_TOKEN_FILE", raising=False)
    post_event(url, event)
    token = tmp_path / "token"
    token.write_text("sa-token")
    monkeypatch.setenv("COELHO_BROKER_TOKEN_FILE", str(token))
    post_event(url, event)
    assert "Authorization" not in seen[0] and seen[1]["Authorization"] == "Bearer sa-token"
    monkeypatch.setenv("COELHO_BROKER_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(requests.RequestException, match="token"):  # the callers' handlers log it, as a failed post
        post_event(url, event)
    assert len(seen) == 2


# --- the assistant: learn-one per domain ------------------------------------------------------------------------
class _PerDomainLearn(BaseHTTPRequestHandler):
    """learn-one of tfd and ecci ready, eta's not; each counts one 4xx request in its metrics."""

    def do_GET(self) -> None:  # noqa: N802
        domain, _, rest = self.path.lstrip("/").partition("/")
        if rest == "metrics":
            from prometheus_client import CollectorRegistry, Counter, generate_latest

            registry = CollectorRegistry()
            counter = Counter("coelho_function_requests", "requests", ["function", "type", "code"], registry=registry)
            counter.labels("learn", domain, "400").inc()
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(503 if domain == "eta" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_assistant_checks_each_domains_learn_one(tmp_path: Path) -> None:
    from coelho.settings import Settings
    from functions.assistant.data import PlatformReader
    from functions.assistant.health import request_errors, service_states

    server = HTTPServer(("127.0.0.1", 0), _PerDomainLearn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "d")
        template = f"http://127.0.0.1:{server.server_port}/{{domain}}"
        reader = PlatformReader(settings, settings.redis_url, environ={"LEARN_URL": template})
        urls = reader.service_urls("learn")
        assert urls == {d: f"http://127.0.0.1:{server.server_port}/{d}" for d in DOMAINS}
        assert service_states(reader)["learn"] == "eta: not ready (503)"
        assert request_errors(reader)["learn"] == {"requests": 3, "4xx": 3, "5xx": 0}  # the sum over the three
        plain = PlatformReader(
            settings, settings.redis_url, environ={"LEARN_URL": f"{template}/".replace("{domain}", "tfd")}
        )
        assert set(plain.service_urls("learn").values()) == {f"http://127.0.0.1:{server.server_port}/tfd"}
        assert service_states(plain)["learn"] == "up" and request_errors(plain)["learn"]["requests"] == 1  # asked once
    finally:
        server.shutdown()
        server.server_close()
