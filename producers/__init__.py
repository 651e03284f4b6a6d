"""The three live streams (tfd, eta, ecci) and the replay of recorded ones, into Kafka.

Library use:

    >>> import producers
    >>> events = list(producers.generate("eta", seed=1, count=2))
    >>> [e.kind for e in events], sorted(events[0].data)[:3]
    (['record', 'record'], ['day_of_week', 'destination', 'driver_id'])

`producers.produce("tfd", rate=50, bootstrap_servers="127.0.0.1:9092")` sends a stream to its topic;
`python -m producers tfd` / `coelho produce tfd` do the same from the command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from producers.generators import GENERATORS, GeneratedEvent, make_generator, sample_record


def generate(
    domain: str,
    seed: int | None = None,
    count: int | None = None,
    *,
    start: datetime | str | float | None = None,
    drift_at: int | None = None,
    delayed_labels: bool = False,
) -> Iterator[GeneratedEvent]:
    """`domain`'s synthetic stream: `count` records (forever if None) and, with delayed labels, their labels."""
    return make_generator(domain, seed=seed, start=start, drift_at=drift_at, delayed_labels=delayed_labels).take(count)


def records(domain: str, count: int, seed: int | None = None, **options: Any) -> list[dict[str, Any]]:
    """The data of `count` generated records (convenient for tests and notebooks)."""
    return [e.data for e in generate(domain, seed, count, **options) if e.kind == "record"]


def produce(domain: str, **options: Any) -> Any:
    """Send `domain`'s stream to Kafka; see producers.producer.produce for the options."""
    from producers.producer import produce as run

    return run(domain, **options)


__all__ = ["GENERATORS", "GeneratedEvent", "generate", "make_generator", "produce", "records", "sample_record"]
