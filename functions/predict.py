"""predict-one: fresh predictions from the live models, without reloading a model blob per request.

Takes `com.coelho.realtime.<domain>.prediction.requested` CloudEvents (POST /) or the same JSON in a plain
POST /predict/<domain>, and answers with a `com.coelho.realtime.<domain>.prediction` CloudEvent (or its data
as JSON): tfd fraud_probability, is_fraud, risk_level; eta eta_seconds, eta_minutes; ecci cluster and
cluster_description; always domain, model, version (last registered MLflow version, None before the first
checkpoint), events_learned and seq (the log position the model reflects).

Freshness: each process keeps every model in memory and a `LogFollower` thread tails the domains' event logs
in Redis (XREAD, blocking ~100 ms), applying new entries as they are appended (functions/model_state/replica.py).
A process that has lost Redis for more than STALE_AFTER_S answers 503: its predictions would be stale.

Speed (docs/adr/0072-predict-one-latency.md): a binary-mode `prediction.requested` CloudEvent with the usual
headers is answered by a WSGI fast path (`FastPredict`) in front of Flask that skips Flask's request context,
the SDK's generic CloudEvent decode/encode and header re-wrapping; anything else (structured mode, odd headers,
any error) goes to the Flask app unchanged, so every status and error body stays the middleware's.
COELHO_PREDICT_FAST=0 turns the fast path off.
Run: `python -m functions.predict`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import _encode_header_value
from flask import Flask, Response, request

from eventing.domain import Domain
from eventing.domains import DOMAINS, get_domain
from functions.middleware.app import (
    LATENCY,
    REQUESTS,
    DependencyUnavailable,
    DirectPath,
    StartResponse,
    UnsupportedEvent,
    WSGIApp,
    create_app,
    event_data,
    json_endpoint,
    reply,
    serve,
)
from functions.model_state.follower import LogFollower
from functions.model_state.keys import connect
from functions.model_state.replica import ModelReplica, replicas_for

log = logging.getLogger("coelho.functions.predict")

ACCEPTED = sorted(d.type("prediction.requested") for d in DOMAINS.values())
STALE_AFTER_S = float(os.environ.get("COELHO_STALE_AFTER_S", "5"))
VERSION_REFRESH_S = 2.0


def risk_level(probability: float) -> str:
    """low < 0.3 <= medium < 0.7 <= high.

    >>> [risk_level(p) for p in (0.1, 0.3, 0.69, 0.7)]
    ['low', 'medium', 'medium', 'high']
    """
    return "low" if probability < 0.3 else "medium" if probability < 0.7 else "high"


class Predictor:
    def __init__(self, client: Any) -> None:
        self.redis = client
        self.replicas = replicas_for(client, "follower")
        self.follower = LogFollower(client, [r for rs in self.replicas.values() for r in rs])
        self._versions: dict[tuple[str, str], tuple[float, int | None]] = {}
        self._version_lock = threading.Lock()
        self.loaded = False

    def load(self) -> None:
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.load_snapshot()
                replica.catch_up()
        self.loaded = True
        if not self.follower.is_alive():
            self.follower.start()

    def ready(self) -> None:
        self.redis.ping()
        if not self.loaded:
            self.load()
        self.check_fresh()

    def check_fresh(self) -> None:
        if self.follower.error and self._oldest_sync() > STALE_AFTER_S:
            raise DependencyUnavailable(f"model state not fresh: {self.follower.error}")

    def _oldest_sync(self) -> float:
        now = time.monotonic()
        return max((now - r.synced_at for rs in self.replicas.values() for r in rs), default=0.0)

    def replica(self, domain: Domain, model: str | None) -> ModelReplica:
        replicas = self.replicas[domain.name]
        if model is None:
            return replicas[0]
        for replica in replicas:
            if replica.model_name == model:
                return replica
        raise UnsupportedEvent(f"model {model!r} is not served for {domain.name}: {', '.join(r.model_name for r in replicas)}")

    def version(self, replica: ModelReplica) -> int | None:
        """The last registered MLflow version of the model (refreshed every few seconds)."""
        cache_key = (replica.domain.name, replica.model_name)
        now = time.monotonic()
        cached = self._versions.get(cache_key)
        if cached and now - cached[0] < VERSION_REFRESH_S:
            return cached[1]
        raw = self.redis.get(replica.mkey("checkpoint"))
        version = json.loads(raw).get("version") if raw else None
        with self._version_lock:
            self._versions[cache_key] = (now, version)
        return version

    def predict(self, domain: Domain, payload: Any, model: str | None = None) -> dict[str, Any]:
        if not self.loaded:
            self.load()
        self.check_fresh()
        clean = domain.validate(payload, purpose="prediction")
        replica = self.replica(domain, model)
        x = domain.features(clean)
        version = self.version(replica)  # a Redis GET every few seconds: never under the replica lock
        with replica.lock:
            raw = replica.state.predict_one(x)
            state = replica.state
            out: dict[str, Any] = {
                "domain": domain.name, "model": state.model_name, "version": version,
                "events_learned": state.events_learned, "seq": state.seq,
            }
            if domain.task == "clustering":
                out["cluster"] = raw
                out["cluster_description"] = state.describe_cluster(raw)
        if domain.id_field in clean:
            out[domain.id_field] = clean[domain.id_field]
        if domain.task == "classification":
            out.update(fraud_probability=raw, is_fraud=raw >= 0.5, risk_level=risk_level(raw))
        elif domain.task == "regression":
            out.update(eta_seconds=raw, eta_minutes=raw / 60)
        return out

    def handle(self, event: BaseCloudEvent) -> BaseCloudEvent:
        domain = get_domain(event.get_type().split(".")[3])
        model = event.get_extension("model")
        payload = event_data(event)
        data = self.predict(domain, payload, str(model) if model else None)
        partitionkey = None
        if isinstance(payload, dict):
            partitionkey = payload.get(domain.key_field)
        return reply(event, domain.type("prediction"), domain.source("functions/predict"), data,
                     domain=domain.name, partitionkey=partitionkey)


# Binary-mode request headers the fast path understands (WSGI names); any other ce-* header goes to Flask.
_CE_KNOWN = frozenset({"HTTP_CE_SPECVERSION", "HTTP_CE_ID", "HTTP_CE_SOURCE", "HTTP_CE_TYPE", "HTTP_CE_DOMAIN",
                       "HTTP_CE_PARTITIONKEY", "HTTP_CE_MODEL", "HTTP_CE_TRACEPARENT", "HTTP_CE_TRACESTATE"})


class FastPredict(DirectPath):
    """WSGI fast path for the common requests: a binary-mode `prediction.requested` CloudEvent with JSON data,
    and the plain JSON POST /predict/<domain>.

    Answers exactly what the Flask route would (same headers in the same order, same body, same metrics) at
    about half the CPU; profiled under 16 clients, Flask's request context/response objects and the SDK's
    generic decode/encode (header dicts, percent-coding every attribute, event validation) cost more than
    validation and the River prediction together. Anything it does not recognise, and every error, is handed
    to the Flask app with the body restored, so failure statuses and bodies are the middleware's.
    """

    known_ce = _CE_KNOWN

    def __init__(self, app: WSGIApp, predictor: Predictor) -> None:
        super().__init__(app)
        self.predictor = predictor
        self.domains = {d.type("prediction.requested"): d for d in DOMAINS.values()}
        # constant per domain: reply type and source, header-encoded once
        self.reply_attrs = {
            t: (_encode_header_value(d.type("prediction")), _encode_header_value(d.source("functions/predict")))
            for t, d in self.domains.items()
        }
        self.requests = {t: REQUESTS.labels("predict", t, "200") for t in self.domains}
        self.latency = {t: LATENCY.labels("predict", t) for t in self.domains}
        # the plain-JSON route POST /predict/<domain> (json_endpoint's metric labels)
        self.plain = {f"/predict/{name}": d for name, d in DOMAINS.items()}
        self.plain_requests = REQUESTS.labels("predict", "json", "200")
        self.plain_latency = LATENCY.labels("predict", "json")

    def plain_json(self, domain: Domain, environ: dict[str, Any], start_response: StartResponse,
                   started: float) -> Iterable[bytes]:
        """POST /predict/<domain> with a JSON object and no query string; anything else goes to Flask."""
        content_type = environ.get("CONTENT_TYPE", "")
        if environ.get("QUERY_STRING") or not (content_type == "application/json"
                                               or content_type.startswith("application/json;")):
            return self.app(environ, start_response)
        body = self.body(environ)
        if body is None:
            return self.app(environ, start_response)
        try:
            payload = json.loads(body)
            if payload is None:
                raise ValueError("no JSON object")  # Flask answers this one (400)
            out = json.dumps(self.predictor.predict(domain, payload), default=str).encode("utf-8")
        except Exception:
            return self.to_flask(environ, start_response, body)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
        self.plain_requests.inc()
        self.plain_latency.observe(time.perf_counter() - started)
        return [out]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO")
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        if path != "/":
            if path in self.plain:
                return self.plain_json(self.plain[path], environ, start_response, started)
            return self.app(environ, start_response)
        ce_type = environ.get("HTTP_CE_TYPE", "")
        domain = self.domains.get(ce_type)
        if domain is None or not self.is_plain_binary_json(environ):
            return self.app(environ, start_response)
        body = self.body(environ)
        if body is None:
            return self.app(environ, start_response)
        try:
            payload = json.loads(body) if body.strip() else None
            model = environ.get("HTTP_CE_MODEL")
            data = self.predictor.predict(domain, payload, unquote(model) if model else None)
            reply_type, reply_source = self.reply_attrs[ce_type]
            partitionkey = payload.get(domain.key_field) if isinstance(payload, dict) else None
            headers = self.reply_headers(reply_source, reply_type, domain.name, partitionkey)
            out = json.dumps(data).encode("utf-8")
        except Exception:  # every error path (400, 503, 500) is the middleware's: let Flask redo it
            return self.to_flask(environ, start_response, body)
        headers.append(("Content-Length", str(len(out))))
        start_response("200 OK", headers)
        self.requests[ce_type].inc()
        self.latency[ce_type].observe(time.perf_counter() - started)
        return [out]


def create() -> Flask:
    client = connect()
    predictor = Predictor(client)
    try:
        predictor.load()
    except Exception as exc:
        log.warning("model state not loaded yet: %s", exc)
    app = create_app("predict", predictor.handle, accepts=ACCEPTED, ready=predictor.ready)
    app.config["predictor"] = predictor

    @app.post("/predict/<domain_name>")
    def predict_json(domain_name: str) -> Response:
        def run() -> dict[str, Any]:
            try:
                domain = get_domain(domain_name)
            except ValueError as exc:
                raise UnsupportedEvent(str(exc)) from None
            payload = request.get_json(silent=True)
            if payload is None:
                raise UnsupportedEvent("send the features as a JSON object (Content-Type: application/json)")
            return predictor.predict(domain, payload, request.args.get("model"))

        return json_endpoint("predict", run)

    if os.environ.get("COELHO_PREDICT_FAST", "1") != "0":
        app.wsgi_app = FastPredict(app.wsgi_app, predictor)  # type: ignore[method-assign]
    return app


if __name__ == "__main__":
    serve(create, default_server="granian")  # ADR 0075
