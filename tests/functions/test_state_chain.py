"""Redis losing its last acknowledged writes (appendfsync everysec) reuses their sequence numbers for other events: a
replica that learned the lost entries detects it by the log's hash chain and ends equal to a replay of what the log
holds (functions/model_state/event_log.py, replica.py)."""

from __future__ import annotations

from typing import Any

import redis
from prometheus_client import REGISTRY

from eventing.domains import get_domain
from functions.model_state.replica import ModelReplica
from tests.functions.streams import events
from tests.functions.test_model_state import assert_same_model, replay, send


def lose_last_writes(client: Any, domain: str, keep: int) -> None:
    """What a crash that loses the last writes leaves: the log (its last id too), its seq and chain as at `keep`."""
    log_key = f"coelho:{domain}:log"
    kept = client.xrange(log_key, max=f"{keep}-0")
    client.delete(log_key)
    for entry_id, fields in kept:
        client.xadd(log_key, fields, id=entry_id)
    client.set(f"coelho:{domain}:seq", keep)
    client.set(f"coelho:{domain}:chain", kept[-1][1][b"h"])


def diverged() -> float:
    return REGISTRY.get_sample_value("coelho_model_log_lost_total", {"domain": "tfd", "outcome": "diverged"}) or 0.0


def test_a_replica_that_learned_lost_entries_replays_what_the_log_holds(redis_url: str) -> None:
    domain = get_domain("tfd")
    first, lost, after = events("tfd", 30, seed=101), events("tfd", 5, seed=102), events("tfd", 10, seed=103)
    probes = events("tfd", 10, seed=104)
    writer = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    follower = ModelReplica(redis.Redis.from_url(redis_url), domain)
    for i, event in enumerate(first + lost):
        send(writer, event, f"a-{i}")
    follower.catch_up()
    assert follower.state.seq == 35
    client = redis.Redis.from_url(redis_url)
    lose_last_writes(client, "tfd", keep=30)  # the last 5 entries, acknowledged and learned, are gone
    # Another learner (restarted after the crash, from the log) appends new events under the reused numbers.
    other = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    other.catch_up()
    for i, event in enumerate(after):
        send(other, event, f"b-{i}")
    before = diverged()
    follower.catch_up()  # seq 36.. follow its position 35: only the chain tells they are not its 31..35
    assert diverged() == before + 1
    reference = replay("tfd", [("record", e) for e in first + after])
    assert_same_model(follower.state, reference, probes)
    assert_same_model(other.state, reference, probes)
