"""Replay a recorded JSONL stream: one event per line, in file order (hence in order per key).

A line is either the event data itself (a transaction, a trip, an interaction: what `coelho produce --output`
writes and what the original data sets hold) or a structured CloudEvent (`{"specversion": "1.0", "type": ...,
"data": {...}}`), whose id, type kind and time are kept. Data that does not fit the domain's schema is skipped
with the reason (the field and why); everything else is sent exactly as recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from eventing.cloudevent_types import parse_event_type
from eventing.domain import Domain
from eventing.schema import Purpose, ValidationError
from producers.generators.base import GeneratedEvent

log = logging.getLogger(__name__)


class InvalidLine(Exception):
    """A line that cannot be replayed; `line` is its 1-based number."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


def _event_time(data: dict[str, Any], fallback: float) -> float:
    stamp = data.get("timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return fallback


def parse_line(domain: Domain, number: int, line: str) -> GeneratedEvent:
    """The event of one JSONL line, or InvalidLine naming what is wrong."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidLine(number, f"not JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise InvalidLine(number, "not a JSON object")
    kind, event_id = "record", None
    if "specversion" in obj and isinstance(obj.get("data"), dict):
        parsed = parse_event_type(str(obj.get("type", "")))
        if parsed is not None and parsed[0] == domain.name:
            kind = parsed[1]
        event_id = obj.get("id")
        data = obj["data"]
    else:
        data = obj
    purpose: Purpose = (
        "label" if kind == "label" else "unlabeled" if domain.target and domain.target not in data else "record"
    )
    try:
        domain.validate(data, purpose=purpose)
    except ValidationError as err:
        raise InvalidLine(number, str(err)) from None
    key = str(data[domain.key_field])
    event_id = str(event_id or data.get(domain.id_field) or f"replay-{number}")
    return GeneratedEvent(kind, data, key, event_id, _event_time(data, time.time()))


def replay_events(
    domain: Domain, path: str | Path, errors: list[InvalidLine] | None = None
) -> Iterator[GeneratedEvent]:
    """The events of a JSONL file in order; invalid lines are logged, appended to `errors` and skipped."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield parse_line(domain, number, line)
            except InvalidLine as err:
                log.warning("replay %s: skipped %s", path, err)
                if errors is not None:
                    errors.append(err)
