"""learn-one: applies every domain event to its models exactly once and in order, test-then-train.

Takes `com.coelho.realtime.<domain>.record` (features + target; without the target it waits for its label),
`com.coelho.realtime.<domain>.label` ({id field, target}: the delayed label of an earlier record),
`dev.knative.kafka.event` (a KafkaSource record; the domain comes from the topic after `#` in the source),
`com.coelho.realtime.training.control` ({"domain": ..., "action": "pause"|"resume"}) and
`com.coelho.realtime.model.control` ({"domain": ..., "action": "add"|"remove"|"promote"|"rollback"|"split", ...}:
A/B testing, functions/model_state/ab.py; the reply is the domain's `model.changed`, `model.promoted` or
`split.changed` event).

The models each domain learns are its live models in Redis (`coelho:<domain>:live`): every replica re-reads them
every `MODEL_SET_CHECK_S` and starts or drops replicas, so a challenger added anywhere learns within seconds.

The event is committed when it is appended to the domain's log in Redis (functions/model_state/replica.py); the reply
is a `learned` CloudEvent with its sequence number and what each model did. The learn Triggers deliver to
`/?reply=none` (ADR 0076): the event is committed, the answer is 204, and the domain's `BatchLearner` thread applies
the log to the models in batches, so no reply is routed back into the Broker.

Which domains a process learns: COELHO_DOMAINS (comma-separated domain names; unset or empty: every domain, as on
the embedded platform). On a cluster each domain has its own Service, `coelho-learn-<domain>` with
COELHO_DOMAINS=<domain> (docs/adr/0105), which keeps only that domain's models in memory; a record, label or Kafka
record of another domain sent to it is answered 400 naming the Service that learns it (nothing is committed). The
control events (`training.control`, `model.control`) change state in Redis and are taken for any domain: the
process of that domain follows within MODEL_SET_CHECK_S.

The request path, statuses and metrics are the middleware's (functions/middleware/app.py).
Run: `python -m functions.learn`.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import requests
from flask import Flask

from eventing.cloudevent_types import KAFKA_EVENT, MODEL_CONTROL, TRAINING_CONTROL, parse_event_type
from eventing.domain import Domain, NoLabels
from eventing.domains import DOMAINS, get_domain
from eventing.schema import ValidationError
from functions.middleware.app import (
    DependencyUnavailable,
    Event,
    UnsupportedEvent,
    create_app,
    event_data,
    make_event,
    reply,
    serve,
)
from functions.middleware.events import post_event
from functions.model_state import ab
from functions.model_state.batch_learner import BatchLearner
from functions.model_state.event_log import Appended, EventLog, KafkaPosition, LogEntry, LogLost, set_training
from functions.model_state.keys import connect
from functions.model_state.online_model import Outcome
from functions.model_state.registry import restore_if_empty
from functions.model_state.replica import DUPLICATES, ModelReplica, replicas_for, reseed, sync_replicas

log = logging.getLogger("coelho.functions.learn")

DOMAINS_ENV = "COELHO_DOMAINS"


def served_domains(environ: Mapping[str, str] | None = None) -> list[str]:
    """The domains this process learns, from COELHO_DOMAINS (comma- or space-separated; unset or empty: all of
    them, in the platform's order). ValueError naming the known domains for an unknown one: a misconfigured
    process must not start learning something else.

    >>> served_domains({"COELHO_DOMAINS": "eta"}), served_domains({}) == list(DOMAINS)
    (['eta'], True)
    >>> served_domains({"COELHO_DOMAINS": " tfd, eta tfd "})
    ['tfd', 'eta']
    """
    env = os.environ if environ is None else environ
    names = [n for n in re.split(r"[\s,]+", env.get(DOMAINS_ENV, "")) if n]
    if not names:
        return list(DOMAINS)
    out: list[str] = []
    for name in names:
        try:
            domain = get_domain(name).name
        except ValueError:
            raise ValueError(
                f"{DOMAINS_ENV}={env.get(DOMAINS_ENV)!r}: unknown domain {name!r}, one of {', '.join(DOMAINS)}"
            ) from None
        if domain not in out:
            out.append(domain)
    return out


def accepted_types(domains: Iterable[str]) -> list[str]:
    """The CloudEvent types a learn-one of `domains` takes: their records and labels, Kafka records, the controls."""
    chosen = [get_domain(n) for n in domains]
    return sorted(
        [d.type("record") for d in chosen]
        + [d.type("label") for d in chosen]
        + [KAFKA_EVENT, TRAINING_CONTROL, MODEL_CONTROL]
    )


ACCEPTED = accepted_types(DOMAINS)
CONTROL_REPLY = {
    "add": "model.changed",
    "remove": "model.changed",
    "promote": "model.promoted",
    "rollback": "model.promoted",
    "split": "split.changed",
}
_KAFKA_ID = re.compile(r"partition:(\d+)/offset:(\d+)")


class Committed(NamedTuple):
    """An event appended to its domain's log (or found there already: `appended.new` is False)."""

    domain: Domain
    log_kind: str
    clean: dict[str, Any]
    appended: Appended


class Learner:
    """The models this process learns, one `ModelReplica` per (domain, model), and the drift notifier.
    domains: the domains it learns (default: COELHO_DOMAINS, `served_domains`)."""

    def __init__(self, client: Any, domains: Iterable[str] | None = None) -> None:
        self.redis = client
        self.broker_url = os.environ.get("BROKER_URL")
        self.domains = served_domains() if domains is None else [get_domain(n).name for n in domains]
        self._drifts: queue.Queue[Event] = queue.Queue(maxsize=100)
        self.replicas = replicas_for(client, "learner", self.domains, on_drift=self._notify_drift)
        self.logs = {name: EventLog(client, get_domain(name)) for name in self.replicas}
        self.batch_learners = {name: BatchLearner(name, replicas) for name, replicas in self.replicas.items()}
        self.loaded = False
        self.load_error: str | None = None
        self._load_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._post_drifts, name="coelho-drift-poster", daemon=True).start()
        threading.Thread(target=self._watch_models, name="coelho-model-set", daemon=True).start()

    # --- start-up: snapshot or MLflow, then replay ----------------------------------------------
    def load(self) -> None:
        with self._load_lock:
            if self.loaded:
                return
            for replicas in self.replicas.values():
                for replica in replicas:
                    restore_if_empty(self.redis, replica)
                    replica.load_snapshot()
                    replica.catch_up()
            self.sync_models()
            self.loaded = True
            self.load_error = None

    # --- the live models (A/B testing) ------------------------------------------------------------
    def sync_models(self) -> None:
        """Start a replica for each model added to a domain's live set, drop the removed ones."""
        with self._sync_lock:
            for name in list(self.replicas):
                current = self.replicas[name]
                updated = sync_replicas(self.redis, get_domain(name), "learner", current, on_drift=self._notify_drift)
                if [r.model_name for r in updated] != [r.model_name for r in current] or any(
                    a is not b for a, b in zip(updated, current, strict=False)
                ):
                    self.replicas[name] = updated
                    self.batch_learners[name].replicas = updated
                    self.batch_learners[name].poke()

    def stop(self) -> None:
        """End this learner's background threads (the model-set watcher, the drift poster): it learns no more."""
        self._stopped.set()

    def _watch_models(self) -> None:
        while not self._stopped.wait(ab.MODEL_SET_CHECK_S):
            if not self.loaded:
                continue
            try:
                self.sync_models()
            except Exception as exc:  # Redis away: the replicas keep learning what they have, retried next time
                log.warning("live models not checked: %s", exc)

    def ready(self) -> None:
        """Readiness probe: Redis answers and the models are loaded."""
        self.redis.ping()
        self.ensure_loaded()

    def ensure_loaded(self) -> None:
        if not self.loaded:
            try:
                self.load()
            except Exception as exc:
                self.load_error = str(exc)
                raise DependencyUnavailable(f"loading model state: {exc}") from exc

    # --- one event ------------------------------------------------------------------------------
    def handle(self, event: Event) -> Event | None:
        ce_type = event.get_type()
        if ce_type == TRAINING_CONTROL:
            return self.control(event)
        if ce_type == MODEL_CONTROL:
            return self.model_control(event)
        kafka: KafkaPosition | None = None
        if ce_type == KAFKA_EVENT:
            topic = (event.get_source() or "").rpartition("#")[2]
            try:
                domain = get_domain(topic)
            except ValueError:
                raise UnsupportedEvent(
                    f"Kafka record from topic {topic!r}: no domain reads it (source {event.get_source()})"
                ) from None
            kind = "auto"
            kafka = kafka_position(event, topic)
        else:
            parsed = parse_event_type(ce_type)
            assert parsed is not None  # only accepted types reach the handler
            domain, kind = get_domain(parsed[0]), parsed[1]
        self.check_served(domain)
        quiet = not event.wants_reply
        committed = self.commit(
            domain, kind, event.get_source(), event.get_id(), event_data(event), kafka, direct=not quiet
        )
        if quiet:  # a learn Trigger: no `learned` reply, the applier thread learns it (the middleware answers 204)
            self.learn_later(committed)
            return None
        data = self.learn(committed)
        return reply(
            event,
            domain.type("learned"),
            domain.source("functions/learn"),
            data,
            domain=domain.name,
            partitionkey=committed.clean.get(domain.key_field),
        )

    def check_served(self, domain: Domain) -> None:
        """UnsupportedEvent (400, nothing committed) for a domain this process does not learn (COELHO_DOMAINS)."""
        if domain.name not in self.replicas:
            raise UnsupportedEvent(
                f"this learn-one learns {', '.join(self.replicas)} only ({DOMAINS_ENV}): send {domain.name} events "
                f"to coelho-learn-{domain.name}"
            )

    def commit(
        self,
        domain: Domain,
        kind: str,
        source: str | None,
        ce_id: str | None,
        data: Any,
        kafka: KafkaPosition | None,
        direct: bool = True,
    ) -> Committed:
        """Validate the event and append it to the domain's log (the commit point; dedup by source+id, Kafka
        partition/offset and the domain's event id). Nothing is changed if this raises.

        direct: this request applies the entry itself next (`apply`); else the domain's applier thread will
        (`learn_later`)."""
        self.check_served(domain)
        self.ensure_loaded()
        try:
            log_kind, clean = domain.classify(data, kind)  # record, unlabeled (awaiting its label) or label
        except NoLabels as err:
            raise UnsupportedEvent(str(err)) from None
        event_log = self.logs[domain.name]
        keys = event_log.dedup_keys(source, ce_id, clean, log_kind, kafka)
        replicas = self.replicas[domain.name]
        position = max((r.state.seq for r in replicas), default=0)
        try:
            appended = event_log.append(log_kind, clean, keys, kafka=kafka, position=position)
        except LogLost:  # Redis wiped under the models: re-seed it from them (or adopt who did), then append
            reseed(self.redis, domain, replicas)
            appended = event_log.append(log_kind, clean, keys, kafka=kafka)
        if appended.new and direct:  # concurrent requests with later entries wait for this one, not re-read the log
            for replica in replicas:
                replica.expect(appended.seq)
        return Committed(domain, log_kind, clean, appended)

    def learn_later(self, committed: Committed) -> None:
        """A committed entry no reply waits for (`?reply=none`): the domain's applier thread applies it, with the
        entries committed meanwhile, in one batch (ADR 0076). Durable already: the log is the commit point."""
        if not committed.appended.new:
            DUPLICATES.labels(committed.domain.name).inc()
            return
        self.batch_learners[committed.domain.name].poke()

    def learn(self, committed: Committed) -> dict[str, Any]:
        """Learn a committed entry with this process's models (a duplicate only counts): the `learned` reply data."""
        domain, log_kind, clean, appended = committed
        if not appended.new:
            DUPLICATES.labels(domain.name).inc()
            return {"domain": domain.name, "seq": appended.seq, "duplicate": True, "kind": log_kind}
        entry = LogEntry(appended.seq, log_kind, clean, appended.t_ms, appended.prev, appended.chain)
        models = []
        for replica in self.replicas[domain.name]:
            applied = replica.learn_committed(entry, appended.paused_at)
            mine = next((a for a in applied if a.seq == entry.seq), None)
            models.append(
                {
                    "model": replica.model_name,
                    "applied": mine is not None or replica.state.seq >= entry.seq,  # or by the applier thread
                    "learned": bool(mine and mine.learned),
                    "prediction": mine.prediction if mine else None,
                    "drift": bool(mine and mine.drift),
                    "events_learned": replica.state.events_learned,
                    "position": replica.state.seq,
                }
            )
        return {
            "domain": domain.name,
            "seq": appended.seq,
            "duplicate": False,
            "kind": log_kind,
            "paused": appended.paused_at is not None,
            "models": models,
        }

    def control(self, event: Event) -> Event:
        data = event_data(event) or {}
        if not isinstance(data, dict) or data.get("action") not in ("pause", "resume"):
            raise ValidationError({"action": "expected 'pause' or 'resume'"})
        try:
            domain = get_domain(str(data.get("domain")))
        except ValueError as exc:
            raise ValidationError({"domain": str(exc)}) from None
        status = set_training(self.redis, domain.name, data["action"])
        if data["action"] == "resume":
            for replica in self.replicas.get(domain.name, []):
                replica.catch_up()
        return reply(event, domain.type("learned"), domain.source("functions/learn"), status, domain=domain.name)

    def model_control(self, event: Event) -> Event:
        """A/B testing: add, remove, promote, rollback or split (functions/model_state/ab.py), then start or drop
        this process's replicas at once (the others follow within MODEL_SET_CHECK_S)."""
        data = event_data(event) or {}
        if not isinstance(data, dict):
            raise ValidationError({"data": "expected a JSON object with domain and action"})
        try:
            domain = get_domain(str(data.get("domain")))
        except ValueError as exc:
            raise ValidationError({"domain": str(exc)}) from None
        result = ab.control(self.redis, domain, data)  # Redis or MLflow down: 503, the sender retries
        if data.get("action") in ("add", "remove"):
            self.ensure_loaded()
            self.sync_models()
        kind = CONTROL_REPLY[str(data["action"])]
        return reply(event, domain.type(kind), domain.source("functions/learn"), result, domain=domain.name)

    # --- drift notifications: best effort, never blocking learning -----------------------------
    def _notify_drift(self, replica: ModelReplica, applied: Outcome) -> None:
        domain = replica.domain
        event = make_event(
            domain.type("drift"),
            domain.source("functions/learn"),
            {
                "domain": domain.name,
                "model": replica.model_name,
                "seq": applied.seq,
                "events_learned": replica.state.events_learned,
                "drifts": replica.state.drifts,
            },
            domain=domain.name,
        )
        try:
            self._drifts.put_nowait(event)
        except queue.Full:
            log.warning("drift notification dropped: queue full")

    def _post_drifts(self) -> None:
        session = requests.Session()
        while not self._stopped.is_set():
            try:
                event = self._drifts.get(timeout=1.0)
            except queue.Empty:
                continue
            if not self.broker_url:
                continue
            try:
                post_event(self.broker_url, event, session)
            except requests.RequestException as exc:
                log.warning("drift notification not delivered: %s", exc)


