"""predict-one: fresh predictions from the live models, without reloading a model blob per request.

Takes `com.coelho.realtime.<domain>.prediction.requested` CloudEvents (POST /) or the same JSON in a plain
POST /predict/<domain>, and answers with a `com.coelho.realtime.<domain>.prediction` CloudEvent (or its data
as JSON): the fields each domain declares (`Domain.reply_fields()`, listed in docs/events.md), built by the
model's own `OnlineModel.reply`.

Which model answers (functions/model_state/ab.py, docs/adr/0082-ab-testing.md): by default the champion (the
model the `champion` alias points to, or the domain's first live model before any checkpoint), or the arm of the
domain's weighted split the request's entity key hashes to (sticky). A request may choose: the CloudEvent
extension `model` or `?model=NAME` (a live model), `modelversion` (a registered version number or an alias) or
`?version=N` / `?alias=NAME`: that registered version, frozen (loaded once from MLflow, learning nothing). The model
name `batch` (`?model=batch`, optionally with `?version=N`) serves a batch study's scikit-learn model, registered as
`coelho-<domain>-batch`, frozen: the latest version or version N (functions/batch/serving.py). The reply says which:
`model`, `version` and `frozen`. A routing table per domain (live models, aliases, split) is
re-read from Redis every ROUTING_REFRESH_S and swapped in one assignment; a request reads it once, so a promotion
never fails or mixes a request. Answers to requests that carry the event id are kept (bounded) until the event's
label is learned, which scores each served (model, version) on live traffic (functions/model_state/ab_served.py).
On a cluster predict-one's Redis user reads the model state and writes only the served answers: it never seeds a
domain's live-model set (`ab.live_models(seed=False)`); on an empty Redis it serves the configured models
(COELHO_MODEL_<DOMAIN>, default the domain's default model) until learn-one seeds the set.

Freshness: each process keeps every model in memory and a `LogFollower` thread tails the domains' event logs
in Redis (XREAD, blocking ~100 ms), applying new entries as they are appended (functions/model_state/replica.py).
A process that has lost Redis for more than STALE_AFTER_S answers 503: its predictions would be stale.

The request path, statuses and metrics are the middleware's (functions/middleware/app.py); this module is the
`event -> prediction` part. Run: `python -m functions.predict`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from eventing.domain import Domain
from eventing.domains import DOMAINS, get_domain
from functions.batch.serving import BATCH_MODEL, BatchModel
from functions.middleware.app import (
    DependencyUnavailable,
    Event,
    UnsupportedEvent,
    create_app,
    event_data,
    reply,
    serve,
)
from functions.model_state import ab, ab_served
from functions.model_state.codec import StateRefused
from functions.model_state.follower import LogFollower
from functions.model_state.keys import as_text, connect, key
from functions.model_state.online_model import OnlineModel
from functions.model_state.replica import ModelReplica, replicas_for, sync_replicas

log = logging.getLogger("coelho.functions.predict")

ACCEPTED = sorted(d.type("prediction.requested") for d in DOMAINS.values())
STALE_AFTER_S = float(os.environ.get("COELHO_STALE_AFTER_S", "5"))
VERSION_REFRESH_S = 2.0
ROUTING_REFRESH_S = 0.5  # live models, aliases and split re-read: a promotion shows within 2 s
FROZEN_KEEP = 8  # registered versions kept loaded per process
BATCH_LATEST_REFRESH_S = 10.0  # how often the latest version of coelho-<domain>-batch is looked up again


@dataclass(frozen=True)
class Routing:
    """What serves a domain's requests, read from Redis at once and never changed: a new one replaces it."""

    replicas: dict[str, ModelReplica]  # live model -> replica, in the live order
    champion: str  # the model that answers by default
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)  # alias -> {model, version, seq}
    split: tuple[tuple[str, int], ...] = ()  # (model, weight): the arms, resolved to live models

    def arm(self, entity: str | None) -> str:
        if not self.split or not entity:
            return self.champion
        return ab.pick_arm(self.split, entity)


