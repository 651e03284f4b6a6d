"""The event log's append (functions/model_state/event_log.py): a failed append leaves nothing behind, so its retry is
appended and learned, never taken for a duplicate of an event that was not logged."""

from __future__ import annotations

import pytest
import redis

from eventing.domains import get_domain
from functions.middleware.contract import error_response
from functions.model_state.event_log import AppendRefused, EventLog
from tests.functions.streams import events


def test_an_append_the_log_refuses_marks_nothing_and_its_retry_is_appended(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    log = EventLog(client, get_domain("tfd"))
    first, second = events("tfd", 2, seed=71)
    log.append("record", first, log.dedup_keys("/tests", "a", first, "record"))
    # The stream's last id is ahead of the sequence counter (a restore that set the counter back, a hand edit):
    # the entry cannot be written under the next seq.
    client.xadd(log.log_key, {"k": "record", "d": "{}", "t": 0}, id="5-0")
    keys = log.dedup_keys("/tests", "b", second, "record", kafka=("0", "17"))
    with pytest.raises(AppendRefused) as info:
        log.append("record", second, keys)
    assert error_response("learn", info.value)[0] == 503  # retried by the sender
    assert [k for k in keys if client.exists(k)] == []  # nothing marked as seen
    assert log.head() == 1
    client.set(log.seq_key, 5)  # the cause fixed: the retry is a new event, not a duplicate
    retried = log.append("record", second, keys)
    assert (retried.new, retried.seq) == (True, 6)
    assert [e.event for e in log.read_after(5)] == [second]


def test_an_append_refused_for_memory_writes_nothing(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    log = EventLog(client, get_domain("tfd"))
    (event,) = events("tfd", 1, seed=72)
    keys = log.dedup_keys("/tests", "c", event, "record")
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(AppendRefused):
            log.append("record", event, keys)
    finally:
        client.config_set("maxmemory", 0)
    assert [k for k in keys if client.exists(k)] == [] and log.head() == 0
    assert log.append("record", event, keys).new
