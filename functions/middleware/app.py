"""The function middleware: a Flask app around a CloudEvent handler, its failure contract, probes and metrics.

A function is a handler `(event: CloudEvent) -> CloudEvent | None` plus the event types it accepts. Everything
else lives here, out of sight, like Knative's func-python middleware:

- POST / decodes binary and structured CloudEvents (cloudevents 2.x) and answers with a binary-mode CloudEvent
  (200) or nothing (204). `POST /?reply=none` does the same work and answers 204 instead of 200 + event: a
  Trigger whose subscriber URI says so sends no reply back into the Broker (the learn Triggers: nothing
  routes `learned` events, and each one cost a Kafka write and a read of it by the Broker's consumer group).
- GET /health/liveness, GET /health/readiness (runs the function's `ready` check), GET /metrics (Prometheus).
- Failure contract (what the Knative dispatcher retries: only 5xx, 404, 408, 409, 429):
  not a CloudEvent -> 400 with the reason; a type the function does not take -> 400 listing the accepted types;
  `ValidationError` -> 400 naming each bad field; `DependencyUnavailable` or a Redis/HTTP connection error
  -> 503 (retried); anything else -> 500. Never a 2xx for work not done.

    >>> def handler(event):
    ...     return reply(event, "com.coelho.realtime.tfd.learned", "/coelho/functions/learn/tfd", {"ok": True})
    >>> app = create_app("learn", handler, accepts=["com.coelho.realtime.tfd.record"])
    >>> app.test_client().post("/", json={"message": "Hello World"}, headers={"ce-type": "boson.fn",
    ...     "ce-id": "1", "ce-source": "/x", "ce-specversion": "1.0"}).status_code
    400

`serve(app)` runs it on HOST (default 127.0.0.1) and PORT with a threaded production server (see
docs/adr/0030-function-server.md for the measurement behind the choice).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, _encode_header_value, from_http_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from eventing.schema import ValidationError

log = logging.getLogger("coelho.functions")
_ids = random.Random()  # event ids need uniqueness, not secrecy: os.urandom per reply was ~4% of predict's CPU

Handler = Callable[[BaseCloudEvent], "BaseCloudEvent | None"]

REQUESTS = Counter(
    "coelho_function_requests_total", "CloudEvents received by a function, by event type and HTTP status code",
    ["function", "type", "code"],
)
LATENCY = Histogram(
    "coelho_function_request_seconds", "Time to handle one request (decode, handle, encode the reply)",
    ["function", "type"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class DependencyUnavailable(RuntimeError):
    """A dependency (Redis, MLflow, S3) is down or not ready: the caller should retry (HTTP 503)."""


class UnsupportedEvent(ValueError):
    """The event is well formed but this function cannot act on it (HTTP 400 with the reason)."""


def _is_dependency_error(exc: BaseException) -> bool:
    if isinstance(exc, DependencyUnavailable):
        return True
    try:
        import redis.exceptions as redis_errors

        if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | redis_errors.BusyLoadingError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, ConnectionError)


def event_data(event: BaseCloudEvent) -> Any:
    """The event's data as JSON (dict, list, ...): bytes and strings are parsed, None stays None."""
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        data = data.decode("utf-8")
    if isinstance(data, str):
        text = data.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise UnsupportedEvent("data is not JSON: the platform's events carry a JSON object") from None
    return data


