"""Ask predict-one for a prediction: a `prediction.requested` CloudEvent (binary mode) in, a `prediction` out."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from coelho.settings import Settings
from eventing.domain import Domain
from eventing.schema import check_values
from functions.middleware.auth import auth_headers

_local = threading.local()


def _session() -> requests.Session:
    # One keep-alive connection per thread: a new TCP connection per click costs more than the prediction.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@dataclass
class PredictionReply:
    """What predict-one answered, or why there is no answer (`error`, and `field_errors` for bad inputs)."""

    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    field_errors: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    latency_ms: float = 0.0
    event_id: str = ""


def prediction_event(
    domain: Domain, payload: dict[str, Any], model: str | None = None, version: str | None = None
) -> CloudEvent:
    key = payload.get(domain.key_field)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": domain.type("prediction.requested"),
        "source": domain.source("dashboard"),
        "datacontenttype": "application/json",
        "domain": domain.name,
    }
    if key:
        attributes["partitionkey"] = str(key)
    if model:  # which of the domain's models answers (predict-one reads the `model` extension)
        attributes["model"] = model
    if version:  # a registered version number or an alias, served frozen (the `modelversion` extension)
        attributes["modelversion"] = version
    return CloudEvent(attributes, payload)


def request_prediction(
    settings: Settings,
    domain: Domain,
    payload: dict[str, Any],
    timeout: float = 3.0,
    model: str | None = None,
    version: str | None = None,
) -> PredictionReply:
    """POST the request to predict-one (to `model`, or registered `version` frozen, else the domain's champion or
    split) and return its reply. A first request for a version waits for predict-one to load it from MLflow.

    A reply is ok when it has every field the domain declares for it (`Domain.reply_fields`), with the declared
    types. Never raises for network or HTTP errors.
    """
    event = prediction_event(domain, payload, model, version)
    if version:
        timeout = max(timeout, 30.0)
    message = to_binary_event(event)
    start = time.perf_counter()
    try:
        resp = _session().post(
            settings.url("predict") + "/",
            headers={**message.headers, **auth_headers()},
            data=message.body,
            timeout=timeout,
        )
    except requests.RequestException:
        _local.session = None
        return PredictionReply(
            ok=False,
            error="The predict-one function is not reachable: it may be stopped or restarting.",
            latency_ms=(time.perf_counter() - start) * 1000,
            event_id=str(event.get_id()),
        )
    latency = (time.perf_counter() - start) * 1000
    try:
        body: Any = resp.json() if resp.content else {}
    except (ValueError, json.JSONDecodeError):
        body = {"message": resp.text[:300]}
    if resp.status_code == 200 and isinstance(body, dict):
        wrong = check_values(domain.reply_fields(), body, extra_allowed=True)
        if wrong:  # the pages read the declared fields only, and all of them
            return PredictionReply(
                ok=False,
                status=200,
                latency_ms=latency,
                event_id=str(event.get_id()),
                error="predict-one's reply does not have the declared fields: "
                + "; ".join(f"{k}: {v}" for k, v in wrong.items()),
            )
        return PredictionReply(ok=True, data=body, status=200, latency_ms=latency, event_id=str(event.get_id()))
    reply = PredictionReply(ok=False, status=resp.status_code, latency_ms=latency, event_id=str(event.get_id()))
    if isinstance(body, dict):
        fields = body.get("fields")
        if isinstance(fields, dict):
            reply.field_errors = {str(k): str(v) for k, v in fields.items()}
        reply.error = str(body.get("message") or body.get("error") or "")
    if resp.status_code == 503:
        reply.error = "The model is not available right now (a dependency of predict-one is down): " + (
            reply.error or ""
        )
    elif not reply.error:
        reply.error = f"predict-one answered HTTP {resp.status_code}"
    return reply
