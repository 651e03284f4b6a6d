"""docs/events.md, generated from the code: the CloudEvent types and sources of every domain, each domain's
event schema and the data of its prediction reply. `python -m eventing.catalog > docs/events.md` rewrites it; a
test checks the file matches.
"""

from __future__ import annotations

from eventing.cloudevent_types import (
    BATCH_STUDY_REQUESTED,
    CHAT_ANSWER,
    CHAT_REQUESTED,
    CHECKPOINT_REQUESTED,
    EVENT_KINDS,
    KAFKA_EVENT,
    LAKE_MAINTENANCE_COMPLETED,
    LAKE_MAINTENANCE_REQUESTED,
    MODEL_CONTROL,
    SQL_REQUESTED,
    SQL_RESULT,
    TRAINING_CONTROL,
    TYPE_PREFIX,
)
from eventing.domain import Domain
from eventing.domains import DOMAINS
from eventing.schema import Field, iter_leaf_fields

# kind -> the component that emits it, as it appears in the source /coelho/<component>/<domain>
EMITTERS: dict[str, str] = {
    "record": "producers",
    "prediction.requested": "dashboard",
    "prediction": "functions/predict",
    "learned": "functions/learn",
    "label": "producers",
    "checkpoint": "functions/checkpoint",
    "drift": "functions/learn",
    "model.changed": "functions/learn",
    "model.promoted": "functions/learn",
    "split.changed": "functions/learn",
    "preference.recorded": "dashboard",
}


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def _allowed(f: Field) -> str:
    if f.choices:
        return ", ".join(f.choices)
    if f.minimum is not None or f.maximum is not None:
        low = "" if f.minimum is None else f"{f.minimum:g}"
        high = "" if f.maximum is None else f"{f.maximum:g}"
        return f"{low} .. {high}"
    return ""


def _field_rows(domain: Domain) -> list[str]:
    rows = []
    for path, f in domain.leaf_fields():
        key = " (entity key)" if path == domain.key_field else " (event id)" if path == domain.id_field else ""
        required = "yes" if f.required else "no"
        rows.append(
            f"| `{path}` | {f.type} | {f.role}{key} | {_cell(f.unit or '')} | {_cell(_allowed(f))} | {required} | {_cell(f.description)} |"
        )
    return rows


def _reply_rows(domain: Domain) -> list[str]:
    rows = []
    for path, f in iter_leaf_fields(domain.reply_fields()):
        always = "yes" if f.required else "no"
        null = "yes" if f.nullable else "no"
        rows.append(
            f"| `{path}` | {f.type} | {f.role} | {_cell(f.unit or '')} | {_cell(_allowed(f))} | {always} | {null} | {_cell(f.description)} |"
        )
    return rows


def render() -> str:
    lines = [
        "# CloudEvents of COELHO RealTime",
        "",
        "Generated from `eventing/cloudevent_types.py` and `eventing/domains/` by `python -m eventing.catalog > docs/events.md`;",
        "`tests/eventing/test_event_catalog.py` fails when this file and the code disagree.",
        "",
        f"- type = `{TYPE_PREFIX}.<domain>.<kind>`, source = `/coelho/<component>/<domain>`.",
        "- Every event carries the extension attribute `domain`; an event about one entity also carries `partitionkey`,",
        "  the domain's entity key (the Kafka record key: events of one key stay in order).",
        "- In Kafka, a record is a binary-mode CloudEvent: the value is the event data as JSON, the key is the entity",
        "  key, headers `content-type: application/json` and `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`,",
        "  `ce_domain`, `ce_partitionkey`. A plain consumer reads JSON values with keys; a KafkaSource passes them on as",
        "  the domain's own CloudEvents.",
        "",
        "## Event types and sources",
        "",
        "| domain | topic | entity key | kind | CloudEvent type | source | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in DOMAINS.values():
        for kind, meaning in EVENT_KINDS.items():
            if kind == "label" and d.target is None:
                continue  # a domain without a target has no labels
            lines.append(
                f"| {d.name} | `{d.topic}` | `{d.key_field}` | {kind} | `{d.type(kind)}` | `{d.source(EMITTERS[kind])}` | {_cell(meaning)} |"
            )
    lines += [
        f"| all | | | checkpoint requested | `{CHECKPOINT_REQUESTED}` | `/apis/v1/namespaces/<ns>/pingsources/<name>` or a client | "
        "ask the checkpoint function to snapshot the models (PingSource schedule or on demand) |",
        f"| all | | | training control | `{TRAINING_CONTROL}` | `/coelho/dashboard` or `/coelho/cli` | pause / resume learning of a domain |",
        f"| all | | | model control | `{MODEL_CONTROL}` | `/coelho/dashboard` or `/coelho/cli` | A/B testing: add, remove, promote, "
        "rollback a domain's models or split its traffic (data: domain, action, model, params, target, weights) |",
        f"| all | | | chat requested | `{CHAT_REQUESTED}` | `/coelho/dashboard` or a client | a question to the assistant "
        "(data: session_id, message, page) |",
        f"| all | | | chat answer | `{CHAT_ANSWER}` | `/coelho/functions/chat` | the assistant's whole answer, with the tools it used |",
        f"| all | | | SQL requested | `{SQL_REQUESTED}` | a client | a read-only SQL query over the lake's Delta tables "
        "(data: query, optional limit, version or as_of) |",
        f"| all | | | SQL result | `{SQL_RESULT}` | `/coelho/functions/sql` | the query's columns, rows, row count, "
        "whether rows were cut at the limit, and the Delta version of each table read |",
        f"| all | | | lake maintenance requested | `{LAKE_MAINTENANCE_REQUESTED}` | "
        "`/apis/v1/namespaces/<ns>/pingsources/<name>` or `/coelho/cli` | ask the lake function to compact, vacuum and "
        "checkpoint its Delta tables (PingSource schedule or on demand; data: optional tables) |",
        f"| all | | | lake maintenance completed | `{LAKE_MAINTENANCE_COMPLETED}` | `/coelho/functions/lake` | "
        "what maintenance did to each table (files compacted and vacuumed, version) |",
        f"| all | | | batch study requested | `{BATCH_STUDY_REQUESTED}` | `/coelho/cli` or any client | run "
        "`coelho batch train` as a Job (JobSink): data domain, optional version, model, rows, truth_seed, online |",
        f"| all | | | Kafka record | `{KAFKA_EVENT}` | `/apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>` | "
        "what a KafkaSource emits for a record that is not a CloudEvent |",
        "",
    ]
    for d in DOMAINS.values():
        lines += [
            f"## {d.title} ({d.name}): event data",
            "",
            f"Topic `{d.topic}`, entity key `{d.key_field}`, event id `{d.id_field}`, target `{d.target or 'none'}`.",
            "",
            "| field | type | role | unit | allowed | required | description |",
            "|---|---|---|---|---|---|---|",
            *_field_rows(d),
            "",
        ]
    lines += [
        "## Prediction replies",
        "",
        "Generated from `Domain.reply_fields()` (`eventing/domain.py`, each domain's `prediction_fields`).",
        "The data of a `prediction` event, and of the JSON answer of `POST /predict/<domain>`: the fields every reply",
        "has, the request's event id when it carries one, then the model's answer (role prediction).",
        '"always" no: absent when the request has no event id; "null" yes: the value may be null.',
        "",
    ]
    for d in DOMAINS.values():
        lines += [
            f"### {d.title} ({d.name}): `{d.type('prediction')}`",
            "",
            "| field | type | role | unit | allowed | always | null | description |",
            "|---|---|---|---|---|---|---|---|",
            *_reply_rows(d),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
