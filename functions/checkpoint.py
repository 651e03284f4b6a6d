"""checkpoint: snapshots each domain model to MLflow, on a PingSource schedule or on demand.

Takes `com.coelho.realtime.checkpoint.requested` (and `dev.knative.sources.ping`, what a PingSource sends by
default) with optional data {"domain": "tfd"} or {"domains": ["tfd", "eta"]} (default: all). For each model
of each domain it brings its own in-memory replica up to the end of the log (learning never waits: this
process only reads the log), pickles that copy, and logs one MLflow run with the metrics and the state as an
artifact on S3, plus a new version of the registered model `coelho-<domain>` tagged with the events learned: a
pyfunc model (functions/model_state/pyfunc.py). The models are the domain's live ones (functions/model_state/ab.py);
a version takes the alias `champion` when it is the first of the champion's model, `challenger` when it is the first
of another live model while none is set, and an alias follows its model's newer versions.
Replies with a `com.coelho.realtime.<domain>.checkpoint` CloudEvent (several domains:
`com.coelho.realtime.checkpoint.completed` listing each). Run: `python -m functions.checkpoint`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import requests
from flask import Flask
from prometheus_client import Histogram

from eventing.cloudevent_types import CHECKPOINT_REQUESTED, TYPE_PREFIX
from eventing.domains import DOMAINS, get_domain
from eventing.schema import ValidationError
from functions.middleware.app import Event, create_app, event_data, make_event, reply, serve
from functions.middleware.events import post_event
from functions.model_state import ab
from functions.model_state.keys import connect
from functions.model_state.replica import ModelReplica, models_for

log = logging.getLogger("coelho.functions.checkpoint")

PING = "dev.knative.sources.ping"
ACCEPTED = [CHECKPOINT_REQUESTED, PING]
COMPLETED = f"{TYPE_PREFIX}.checkpoint.completed"

# Catch up + pickle + MLflow run + registered version of one model. MLflow dominates: a second or more.
CHECKPOINT_DURATION = Histogram(
    "coelho_checkpoint_duration_seconds",
    "Time to checkpoint one model to MLflow (catch up, pickle, log, register)",
    ["domain", "model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)


class Checkpointer:
    def __init__(self, client: Any) -> None:
        self.redis = client
        self.replicas: dict[tuple[str, str], ModelReplica] = {}
        self.lock = threading.Lock()  # one checkpoint at a time per process

    def models(self, domain: str) -> list[ab.ModelSpec]:
        d = get_domain(domain)
        return ab.live_models(self.redis, d, models_for(d))

    def replica(self, domain: str, spec: ab.ModelSpec | str) -> ModelReplica:
        spec = spec if isinstance(spec, ab.ModelSpec) else ab.ModelSpec(spec)
        found = self.replicas.get((domain, spec.name))
        if found is None or found.params != spec.params:
            found = self.replicas[(domain, spec.name)] = ModelReplica(
                self.redis, get_domain(domain), spec.name, role="checkpoint", params=spec.params
            )
            found.load_snapshot()
        return found

    def checkpoint(self, domain: str, model: ab.ModelSpec | str) -> dict[str, Any]:
        from functions.model_state.registry import log_checkpoint

        started = time.perf_counter()
        replica = self.replica(domain, model)
        replica.catch_up()
        with replica.lock:  # the copy: learning elsewhere never waits for MLflow
            state = replica.state
            blob = state.to_bytes()
            summary = state.summary()
        record = log_checkpoint(state, blob, summary)
        record["bytes"] = len(blob)
        self.redis.set(replica.mkey("checkpoint"), json.dumps(record))
        record["aliases"] = sorted(
            ab.after_checkpoint(self.redis, replica.domain, replica.model_name, record["version"], state.seq)
        )
        CHECKPOINT_DURATION.labels(domain, replica.model_name).observe(time.perf_counter() - started)
        return record

    def run(self, domains: list[str]) -> list[dict[str, Any]]:
        with self.lock:
            return [self.checkpoint(d, m) for d in domains for m in self.models(d)]

    def handle(self, event: Event) -> Event:
        domains = requested_domains(event_data(event) if event.get_type() != PING else None)
        records = self.run(domains)
        source = "/coelho/functions/checkpoint"
        if len(domains) == 1:
            d = get_domain(domains[0])
            return reply(
                event,
                d.type("checkpoint"),
                d.source("functions/checkpoint"),
                {"domain": d.name, "checkpoints": records},
                domain=d.name,
            )
        for name in domains:  # one event per domain for whoever subscribes (dashboard), best effort
            dom = get_domain(name)
            _post(
                make_event(
                    dom.type("checkpoint"),
                    dom.source("functions/checkpoint"),
                    {"domain": name, "checkpoints": [r for r in records if r["domain"] == name]},
                    domain=name,
                )
            )
        return reply(event, COMPLETED, source, {"domains": domains, "checkpoints": records})


def requested_domains(data: Any) -> list[str]:
    if not data or not isinstance(data, dict):
        return list(DOMAINS)
    names = data.get("domains") or ([data["domain"]] if data.get("domain") else list(DOMAINS))
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        raise ValidationError({"domains": f"a list of domains: {', '.join(DOMAINS)}"})
    try:
        return [get_domain(str(n)).name for n in names]
    except ValueError as exc:
        raise ValidationError({"domain": str(exc)}) from None


def _post(event: Event) -> None:
    import os

    url = os.environ.get("BROKER_URL")
    if not url:
        return
    try:
        post_event(url, event)
    except requests.RequestException as exc:
        log.warning("checkpoint event not delivered: %s", exc)


def _warm_up() -> None:
    import mlflow  # noqa: F401  (seconds of import: paid at start-up, not by the first checkpoint)


def create() -> Flask:
    client = connect()
    checkpointer = Checkpointer(client)

    def ready() -> None:
        client.ping()

    threading.Thread(target=_warm_up, name="coelho-mlflow-import", daemon=True).start()
    app = create_app("checkpoint", checkpointer.handle, accepts=ACCEPTED, ready=ready)
    app.config["checkpointer"] = checkpointer
    return app


if __name__ == "__main__":
    serve(create)
