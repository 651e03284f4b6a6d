"""predict-one: fresh predictions from the live models, without reloading a model blob per request.

Takes `com.coelho.realtime.<domain>.prediction.requested` CloudEvents (POST /) or the same JSON in a plain
POST /predict/<domain>, and answers with a `com.coelho.realtime.<domain>.prediction` CloudEvent (or its data
as JSON): the fields each domain declares (`Domain.reply_fields()`, listed in docs/events.md), built by the
model's own `OnlineModel.reply`.

Freshness: each process keeps every model in memory and a `LogFollower` thread tails the domains' event logs
in Redis (XREAD, blocking ~100 ms), applying new entries as they are appended (functions/model_state/replica.py).
A process that has lost Redis for more than STALE_AFTER_S answers 503: its predictions would be stale.

The request path, statuses and metrics are the middleware's (functions/middleware/app.py); this module is the
`event -> prediction` part. Run: `python -m functions.predict`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask

from eventing.domain import Domain
from eventing.domains import DOMAINS, get_domain
from functions.middleware.app import (
    DependencyUnavailable,
    Event,
    UnsupportedEvent,
    create_app,
    event_data,
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
        with replica.lock:  # the answer and the state it reports (events_learned, seq, cluster profile) agree
            state = replica.state
            return state.reply(state.predict_one(x), version, clean)

    def predict_json(self, domain_name: str, payload: Any, query: Mapping[str, str]) -> dict[str, Any]:
        """POST /predict/<domain>[?model=NAME] with the features as JSON: the prediction's data."""
        try:
            domain = get_domain(domain_name)
        except ValueError as exc:
            raise UnsupportedEvent(str(exc)) from None
        return self.predict(domain, payload, query.get("model"))

    def handle(self, event: Event) -> Event:
        domain = get_domain(event.get_type().split(".")[3])
        model = event.get_extension("model")
        payload = event_data(event)
        data = self.predict(domain, payload, str(model) if model else None)
        partitionkey = None
        if isinstance(payload, dict):
            partitionkey = payload.get(domain.key_field)
        return reply(event, domain.type("prediction"), domain.source("functions/predict"), data,
                     domain=domain.name, partitionkey=partitionkey)


def create() -> Flask:
    client = connect()
    predictor = Predictor(client)
    try:
        predictor.load()
    except Exception as exc:
        log.warning("model state not loaded yet: %s", exc)
    app = create_app("predict", predictor.handle, accepts=ACCEPTED, ready=predictor.ready,
                     json_routes={"/predict/": predictor.predict_json})
    app.config["predictor"] = predictor
    return app

if __name__ == "__main__":
    serve(create, default_server="granian")  # ADR 0075
