"""Seeded event streams for the function tests and benchmarks: the producers' own generators (one source of
synthetic data for the whole platform), validated by the domain's schema. Same seed, same stream."""

from __future__ import annotations

from typing import Any

import redis

import producers
from eventing.domains import get_domain


def events(domain: str, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` clean record events of `domain` (validated by the domain's schema)."""
    d = get_domain(domain)
    return [d.validate(raw) for raw in producers.records(domain, n, seed=seed)]


def teach(client: redis.Redis, n: int, source: str) -> dict[str, Any]:
    """Fill each domain's log with `n` events through the model store, as learn-one would, and snapshot them;
    returns the learner replica of each domain."""
    from eventing.domains import DOMAINS
    from functions.model_state.event_log import LogEntry
    from functions.model_state.replica import ModelReplica

    replicas = {}
    for name, domain in DOMAINS.items():
        replica = ModelReplica(client, domain, role="learner")
        for i, event in enumerate(events(name, n, seed=1)):
            appended = replica.log.append(
                "record", event, replica.log.dedup_keys(source, f"{name}-{i}", event, "record")
            )
            replica.learn_committed(LogEntry(appended.seq, "record", event, appended.t_ms), None)
        replica.write_snapshot(replica.state)
        replicas[name] = replica
    return replicas
