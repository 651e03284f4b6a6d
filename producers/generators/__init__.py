"""The synthetic stream of each domain, and one realistic record on demand (the dashboard's "Randomize").

>>> from producers.generators import make_generator
>>> events = list(make_generator("tfd", seed=7).take(3))
>>> [e.kind for e in events], events[0].key == events[0].data["user_id"]
(['record', 'record', 'record'], True)
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from eventing.domains import get_domain
from producers.generators.base import GeneratedEvent, StreamGenerator
from producers.generators.ecci import InteractionGenerator
from producers.generators.eta import TripGenerator
from producers.generators.tfd import TransactionGenerator

GENERATORS: dict[str, type[StreamGenerator]] = {
    "tfd": TransactionGenerator,
    "eta": TripGenerator,
    "ecci": InteractionGenerator,
}


def make_generator(
    domain: str,
    seed: int | None = None,
    start: datetime | str | float | None = None,
    drift_at: int | None = None,
    delayed_labels: bool = False,
) -> StreamGenerator:
    """The generator of `domain` (short name or topic). `delayed_labels` applies to tfd only."""
    name = get_domain(domain).name
    if name == "tfd":
        return TransactionGenerator(seed=seed, start=start, drift_at=drift_at, delayed_labels=delayed_labels)
    if delayed_labels:
        raise ValueError(f"delayed labels exist for tfd only: {name} has no label to delay")
    return GENERATORS[name](seed=seed, start=start, drift_at=drift_at)


def sample_record(domain: str, rng: random.Random | None = None) -> dict[str, Any]:
    """One realistic record of `domain`, timestamped now (for forms and examples)."""
    rng = rng or random.Random()
    generator = make_generator(domain, seed=rng.getrandbits(48), start="now")
    skip = rng.randrange(20)  # not always the first event of a fresh stream (an ECCI session start)
    for event in generator.take(skip + 1):
        record = event
    return dict(record.data)


__all__ = ["GENERATORS", "GeneratedEvent", "StreamGenerator", "make_generator", "sample_record"]
