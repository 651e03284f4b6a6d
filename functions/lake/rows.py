"""One CloudEvent of a domain as one row of a lake table, with the columns the domain declares.

Each domain has a records table (`transactions`, `trips`, `customer_interactions`: functions/lake/tables.py) and,
when it has a target, a labels table `<table>_labels` (append-only: a delayed label is a row of its own, joined to
its record by the domain's id field; no row is ever updated). Columns, in order:

- every leaf field of the domain's schema (a labels table: its id field, entity key and target), nested fields
  flattened with `_`: `origin.lat` -> `origin_lat`. Flat columns read the same in every SQL engine (no struct
  access), and `LakeTable` refuses a domain whose flat names would collide. A record without its target (its
  label comes later) has the target null;
- `ce_id`, `ce_source`, `ce_type`, `ce_time`: the CloudEvent the row came in;
- `kafka_partition`, `kafka_offset`: the Kafka record, when the event says (KafkaSource extensions or id);
- `arrived_at`: when the lake function received it;
- `event_date` (YYYY-MM-DD, the partition column): the UTC date of the event's own timestamp; for an event without
  one (a label), its CloudEvent time, else its arrival.

A row's identities are the domain's id (one row per event id, per table) and its CloudEvent source and id; both are
deterministic for a redelivered event, and so is its `event_date`, which is where duplicates are looked for.

    >>> table = lake_table("eta", "record")
    >>> table.name, [c.name for c in table.columns][4:7], flat_name("origin.lat")
    ('trips', ['origin_lat', 'origin_lon', 'destination_lat'], 'origin_lat')
    >>> lake_table("tfd", "label").name, [c.name for c in lake_table("tfd", "label").columns][:3]
    ('transactions_labels', ['transaction_id', 'user_id', 'is_fraud'])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from eventing.cloudevent_types import KAFKA_EVENT, parse_event_type
from eventing.domain import Domain, NoLabels
from eventing.domains import DOMAINS, get_domain
from eventing.schema import Field, FieldType, value_at
from functions.lake.tables import table_for
from functions.middleware.events import UnsupportedEvent

Kind = Literal["record", "label"]
LABELS_SUFFIX = "_labels"
PARTITION_COLUMN = "event_date"
# Columns every table has after the domain's own: (name, type).
META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ce_id", "string"),
    ("ce_source", "string"),
    ("ce_type", "string"),
    ("ce_time", "timestamp"),
    ("kafka_partition", "integer"),
    ("kafka_offset", "integer"),
    ("arrived_at", "timestamp"),
    (PARTITION_COLUMN, "string"),
)
_KAFKA_ID = re.compile(r"partition:(\d+)/offset:(\d+)")


def flat_name(path: str) -> str:
    """The column of a leaf field path: `origin.lat` -> `origin_lat`."""
    return path.replace(".", "_")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a FieldType but "object" (leaves only)
    path: str | None = None  # the field path in the event (None: a metadata column)


@dataclass(frozen=True)
class LakeTable:
    """A lake table: its name, domain, kind and columns (see the module's docstring)."""

    name: str
    domain: Domain
    kind: Kind
    columns: tuple[Column, ...]
    id_column: str
    key_column: str

    def arrow_schema(self) -> Any:
        """The table's schema as a `pyarrow.Schema` (every column nullable)."""
        import pyarrow as pa

        types = {
            "string": pa.string(),
            "integer": pa.int64(),
            "number": pa.float64(),
            "boolean": pa.bool_(),
            "timestamp": pa.timestamp("us", tz="UTC"),
        }
        return pa.schema([pa.field(c.name, types[c.type], nullable=True) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@cache
def lake_table(domain_name: str, kind: Kind) -> LakeTable:
    """The table a domain's `record` or `label` events go to."""
    domain = get_domain(domain_name)
    base = table_for(domain.name)
    leaves: list[tuple[str, Field]] = domain.leaf_fields()
    if kind == "label":
        if domain.target is None:
            raise ValueError(f"{domain.name} has no target, hence no labels table")
        wanted = (domain.id_field, domain.key_field, domain.target)
        leaves = sorted((p for p in leaves if p[0] in wanted), key=lambda p: wanted.index(p[0]))
    columns = [Column(flat_name(path), f.type, path) for path, f in leaves]
    columns += [Column(name, kind_) for name, kind_ in META_COLUMNS]
    names = [c.name for c in columns]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"{domain.name}: lake columns {clashes} collide (flattened field names or metadata columns)")
    return LakeTable(
        name=base + (LABELS_SUFFIX if kind == "label" else ""),
        domain=domain,
        kind=kind,
        columns=tuple(columns),
        id_column=flat_name(domain.id_field),
        key_column=flat_name(domain.key_field),
    )


def all_tables() -> list[LakeTable]:
    """Every lake table: each domain's records, and its labels when it has a target."""
    out = []
    for domain in DOMAINS.values():
        out.append(lake_table(domain.name, "record"))
        if domain.target is not None:
            out.append(lake_table(domain.name, "label"))
    return out


@dataclass
class Row:
    """A row ready for its table, and what the writer needs besides: identities, partition, arrival, the raw event."""

    table: LakeTable
    values: dict[str, Any]
    event_date: str
    dated_by_event: bool  # event_date came from the event (its timestamp or CloudEvent time), not the arrival clock
    identities: tuple[str, ...]
    arrived: float  # time.time() at arrival
    raw: dict[str, Any] = field(default_factory=dict)  # the CloudEvent as received (attributes and data)


def identities(table: LakeTable, event_id: Any, ce_source: str | None, ce_id: str | None) -> tuple[str, ...]:
    """The identities a duplicate of this event shares with it.

    >>> identities(lake_table("tfd", "record"), "t1", "/p", "9")
    ('id:t1', 'ce:/p|9')
    """
    out = [f"id:{event_id}"]
    if ce_source and ce_id:
        out.append(f"ce:{ce_source}|{ce_id}")
    return tuple(out)


def route(ce_type: str, source: str | None) -> tuple[Domain, str]:
    """(domain, kind) of an accepted event type: kind `record`, `label`, or `auto` (a KafkaSource record: the domain
    comes from the topic after `#` in the source, record or label from its data)."""
    if ce_type == KAFKA_EVENT:
        topic = (source or "").rpartition("#")[2]
        try:
            return get_domain(topic), "auto"
        except ValueError:
            raise UnsupportedEvent(f"Kafka record from topic {topic!r}: no domain reads it (source {source})") from None
    parsed = parse_event_type(ce_type)
    if parsed is None or parsed[1] not in ("record", "label") or parsed[0] not in DOMAINS:
        raise UnsupportedEvent(f"the lake takes records and labels, not {ce_type!r}")
    return get_domain(parsed[0]), parsed[1]


def classify(domain: Domain, kind: str, data: Any) -> tuple[Kind, dict[str, Any]]:
    """(table kind, clean event): a record (its target may come later: null), or a label (`Domain.classify`)."""
    try:
        event_kind, clean = domain.classify(data, kind)
    except NoLabels as err:
        raise UnsupportedEvent(str(err)) from None
    return ("label" if event_kind == "label" else "record"), clean


def _as_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def event_time_path(domain: Domain) -> str | None:
    """The field holding an event's own time: the first top-level timestamp field."""
    return next((f.name for f in domain.fields if f.type == "timestamp"), None)


def to_row(
    ce_type: str,
    ce_source: str,
    ce_id: str,
    data: Any,
    *,
    ce_time: datetime | None = None,
    extensions: Mapping[str, Any] | None = None,
    arrived: float,
) -> Row:
    """The row of one CloudEvent, or UnsupportedEvent / ValidationError (HTTP 400) saying what is wrong.

    >>> from producers import generate
    >>> event = next(iter(generate("tfd", count=1, seed=3)))
    >>> row = to_row("com.coelho.realtime.tfd.record", "/coelho/producers/tfd", "e1", event.data, arrived=0.0)
    >>> row.table.name, row.values["location_lat"] == event.data["location"]["lat"], row.identities[1]
    ('transactions', True, 'ce:/coelho/producers/tfd|e1')
    >>> row.event_date == event.data["timestamp"][:10], row.dated_by_event
    (True, True)
    """
    extensions = extensions or {}
    domain, kind = route(ce_type, ce_source)
    table_kind, clean = classify(domain, kind, data)
    table = lake_table(domain.name, table_kind)
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.path is None:
            continue
        value = value_at(clean, column.path)
        values[column.name] = _as_time(value) if column.type == "timestamp" else value
    partition, offset = extensions.get("knativekafkapartition"), extensions.get("knativekafkaoffset")
    if ce_type == KAFKA_EVENT and (partition is None or offset is None):
        match = _KAFKA_ID.search(ce_id or "")
        if match:
            partition, offset = match.group(1), match.group(2)
    arrived_at = datetime.fromtimestamp(arrived, UTC)
    time_path = event_time_path(domain)
    own_time = _as_time(clean.get(time_path)) if time_path and table_kind == "record" else None
    dated = own_time or ce_time
    event_date = (dated or arrived_at).astimezone(UTC).date().isoformat()
    values.update(
        ce_id=ce_id,
        ce_source=ce_source,
        ce_type=ce_type,
        ce_time=_as_time(ce_time),
        kafka_partition=_int_or_none(partition),
        kafka_offset=_int_or_none(offset),
        arrived_at=arrived_at,
        event_date=event_date,
    )
    raw = {
        "id": ce_id,
        "source": ce_source,
        "type": ce_type,
        "time": ce_time.isoformat() if ce_time else None,
        "extensions": dict(extensions),
        "data": data,
    }
    return Row(
        table,
        values,
        event_date,
        dated is not None,
        identities(table, clean.get(domain.id_field), ce_source, ce_id),
        arrived,
        raw,
    )


def arrow_table(table: LakeTable, rows: list[Row], columns: list[str] | None = None) -> Any:
    """The rows as a `pyarrow.Table` of the table's schema (only `columns`, if given)."""
    import pyarrow as pa

    schema = table.arrow_schema()
    names = columns or table.column_names
    return pa.table(
        {name: pa.array([r.values.get(name) for r in rows], type=schema.field(name).type) for name in names}
    )


__all__ = [
    "LABELS_SUFFIX",
    "META_COLUMNS",
    "PARTITION_COLUMN",
    "Column",
    "FieldType",
    "Kind",
    "LakeTable",
    "Row",
    "all_tables",
    "arrow_table",
    "classify",
    "flat_name",
    "identities",
    "lake_table",
    "route",
    "to_row",
]