def make_event(ce_type: str, source: str, data: Any, **extensions: Any) -> CloudEvent:
    """A new JSON CloudEvent; extensions with a None value are left out."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.UUID(int=_ids.getrandbits(128), version=4)),
        "source": source,
        "type": ce_type,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
    }
    attributes.update({k: v for k, v in extensions.items() if v is not None})
    return CloudEvent(attributes, data)


def reply(request_event: BaseCloudEvent, ce_type: str, source: str, data: Any, **extensions: Any) -> CloudEvent:
    """A reply to `request_event`: carries over its `domain` and `partitionkey` extensions unless given."""
    for name in ("domain", "partitionkey"):
        if name not in extensions:
            value = request_event.get_extension(name)
            if value is not None:
                extensions[name] = value
    return make_event(ce_type, source, data, **extensions)


def _json_response(status: int, body: Mapping[str, Any]) -> Response:
    return Response(json.dumps(body, default=str), status=status, mimetype="application/json")


def reply_unwanted(query_string: str | bytes) -> bool:
    """The request says `?reply=none` (the learn Triggers' subscriber URI): do the work, answer 204 without an
    event. One reading for the middleware and the direct paths, the first `reply` value as Flask's `args` gives it."""
    if not query_string:
        return False
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return parse_qs(text).get("reply", [""])[0] == "none"


def _event_response(event: BaseCloudEvent | None) -> Response:
    if event is None:
        response = Response(status=204)
        del response.headers["Content-Type"]  # no body, no type (Flask would say text/html)
        return response
    message = to_binary_event(event)
    return Response(message.body, status=200, headers=dict(message.headers))


def decode(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """A CloudEvent from an HTTP request (binary or structured mode), or UnsupportedEvent saying why not."""
    lower = {k.lower(): v for k, v in headers.items()}
    is_structured = lower.get("content-type", "").startswith("application/cloudevents")
    if not is_structured and "ce-type" not in lower:
        raise UnsupportedEvent(
            "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source, ce-type headers) "
            "or structured mode (Content-Type: application/cloudevents+json)"
        )
    try:
        return from_http_event(HTTPMessage(headers=lower, body=body))
    except Exception as exc:  # the SDK raises several kinds (validation, JSON, ...): all mean a bad request
        raise UnsupportedEvent(f"not a valid CloudEvent: {exc}") from None


def error_response(function: str, exc: BaseException, accepts: Collection[str] = ()) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the failure contract for an exception raised while handling an event."""
    if isinstance(exc, ValidationError):
        return 400, exc.to_dict()
    if isinstance(exc, UnsupportedEvent):
        body: dict[str, Any] = {"error": str(exc)}
        if accepts:
            body["accepted_types"] = sorted(accepts)
        return 400, body
    if _is_dependency_error(exc):
        return 503, {"error": f"dependency unavailable, retry later: {exc}"}
    log.exception("%s failed", function, exc_info=exc)
    return 500, {"error": f"{type(exc).__name__}: {exc}"}


def create_app(
    name: str,
    handler: Handler,
    accepts: Collection[str] | Callable[[str], bool],
    ready: Callable[[], None] | None = None,
    accepted_types: Collection[str] = (),
) -> Flask:
    """A Flask app serving `handler` on POST / with the failure contract, probes and metrics.

    accepts: the CloudEvent types the handler takes, or a predicate on the type (then pass `accepted_types`,
    the human-readable list returned with a 400). ready: raises (DependencyUnavailable, ...) when the function
    cannot serve yet; GET /health/readiness answers 503 with the reason then.
    """
    app = Flask(name)
    _ids.seed()  # fresh in every serving process (a forked worker must not repeat its parent's ids)
    if callable(accepts):
        is_accepted = accepts
        listed = list(accepted_types)
    else:
        accepted_set = frozenset(accepts)
        listed = sorted(accepted_set)

        def is_accepted(ce_type: str) -> bool:
            return ce_type in accepted_set

    @app.post("/")
    def receive() -> Response:
        started = time.perf_counter()
        ce_type = request.headers.get("ce-type", "structured")
        try:
            event = decode(dict(request.headers), request.get_data())
            ce_type = event.get_type()
            if not is_accepted(ce_type):
                label = "unhandled"
                REQUESTS.labels(name, label, "400").inc()
                return _json_response(400, {
                    "error": f"{name} does not handle CloudEvents of type {ce_type!r}",
                    "accepted_types": listed,
                })
            answer = handler(event)
            response = _event_response(None if reply_unwanted(request.query_string) else answer)
        except Exception as exc:
            status, body = error_response(name, exc, listed)
            response = _json_response(status, body)
        label = ce_type if is_accepted(ce_type) else "unhandled"
        REQUESTS.labels(name, label, str(response.status_code)).inc()
        LATENCY.labels(name, label).observe(time.perf_counter() - started)
        return response

    @app.get("/health/liveness")
    def liveness() -> Response:
        return _json_response(200, {"status": "alive", "function": name})

    @app.get("/health/readiness")
    def readiness() -> Response:
        if ready is not None:
            try:
                ready()
            except Exception as exc:
                return _json_response(503, {"status": "not ready", "function": name, "reason": str(exc)})
        return _json_response(200, {"status": "ready", "function": name})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    return app


def json_endpoint(name: str, func: Callable[[], Mapping[str, Any]], accepts: Collection[str] = ()) -> Response:
    """Run a plain-JSON endpoint body with the same failure contract and metrics as POST /."""
    started = time.perf_counter()
    try:
        response = _json_response(200, func())
    except Exception as exc:
        status, body = error_response(name, exc, accepts)
        response = _json_response(status, body)
    REQUESTS.labels(name, "json", str(response.status_code)).inc()
    LATENCY.labels(name, "json").observe(time.perf_counter() - started)
    return response


def serve(app_factory: Callable[[], Flask], default_port: int = 8080, default_server: str = "waitress") -> None:
    """Serve the app on HOST:PORT until stopped with COELHO_SERVER (granian, waitress, gunicorn, werkzeug); when it
    is unset or empty, with the function's `default_server`. The hot paths (predict-one, learn-one) default to
    granian, measured best; checkpoint and chat to waitress, one process instead of two (ADR 0075).

    The app is built by `app_factory` inside the serving process (after any fork), so background threads
    (e.g. predict's log follower) start where they are used.
    """
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", str(default_port)))
    threads = int(os.environ.get("COELHO_THREADS", "16"))
    server = os.environ.get("COELHO_SERVER") or default_server
    log.info("serving on %s:%s with %s (%d threads)", host, port, server, threads)
    if server == "werkzeug":
        app_factory().run(host=host, port=port, threaded=True)
    elif server == "granian":
        _serve_granian(app_factory, host, port, threads)
    elif server == "waitress":
        import waitress

        waitress.serve(app_factory(), host=host, port=port, threads=threads, ident=None)
    else:
        _serve_gunicorn(app_factory, host, port, threads)


GRANIAN_APP_ENV = "COELHO_GRANIAN_APP"  # "module:factory" of the app the Granian worker builds


def _serve_granian(app_factory: Callable[[], Flask], host: str, port: int, threads: int) -> None:
    """Granian (a Rust HTTP server) parses HTTP and runs the WSGI app in one worker process (ADR 0075).

    The worker builds the app through `granian_app`, which reads the factory's import path from the environment.
    """
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    module = app_factory.__module__
    if module == "__main__":  # `python -m functions.predict`: name the module by its real name
        module = _main_module_name() or module
    os.environ[GRANIAN_APP_ENV] = f"{module}:{app_factory.__name__}"
    Granian("functions.middleware.app:granian_app", address=host, port=port, interface=Interfaces.WSGI,
            factory=True, workers=1, blocking_threads=threads, log_access=False, log_level=LogLevels.warning).serve()


def _main_module_name() -> str | None:
    """The import name of the module run as `__main__` (`python -m functions.predict` -> "functions.predict")."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else None


def granian_app() -> WSGIApp:
    """The app inside Granian's worker. The worker dies with its parent (PR_SET_PDEATHSIG), so killing the
    function's process with SIGKILL, as a crash would, never leaves an orphan holding the port."""
    import ctypes
    import importlib
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    module, _, name = os.environ[GRANIAN_APP_ENV].partition(":")
    # The worker is forked: the function's module is loaded already, as `__main__` (importing it again under its
    # real name would register its Prometheus metrics twice).
    loaded = sys.modules["__main__"] if _main_module_name() == module else importlib.import_module(module)
    app: WSGIApp = getattr(loaded, name)()
    return app


def _serve_gunicorn(app_factory: Callable[[], Flask], host: str, port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class FunctionServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("keepalive", 30)
            self.cfg.set("accesslog", None)

        def load(self) -> Flask:
            return app_factory()

    FunctionServer().run()


# --- direct WSGI paths (predict-one and learn-one put one in front of their Flask app: ADR 0072, 0074) -------------
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class DirectPath:
    """What the direct paths share: recognising a binary-mode JSON CloudEvent they may answer, reading the body,
    handing a request back to the Flask app with its body restored, and the reply CloudEvent's headers in the
    order the SDK writes them. `known_ce` = the ce-* headers (WSGI names) the subclass understands."""

    known_ce: frozenset[str] = frozenset()

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def is_plain_binary_json(self, environ: Mapping[str, Any]) -> bool:
        """A binary-mode CloudEvent 1.0 with id, source, JSON data and no ce-* header outside `known_ce`."""
        content_type = environ.get("CONTENT_TYPE", "")
        return (environ.get("HTTP_CE_SPECVERSION") == "1.0" and bool(environ.get("HTTP_CE_ID"))
                and bool(environ.get("HTTP_CE_SOURCE"))
                and (content_type == "application/json" or content_type.startswith("application/json;"))
                and not any(k.startswith("HTTP_CE_") and k not in self.known_ce for k in environ))

    @staticmethod
    def body(environ: dict[str, Any]) -> bytes | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        return environ["wsgi.input"].read(length) if length > 0 else b""

    def to_flask(self, environ: dict[str, Any], start_response: StartResponse, body: bytes) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    @staticmethod
    def reply_headers(source: str, ce_type: str, domain: str, partitionkey: Any) -> list[tuple[str, str]]:
        """Headers of a binary-mode reply, as `to_binary_event` writes them (`source`/`ce_type` header-encoded)."""
        headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", str(uuid.UUID(int=_ids.getrandbits(128), version=4))),
            ("ce-source", source),
            ("ce-type", ce_type),
            ("ce-time", _encode_header_value(datetime.now(UTC))),
            ("content-type", "application/json"),
            ("ce-domain", domain),
        ]
        if partitionkey is not None:
            headers.append(("ce-partitionkey", _encode_header_value(partitionkey)))
        return headers
