"""The function middleware: one request path from HTTP to a CloudEvent handler and back, with the failure
contract, probes and metrics, like Knative's func-python middleware.

A function supplies a handler `(event) -> reply event | None` and the CloudEvent types it accepts; optionally
plain-JSON routes (`json_routes`, e.g. predict-one's POST /predict/<domain>) and a readiness check. The middleware:

- POST / decodes a binary or structured CloudEvent (`functions.middleware.events.decode`), checks its type, calls
  the handler and answers with a binary-mode CloudEvent (200) or nothing (204). `POST /?reply=none` does the same
  work and answers 204: a Trigger whose subscriber URI says so sends no reply back into the Broker (the learn
  Triggers). The handler sees it as `event.wants_reply`.
- GET /health/liveness, GET /health/readiness (runs the `ready` check: 503 with the reason while it raises),
  GET /metrics (Prometheus), GET /openapi.json (the function's OpenAPI description, functions/middleware/openapi.py).
- Failure contract (`functions.middleware.contract`): not a CloudEvent, a type the function does not take,
  invalid data -> 400 with the reason; a dependency down -> 503 (retried); anything else -> 500.
- Who may call (`functions.middleware.auth`): when COELHO_API_TOKEN is set, predict-one, chat and sql answer 401
  to any request without `Authorization: Bearer <token>`, before anything else; probes, /metrics and /openapi.json
  stay open.
- Bounded input (`functions.middleware.limits`), before anything else and for every route, Flask's included: a body
  larger than the function's limit (COELHO_MAX_BODY_BYTES) -> 413, decided from Content-Length without reading the
  body; a Content-Length that is not a non-negative integer -> 400; JSON nested too deeply -> 400.

Every request is served by one WSGI callable in front of Flask, without Flask's request context: measured on
predict-one, Flask's request and response objects and the SDK's generic decode/encode cost more than validation and
the River prediction together (docs/adr/0072-predict-one-latency.md). Other routes a function adds with
`@app.get`/`@app.post` (the assistant's /chat) are Flask's as usual.

    >>> def handler(event):
    ...     return reply(event, "com.example.priced", "/pricing", {"ok": True})
    >>> app = create_app("pricing", handler, accepts=["com.example.order"])
    >>> ce = {"ce-id": "1", "ce-source": "/shop", "ce-specversion": "1.0", "ce-type": "com.example.order"}
    >>> response = app.test_client().post("/", json={"amount": 3}, headers=ce)
    >>> response.status_code, response.headers["ce-type"], response.json
    (200, 'com.example.priced', {'ok': True})
    >>> app.test_client().post("/?reply=none", json={"amount": 3}, headers=ce).status_code
    204
    >>> app.test_client().post("/", json={}, headers={**ce, "ce-type": "boson.fn"}).json["accepted_types"]
    ['com.example.order']
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from flask import Flask
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from functions.middleware.auth import PROTECTED, TokenGate
from functions.middleware.contract import DependencyUnavailable, error_response
from functions.middleware.events import (
    Event,
    UnsupportedEvent,
    decode,
    event_data,
    make_event,
    reply,
    reply_unwanted,
    reseed_ids,
    to_http,
)
from functions.middleware.limits import check_body, loads_json, max_body_bytes, scrub
from functions.middleware.openapi import FUNCTION_EVENTS, FUNCTION_PATHS, describe
from functions.middleware.servers import StartResponse, WSGIApp, serve

__all__ = [
    "LATENCY",
    "REQUESTS",
    "DependencyUnavailable",
    "Event",
    "FunctionApp",
    "UnsupportedEvent",
    "create_app",
    "event_data",
    "make_event",
    "reply",
    "serve",
]

Handler = Callable[[Event], "Event | None"]
# A plain-JSON route: (the path after its prefix, the JSON body, the query arguments) -> the JSON answer.
JsonRoute = Callable[[str, Any, Mapping[str, str]], Mapping[str, Any]]

REQUESTS = Counter(
    "coelho_function_requests_total",
    "CloudEvents received by a function, by event type and HTTP status code",
    ["function", "type", "code"],
)
LATENCY = Histogram(
    "coelho_function_request_seconds",
    "Time to handle one request (decode, handle, encode the reply)",
    ["function", "type"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_JSON = [("Content-Type", "application/json")]


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class FunctionApp:
    """The WSGI callable of a function: POST / (CloudEvents), its plain-JSON routes, probes and metrics; any other
    request goes to the Flask app behind it."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        is_accepted: Callable[[str], bool],
        accepted: list[str],
        ready: Callable[[], None] | None,
        json_routes: Mapping[str, JsonRoute],
        flask_app: WSGIApp,
        max_body: int,
        gate: TokenGate | None = None,
        openapi: bytes = b"{}",
    ) -> None:
        self.name = name
        self.handler = handler
        self.is_accepted = is_accepted
        self.accepted = accepted
        self.ready = ready
        self.json_routes = dict(json_routes)
        self.flask_app = flask_app
        self.max_body = max_body
        self.gate = gate
        self.openapi = openapi
        self._requests: dict[tuple[str, int], Any] = {}  # metric children, looked up once per (type, status)
        self._latency: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        if self.gate is not None and not self.gate.allows(environ):
            return self.unauthorized(environ, start_response)
        problem = check_body(environ, self.max_body)
        if problem is not None:
            return self.refuse(start_response, problem[0], problem[1])
        if method == "POST":
            if path == "/":
                return self.cloudevent(environ, start_response)
            for prefix, route in self.json_routes.items():
                if path.startswith(prefix):
                    return self.plain_json(route, path[len(prefix) :], environ, start_response)
        elif any(path.startswith(prefix) for prefix in self.json_routes):
            start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
            return []
        if method == "GET":
            if path == "/health/liveness":
                return self._json(start_response, 200, {"status": "alive", "function": self.name})
            if path == "/health/readiness":
                return self.readiness(start_response)
            if path == "/openapi.json":
                start_response("200 OK", [*_JSON, ("Content-Length", str(len(self.openapi)))])
                return [self.openapi]
            if path == "/metrics":
                body = generate_latest()
                start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
                return [body]
        return self.flask_app(environ, start_response)

    # --- POST / -----------------------------------------------------------------------------------------------
    def cloudevent(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        label = "unhandled"
        try:
            event = decode(_headers(environ), _body(environ), lower_case=True)
            ce_type = event.get_type()
            if not self.is_accepted(ce_type):
                raise UnsupportedEvent(f"{self.name} does not handle CloudEvents of type {ce_type!r}")
            label = ce_type
            event.wants_reply = not reply_unwanted(environ.get("QUERY_STRING", ""))
            answer = self.handler(event)
            if answer is None or not event.wants_reply:
                status, headers, body = 204, list[tuple[str, str]](), b""
            else:
                headers, body = to_http(answer)
                status = 200
        except Exception as exc:
            status, error = error_response(self.name, exc, self.accepted)
            headers, body = list(_JSON), json.dumps(error, default=str).encode("utf-8")
        return self._finish(start_response, label, status, headers, body, started)

    # --- plain-JSON routes --------------------------------------------------------------------------------------
    def plain_json(
        self, route: JsonRoute, rest: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        try:
            content_type = environ.get("CONTENT_TYPE", "")
            payload = None
            if content_type == "application/json" or content_type.startswith("application/json;"):
                try:
                    payload = loads_json(_body(environ) or b"null")
                except ValueError as exc:
                    raise UnsupportedEvent(f"the body is not JSON: {exc}") from None
            if payload is None:
                raise UnsupportedEvent("send a JSON object (Content-Type: application/json)")
            query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            status, answer = 200, route(rest, payload, query)
        except Exception as exc:
            status, answer = error_response(self.name, exc)
        body = json.dumps(answer, default=str).encode("utf-8")
        return self._finish(start_response, "json", status, list(_JSON), body, started)

    # --- probes ---------------------------------------------------------------------------------------------------
    def readiness(self, start_response: StartResponse) -> Iterable[bytes]:
        if self.ready is not None:
            try:
                self.ready()
            except Exception as exc:
                return self._json(
                    start_response, 503, {"status": "not ready", "function": self.name, "reason": scrub(str(exc))}
                )
        return self._json(start_response, 200, {"status": "ready", "function": self.name})

    # --- responses ------------------------------------------------------------------------------------------------
    def unauthorized(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers, error = TokenGate.challenge(environ)
        body = json.dumps(error).encode("utf-8")
        return self._finish(start_response, "unauthorized", 401, [*_JSON, *headers], body, time.perf_counter())

    def refuse(self, start_response: StartResponse, status: int, reason: str) -> Iterable[bytes]:
        """A request refused before it was read (size, Content-Length): counted as type "refused"."""
        body = json.dumps({"error": reason}).encode("utf-8")
        return self._finish(start_response, "refused", status, list(_JSON), body, time.perf_counter())

    def _finish(
        self,
        start_response: StartResponse,
        label: str,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        started: float,
    ) -> Iterable[bytes]:
        if status != 204:
            headers.append(("Content-Length", str(len(body))))
        start_response(_status_line(status), headers)
        counter = self._requests.get((label, status))
        if counter is None:
            counter = self._requests[(label, status)] = REQUESTS.labels(self.name, label, str(status))
        histogram = self._latency.get(label)
        if histogram is None:
            histogram = self._latency[label] = LATENCY.labels(self.name, label)
        counter.inc()
        histogram.observe(time.perf_counter() - started)
        return [body] if status != 204 else []

    @staticmethod
    def _json(start_response: StartResponse, status: int, body: Mapping[str, Any]) -> Iterable[bytes]:
        out = json.dumps(body).encode("utf-8")
        start_response(_status_line(status), [*_JSON, ("Content-Length", str(len(out)))])
        return [out]


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's CloudEvent headers (ce-*) and Content-Type, lower-case, from the WSGI environ: all a CloudEvent
    is decoded from, in binary or structured mode."""
    out = {"ce-" + k[8:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_CE_")}
    if environ.get("CONTENT_TYPE"):
        out["content-type"] = environ["CONTENT_TYPE"]
    return out


def _body(environ: Mapping[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise UnsupportedEvent("Content-Length is not a number") from None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def create_app(
    name: str,
    handler: Handler,
    accepts: Collection[str] | Callable[[str], bool],
    ready: Callable[[], None] | None = None,
    accepted_types: Collection[str] = (),
    json_routes: Mapping[str, JsonRoute] | None = None,
    max_body: int | None = None,
    require_token: bool | None = None,
    events_schema: Callable[[], dict[str, Any]] | None = None,
) -> Flask:
    """A Flask app whose every request first meets the function's `FunctionApp`.

    accepts: the CloudEvent types the handler takes, or a predicate on the type (then pass `accepted_types`, the
    human-readable list returned with a 400). ready: raises (DependencyUnavailable, ...) when the function cannot
    serve yet. json_routes: path prefix -> plain-JSON route (POST, same failure contract, metric type "json").
    max_body: the largest request body in bytes (default: COELHO_MAX_BODY_BYTES, else 256 KiB).
    require_token: ask for COELHO_API_TOKEN when it is set (default: the functions in `auth.PROTECTED`).
    events_schema: the JSON schema of the CloudEvent data the function takes, for its OpenAPI description (default:
    the one functions/middleware/openapi.py declares for `name`).
    """
    app = Flask(name)
    reseed_ids()
    if callable(accepts):
        is_accepted, listed = accepts, sorted(accepted_types)
    else:
        accepted_set = frozenset(accepts)
        is_accepted, listed = accepted_set.__contains__, sorted(accepted_set)
    limit = max_body if max_body is not None else max_body_bytes()
    required = name in PROTECTED if require_token is None else require_token
    gate = TokenGate.from_environ() if required else None
    paths, events = FUNCTION_PATHS.get(name), events_schema or FUNCTION_EVENTS.get(name)
    spec = json.dumps(describe(name, listed, required, paths() if paths else None, events() if events else None))
    function_app = FunctionApp(
        name, handler, is_accepted, listed, ready, json_routes or {}, app.wsgi_app, limit, gate, spec.encode()
    )
    app.wsgi_app = function_app  # type: ignore[method-assign]
    app.config["function_app"] = function_app
    return app