class Predictor:
    def __init__(self, client: Any) -> None:
        self.redis = client
        self.replicas = replicas_for(client, "follower")
        self.follower = LogFollower(client, [r for rs in self.replicas.values() for r in rs])
        self.routing: dict[str, Routing] = {
            name: Routing({r.model_name: r for r in rs}, rs[0].model_name) for name, rs in self.replicas.items()
        }
        self._versions: dict[tuple[str, str], tuple[float, int | None]] = {}
        self._version_lock = threading.Lock()
        self._frozen: OrderedDict[tuple[str, int], tuple[OnlineModel, threading.Lock]] = OrderedDict()
        self._frozen_lock = threading.Lock()
        self._batch: OrderedDict[tuple[str, int], BatchModel] = OrderedDict()
        self._batch_latest: dict[str, tuple[float, int | None]] = {}
        self._served: queue.Queue[tuple[str, str, str, Any]] = queue.Queue(maxsize=10_000)
        self._refresh_lock = threading.Lock()
        self.stopping = threading.Event()
        self.loaded = False
        self._threads_started = False

    def load(self) -> None:
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.load_snapshot()
                replica.catch_up()
        self.refresh_routing()
        self.loaded = True
        if not self.follower.is_alive():
            self.follower.start()
        if not self._threads_started:
            self._threads_started = True
            threading.Thread(target=self._watch_routing, name="coelho-routing", daemon=True).start()
            threading.Thread(target=self._write_served, name="coelho-served", daemon=True).start()

    # --- routing: live models, aliases, split ---------------------------------------------------------
    def refresh_routing(self) -> None:
        """Re-read each domain's live models, aliases and split; start replicas of new models (caught up before
        they serve), drop removed ones, and swap in the new routing tables."""
        with self._refresh_lock:
            names = list(self.replicas)
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(key(name, "aliases"))
                pipe.get(key(name, "split"))
            replies = pipe.execute()
            changed = False
            for index, name in enumerate(names):
                domain = get_domain(name)
                current = self.replicas[name]
                replicas = sync_replicas(self.redis, domain, "follower", current, seed=False)  # a read-only user
                if len(replicas) != len(current) or any(a is not b for a, b in zip(replicas, current, strict=False)):
                    self.replicas[name] = replicas
                    changed = True
                by_name = {r.model_name: r for r in replicas}
                aliases = {as_text(k): json.loads(v) for k, v in replies[2 * index].items()}
                held = (aliases.get("champion") or {}).get("model")
                champion = held if held in by_name else replicas[0].model_name
                arms = []
                for arm, weight in ab.read_split(replies[2 * index + 1]):
                    model = (aliases.get(arm) or {}).get("model") if arm in ab.ALIASES else arm
                    arms.append((model if model in by_name else champion, weight))
                self.routing[name] = Routing(by_name, champion, aliases, tuple(arms))
            if changed:
                self.follower.replicas = [r for rs in self.replicas.values() for r in rs]

    def stop(self) -> None:
        """Stop following the logs and refreshing the routing (tests, benches)."""
        self.stopping.set()
        self.follower.stop()

    def _watch_routing(self) -> None:
        while not self.stopping.wait(ROUTING_REFRESH_S):
            try:
                self.refresh_routing()
            except Exception as exc:  # Redis away: keep serving with the routing we have
                log.warning("routing not refreshed: %s", exc)

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

    def replica(self, domain: Domain, model: str | None, routing: Routing | None = None) -> ModelReplica:
        routing = routing or self.routing[domain.name]
        if model is None:
            return routing.replicas[routing.champion]
        found = routing.replicas.get(model)
        if found is None:
            raise UnsupportedEvent(f"model {model!r} is not served for {domain.name}: {', '.join(routing.replicas)}")
        return found

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

    # --- frozen registered versions -----------------------------------------------------------------
    def resolve_version(self, domain: Domain, selector: str, routing: Routing) -> int:
        """A version number, or the version an alias points to (UnsupportedEvent when it points to none)."""
        text = str(selector).strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
        if text.startswith("v") and text[1:].isdigit():
            return int(text[1:])
        held = routing.aliases.get(text)
        if held is None:
            raise UnsupportedEvent(
                f"{domain.name}: {text!r} is neither a version number nor an alias that is set "
                f"({', '.join(routing.aliases) or 'none yet'})"
            )
        if held.get("version") is None:
            raise UnsupportedEvent(
                f"{domain.name}: alias {text!r} points to {held.get('model')}, which has no registered version yet"
            )
        return int(held["version"])

    def frozen(self, domain: Domain, version: int) -> tuple[OnlineModel, threading.Lock]:
        """Registered `version` of the domain, loaded once from MLflow (the last FROZEN_KEEP kept), and its lock."""
        cache_key = (domain.name, version)
        with self._frozen_lock:
            found = self._frozen.get(cache_key)
            if found is not None:
                self._frozen.move_to_end(cache_key)
                return found
            if not os.environ.get("MLFLOW_TRACKING_URI"):
                raise DependencyUnavailable("MLFLOW_TRACKING_URI is not set: registered versions cannot be loaded")
            from functions.model_state.registry import load_version

            try:  # one load at a time per process: seconds, then cached
                state = load_version(domain.name, version)
            except StateRefused as exc:  # reported by the codec; the live models keep answering
                raise UnsupportedEvent(
                    f"coelho-{domain.name} version {version} is refused: its state is not signed by this platform "
                    f"({exc.reason})"
                ) from None
            if state is None:
                raise UnsupportedEvent(f"coelho-{domain.name} has no version {version}")
            found = self._frozen[cache_key] = (state, threading.Lock())
            while len(self._frozen) > FROZEN_KEEP:
                self._frozen.popitem(last=False)
            return found

    def batch_model(self, domain: Domain, selector: str | None) -> BatchModel:
        """A version of `coelho-<domain>-batch` (the latest when `selector` is empty), loaded once (the last
        FROZEN_KEEP kept); UnsupportedEvent when there is none, DependencyUnavailable when MLflow cannot answer."""
        from functions.batch import serving

        text = str(selector or "").strip().removeprefix("v")
        if text and not text.isdigit():
            raise UnsupportedEvent(f"{domain.name}: the batch model takes a version number, not {selector!r}")
        with self._frozen_lock:  # one MLflow call at a time per process: seconds, then cached
            if not os.environ.get("MLFLOW_TRACKING_URI"):
                raise DependencyUnavailable("MLFLOW_TRACKING_URI is not set: batch models cannot be loaded")
            try:
                if text:
                    number: int | None = int(text)
                else:
                    now = time.monotonic()
                    cached = self._batch_latest.get(domain.name)
                    if cached and cached[1] is not None and now - cached[0] < BATCH_LATEST_REFRESH_S:
                        number = cached[1]
                    else:
                        number = serving.latest_version(domain.name)
                        self._batch_latest[domain.name] = (now, number)
                if number is None:
                    raise UnsupportedEvent(
                        f"{serving.registered_name(domain.name)} has no registered version: "
                        f"`coelho batch train {domain.name}` trains one"
                    )
                found = self._batch.get((domain.name, number))
                if found is not None:
                    self._batch.move_to_end((domain.name, number))
                    return found
                loaded = serving.load(domain, number)
            except UnsupportedEvent:
                raise
            except Exception as exc:  # MLflow or its store away: the Broker retries
                raise DependencyUnavailable(f"batch model not loaded from MLflow: {exc}") from exc
            if loaded is None:
                raise UnsupportedEvent(f"{serving.registered_name(domain.name)} has no version {number}")
            self._batch[(domain.name, number)] = loaded
            while len(self._batch) > FROZEN_KEEP:
                self._batch.popitem(last=False)
            return loaded

    # --- one prediction -------------------------------------------------------------------------------
    def predict(
        self,
        domain: Domain,
        payload: Any,
        model: str | None = None,
        version: str | None = None,
        entity: str | None = None,
    ) -> dict[str, Any]:
        """The reply to a prediction request. model: a live model; version: a registered version number or an
        alias (frozen); model `batch`: the batch study's model (version: its registered version, default the latest);
        neither: the split's arm for `entity` (the entity key) or the champion."""
        if not self.loaded:
            self.load()
        self.check_fresh()
        clean = domain.validate(payload, purpose="prediction")
        routing = self.routing[domain.name]  # read once: a promotion swaps the whole table
        x = domain.features(clean)
        if model == BATCH_MODEL and BATCH_MODEL not in routing.replicas:
            batch = self.batch_model(domain, version)
            raw = batch.predict_one(x)
            self._keep(domain, clean, BATCH_MODEL, batch.version, True, raw)
            return batch.reply(raw, clean)
        if version is not None and str(version) != "":
            number = self.resolve_version(domain, version, routing)
            state, lock = self.frozen(domain, number)
            with lock:
                raw = state.predict_one(x)
            self._keep(domain, clean, state.model_name, number, True, raw)
            return state.reply(raw, number, clean, frozen=True)
        if model is None:
            model = routing.arm(entity if entity is not None else _entity(domain, clean))
        replica = self.replica(domain, model, routing)
        latest = self.version(replica)  # a Redis GET every few seconds: never under the replica lock
        with replica.lock:  # the answer and the state it reports (events_learned, seq, cluster profile) agree
            state = replica.state
            raw = state.predict_one(x)
            answer = state.reply(raw, latest, clean)
        self._keep(domain, clean, replica.model_name, latest, False, raw)
        return answer

    def _keep(
        self, domain: Domain, clean: Mapping[str, Any], model: str, version: int | None, frozen: bool, raw: Any
    ) -> None:
        """Queue the answer to a request that names its event, to be scored when the label is learned."""
        event_id = clean.get(domain.id_field)
        if event_id is None or domain.target is None:
            return
        with contextlib.suppress(queue.Full):  # monitoring only: never slow a prediction down
            self._served.put_nowait((domain.name, str(event_id), ab_served.served_field(model, version, frozen), raw))

    def _write_served(self) -> None:
        while True:
            batch = [self._served.get()]
            time.sleep(0.05)
            while len(batch) < 1000:
                try:
                    batch.append(self._served.get_nowait())
                except queue.Empty:
                    break
            by_domain: dict[str, list[tuple[str, str, Any]]] = {}
            for domain_name, event_id, served, raw in batch:
                by_domain.setdefault(domain_name, []).append((event_id, served, raw))
            for domain_name, served_list in by_domain.items():
                try:
                    ab_served.record_served(self.redis, domain_name, served_list)
                except Exception as exc:  # Redis away: these answers go unscored
                    log.warning("served answers not kept: %s", exc)

    def predict_json(self, domain_name: str, payload: Any, query: Mapping[str, str]) -> dict[str, Any]:
        """POST /predict/<domain>[?model=NAME | ?version=N | ?alias=NAME | ?model=batch[&version=N]] with the
        features as JSON: the prediction's data."""
        try:
            domain = get_domain(domain_name)
        except ValueError as exc:
            raise UnsupportedEvent(str(exc)) from None
        return self.predict(domain, payload, query.get("model") or None, query.get("version") or query.get("alias"))

    def handle(self, event: Event) -> Event:
        domain = get_domain(event.get_type().split(".")[3])
        model = event.get_extension("model")
        version = event.get_extension("modelversion")
        entity = event.get_extension("partitionkey")
        payload = event_data(event)
        data = self.predict(
            domain,
            payload,
            str(model) if model else None,
            str(version) if version else None,
            str(entity) if entity else None,
        )
        partitionkey = None
        if isinstance(payload, dict):
            partitionkey = payload.get(domain.key_field)
        return reply(
            event,
            domain.type("prediction"),
            domain.source("functions/predict"),
            data,
            domain=domain.name,
            partitionkey=partitionkey,
        )


def _entity(domain: Domain, clean: Mapping[str, Any]) -> str | None:
    """The key a split is sticky on: the entity key, else the event id."""
    value = clean.get(domain.key_field, clean.get(domain.id_field))
    return None if value is None else str(value)


def create() -> Flask:
    client = connect()
    predictor = Predictor(client)
    try:
        predictor.load()
    except Exception as exc:
        log.warning("model state not loaded yet: %s", exc)
    app = create_app(
        "predict",
        predictor.handle,
        accepts=ACCEPTED,
        ready=predictor.ready,
        json_routes={"/predict/": predictor.predict_json},
    )
    app.config["predictor"] = predictor
    return app


if __name__ == "__main__":
    serve(create, default_server="granian")  # ADR 0075
