"""CloudEvent types and sources: one naming convention for the whole platform.

type   = com.coelho.realtime.<domain>.<kind>      e.g. com.coelho.realtime.tfd.prediction.requested
source = /coelho/<component>/<domain>             e.g. /coelho/producers/tfd, /coelho/functions/learn/tfd

Every event also carries the extension attributes `domain` (tfd, eta, ecci) and, when it concerns one entity,
`partitionkey` (the domain's entity key), which Triggers filter and order on.

>>> event_type("tfd", "prediction.requested")
'com.coelho.realtime.tfd.prediction.requested'
>>> parse_event_type("com.coelho.realtime.eta.record")
('eta', 'record')
"""

from __future__ import annotations

TYPE_PREFIX = "com.coelho.realtime"

# kind -> who emits it and what it means (the table in docs/events.md is generated from this).
EVENT_KINDS: dict[str, str] = {
    "record": "producers: one domain event (transaction, trip, interaction); learn-one learns from it",
    "prediction.requested": "dashboard or any client: features to predict from; predict-one answers",
    "prediction": "predict-one: the reply to a prediction request (also the reply body of a plain POST)",
    "learned": "learn-one: reply to a direct request after the event was applied (sequence number, what each model did); the learn Triggers ask for none",
    "label": "producers (delayed-label mode): the late target for an earlier record, e.g. a chargeback",
    "checkpoint": "checkpoint: a model snapshot was registered in MLflow (model version, events learned)",
    "drift": "learn-one: the model's drift detector fired on its error stream",
    "model.changed": "learn-one: reply to a model.control add or remove; the domain's live models changed (and where a new one starts)",
    "model.promoted": "learn-one: reply to a model.control promote or rollback; the champion alias moved",
    "split.changed": "learn-one: reply to a model.control split; predict-one's traffic split between models changed",
    "preference.recorded": "dashboard: a person preferred one model's answer to another's (A/B comparison)",
}

# Platform-wide types (not tied to one domain).
CHECKPOINT_REQUESTED = f"{TYPE_PREFIX}.checkpoint.requested"  # PingSource schedule or on demand
TRAINING_CONTROL = f"{TYPE_PREFIX}.training.control"  # pause / resume learning of a domain
MODEL_CONTROL = f"{TYPE_PREFIX}.model.control"  # add / remove / promote / rollback / split a domain's models
CHAT_REQUESTED = f"{TYPE_PREFIX}.chat.requested"  # a question to the assistant (chat function)
CHAT_ANSWER = f"{TYPE_PREFIX}.chat.answer"  # the assistant's whole answer (reply to chat.requested)
SQL_REQUESTED = f"{TYPE_PREFIX}.sql.requested"  # a read-only SQL query over the lake (sql function)
SQL_RESULT = f"{TYPE_PREFIX}.sql.result"  # its columns and rows (reply to sql.requested)
KAFKA_EVENT = "dev.knative.kafka.event"  # what a KafkaSource emits for a record that is not a CloudEvent
LAKE_MAINTENANCE_REQUESTED = f"{TYPE_PREFIX}.lake.maintenance.requested"  # compact, vacuum, checkpoint the lake
LAKE_MAINTENANCE_COMPLETED = f"{TYPE_PREFIX}.lake.maintenance.completed"  # the lake function's reply to it
BATCH_STUDY_REQUESTED = f"{TYPE_PREFIX}.batch.study.requested"  # train a batch study on a lake table version


def event_type(domain: str, kind: str) -> str:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}: one of {', '.join(EVENT_KINDS)}")
    return f"{TYPE_PREFIX}.{domain}.{kind}"


def parse_event_type(ce_type: str) -> tuple[str, str] | None:
    """(domain, kind) of a platform event type, or None for a type outside the convention."""
    prefix = TYPE_PREFIX + "."
    if not ce_type.startswith(prefix):
        return None
    domain, _, kind = ce_type[len(prefix) :].partition(".")
    if kind not in EVENT_KINDS:
        return None
    return domain, kind


def event_source(component: str, domain: str | None = None) -> str:
    return f"/coelho/{component}" + (f"/{domain}" if domain else "")
