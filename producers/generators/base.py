"""What every synthetic stream shares: a seeded random source, an event-time clock, ids, and the event shape.

A generator is an iterator of `GeneratedEvent`s. Everything it draws comes from one `random.Random(seed)`, and
its clock starts at `start` and advances by random gaps, so a seed and a start time give the same stream,
ids and timestamps included. The clock runs faster than the wall clock (a simulated week passes in some tens
of thousands of events) so that hour-of-day and weekday effects show up in any stream of useful length.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eventing.domain import Domain

# Start of the clock of a seeded stream when no start is given: a Monday, so weekday effects start at day one.
SEEDED_START = datetime(2026, 1, 5, tzinfo=UTC)

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def hour_of(t: float) -> int:
    """Hour of day (UTC, the simulated city's local time) of an epoch time."""
    return int(t // 3600) % 24


def weekday_of(t: float) -> int:
    """0 = Monday ... 6 = Sunday (1970-01-01 was a Thursday)."""
    return (int(t // 86400) + 3) % 7


def iso(t: float) -> str:
    """The ISO 8601 form `Domain.validate` returns for a UTC time, so a generated event is already clean."""
    return datetime.fromtimestamp(t, UTC).isoformat()


def to_epoch(start: datetime | str | float | None, seeded: bool) -> float:
    if start is None or start == "":
        return SEEDED_START.timestamp() if seeded else time.time()
    if isinstance(start, int | float):
        return float(start)
    if isinstance(start, str):
        if start == "now":
            return time.time()
        start = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return start.timestamp()


@dataclass(slots=True)
class GeneratedEvent:
    """One event of a stream: its CloudEvent kind, data, entity key, id and event time.

    `truth` holds the generator's hidden factors for this event (fraud pattern, incident, customer segment):
    kept for evaluation and tests, never written to Kafka.
    """

    kind: str  # "record" or "label"
    data: dict[str, Any]
    key: str
    id: str
    time: float  # event time, epoch seconds
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def timestamp(self) -> str:
        return iso(self.time)


class StreamGenerator:
    """Base of the three domain generators: seeded randomness, the event clock, ids and drift."""

    domain: Domain

    def __init__(
        self, seed: int | None = None, start: datetime | str | float | None = None, drift_at: int | None = None
    ) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(48)
        self.rng = random.Random(self.seed)
        self.now = to_epoch(start, seeded=seed is not None)
        self.drift_at = drift_at
        self.records = 0  # records emitted so far (labels are not counted)

    # --- shared helpers ------------------------------------------------------------------------------
    @property
    def drifted(self) -> bool:
        """True once `drift_at` records were emitted: the generator then follows its second concept."""
        return self.drift_at is not None and self.records >= self.drift_at

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def advance(self, mean_gap_s: float, intensity: tuple[float, ...]) -> float:
        """Move the clock by an exponential gap whose rate follows the hour-of-day `intensity` profile."""
        self.now += self.rng.expovariate(intensity[hour_of(self.now)] / mean_gap_s)
        return self.now

    def gauges(self) -> dict[str, float]:
        """Figures the producer exports as Prometheus gauges (fraud ratio, active sessions)."""
        return {}

    # --- the stream ----------------------------------------------------------------------------------
    def next_record(self) -> GeneratedEvent:
        raise NotImplementedError

    def next_events(self) -> list[GeneratedEvent]:
        """The next record, preceded by any other events due before it (delayed labels)."""
        event = self.next_record()
        self.records += 1
        return [event]

    def finish(self) -> list[GeneratedEvent]:
        """Events still pending when the stream stops (labels not yet due)."""
        return []

    def take(self, count: int | None = None) -> Iterator[GeneratedEvent]:
        """`count` records (forever if None), with the events they bring, then whatever is still pending."""
        while count is None or self.records < count:
            yield from self.next_events()
        yield from self.finish()

    def __iter__(self) -> Iterator[GeneratedEvent]:
        return self.take(None)
