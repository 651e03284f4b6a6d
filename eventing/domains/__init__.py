"""The three live domains. `get_domain` accepts a short name ("tfd") or a Kafka topic name."""

from __future__ import annotations

from eventing.domain import Domain
from eventing.domains.ecci import DOMAIN as ECCI
from eventing.domains.eta import DOMAIN as ETA
from eventing.domains.tfd import DOMAIN as TFD

DOMAINS: dict[str, Domain] = {d.name: d for d in (TFD, ETA, ECCI)}
BY_TOPIC: dict[str, Domain] = {d.topic: d for d in DOMAINS.values()}


def get_domain(name: str) -> Domain:
    """The domain called `name` (short name or topic), or ValueError listing the known ones."""
    found = DOMAINS.get(name) or BY_TOPIC.get(name)
    if found is None:
        raise ValueError(f"unknown domain {name!r}: one of {', '.join(DOMAINS)}")
    return found


__all__ = ["DOMAINS", "BY_TOPIC", "ECCI", "ETA", "TFD", "Domain", "get_domain"]