def kafka_position(event: Event, topic: str) -> KafkaPosition | None:
    """A KafkaSource record's partition, offset and record time (from the knativekafka* extensions, or its id
    `partition:P/offset:O`); None when it says neither. The time, epoch milliseconds zero-padded so that text order
    is time order, tells a redelivery (same record) from a recreated topic reusing the offset."""
    match = _KAFKA_ID.search(event.get_id() or "")
    partition = event.get_extension("knativekafkapartition") or (match.group(1) if match else None)
    offset = event.get_extension("knativekafkaoffset") or (match.group(2) if match else None)
    if partition is None or offset is None or not str(offset).isdigit():
        return None
    raw = event.attributes.get("time")
    when: datetime | None = raw if isinstance(raw, datetime) else None
    if isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            when = None
    stamp = f"{int(when.timestamp() * 1000):015d}" if when is not None and when.tzinfo is not None else ""
    return KafkaPosition(topic, str(partition), int(offset), stamp)


def create() -> Flask:
    client = connect()
    learner = Learner(client)
    try:
        learner.load()
    except Exception as exc:  # Redis or MLflow not up yet: readiness retries
        log.warning("model state not loaded yet: %s", exc)
    app = create_app("learn", learner.handle, accepts=accepted_types(learner.domains), ready=learner.ready)
    app.config["learner"] = learner
    from functions.model_state.metrics import register as export_model_metrics

    export_model_metrics(client)
    return app


if __name__ == "__main__":
    serve(create, default_server="granian")  # ADR 0075
