"""Seeded event streams for the function tests and benchmarks: the producers' own generators (one source of
synthetic data for the whole platform), validated by the domain's schema. Same seed, same stream."""

from __future__ import annotations

from typing import Any

import producers
from eventing.domains import get_domain


def events(domain: str, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` clean record events of `domain` (validated by the domain's schema)."""
    d = get_domain(domain)
    return [d.validate(raw) for raw in producers.records(domain, n, seed=seed)]
