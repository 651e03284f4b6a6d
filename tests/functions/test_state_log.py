"""The event log's append (functions/model_state/event_log.py): a failed append leaves nothing behind, so its retry is
appended and learned, never taken for a duplicate of an event that was not logged; a Kafka offset is a duplicate
for good, without a time window, in constant memory per partition."""

from __future__ import annotations

import pytest
import redis

from eventing.domains import get_domain
from functions.learn import kafka_position
from functions.middleware.contract import error_response
from functions.middleware.events import Event
from functions.model_state import event_log
from functions.model_state.event_log import AppendRefused, EventLog, KafkaPosition
from tests.functions.streams import events


def test_an_append_the_log_refuses_marks_nothing_and_its_retry_is_appended(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    log = EventLog(client, get_domain("tfd"))
    first, second = events("tfd", 2, seed=71)
    log.append("record", first, log.dedup_keys("/tests", "a", first, "record"))
    # The stream's last id is ahead of the sequence counter (a restore that set the counter back, a hand edit):
    # the entry cannot be written under the next seq.
    client.xadd(log.log_key, {"k": "record", "d": "{}", "t": 0}, id="5-0")
    keys = log.dedup_keys("/tests", "b", second, "record")
    at = KafkaPosition("tfd", "0", 17, "000001700000000000")
    with pytest.raises(AppendRefused) as info:
        log.append("record", second, keys, kafka=at)
    assert error_response("learn", info.value)[0] == 503  # retried by the sender
    assert [k for k in keys if client.exists(k)] == []  # nothing marked as seen
    assert not client.exists(log.kafka_key(at))
    assert log.head() == 1
    client.set(log.seq_key, 5)  # the cause fixed: the retry is a new event, not a duplicate
    retried = log.append("record", second, keys, kafka=at)
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


def kafka_records(log: EventLog, offsets: list[int], stamp: str = "000001700000000000") -> list[tuple[bool, int]]:
    """Append one tfd record per Kafka offset of partition 0 (each its own transaction id): (new, seq) of each."""
    out = []
    for offset in offsets:
        (event,) = events("tfd", 1, seed=1000 + offset)
        event = dict(event, transaction_id=f"k-{offset}-{stamp}")
        keys = log.dedup_keys(
            "/apis/v1/namespaces/coelho/kafkasources/tfd#tfd",
            f"partition:0/offset:{offset}",
            event,
            "record",
            kafka=KafkaPosition("tfd", "0", offset, stamp),
        )
        appended = log.append("record", event, keys, kafka=KafkaPosition("tfd", "0", offset, stamp))
        out.append((appended.new, appended.seq))
    return out


def test_an_old_kafka_offset_redelivered_after_the_dedup_window_is_still_a_duplicate(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_log, "KAFKA_WINDOW", 10)
    client = redis.Redis.from_url(redis_url)
    log = EventLog(client, get_domain("tfd"))
    first = kafka_records(log, list(range(100)))
    assert all(new for new, _ in first)
    for name in client.scan_iter("coelho:tfd:dedup:*"):  # every expiring key gone: an hour (or a day) later
        client.delete(name)
    # A consumer-group reset redelivers the partition from the start: every offset is a duplicate.
    again = kafka_records(log, list(range(100)))
    assert [new for new, _ in again] == [False] * 100
    assert [seq for _, seq in again[-10:]] == [seq for _, seq in first[-10:]]  # the window still knows their seq
    assert log.head() == 100
    assert client.zcard(log.kafka_key(KafkaPosition("tfd", "0", 0))) <= 11  # constant memory per partition


def test_kafka_offsets_reordered_within_the_window_are_all_learned(redis_url: str) -> None:
    log = EventLog(redis.Redis.from_url(redis_url), get_domain("tfd"))
    assert [new for new, _ in kafka_records(log, [5, 3, 4, 9, 6, 8, 7, 3, 9])] == [True] * 7 + [False] * 2
    assert log.head() == 7


def test_a_recreated_topic_reusing_offsets_is_not_taken_for_duplicates(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_log, "KAFKA_WINDOW", 10)
    log = EventLog(redis.Redis.from_url(redis_url), get_domain("tfd"))
    kafka_records(log, list(range(30)), stamp="000001700000000000")
    later = "000001700003600000"  # the same offsets, records an hour newer: another generation of the topic
    assert [new for new, _ in kafka_records(log, [0, 1, 2, 25], stamp=later)] == [True] * 4
    assert [new for new, _ in kafka_records(log, [1, 2], stamp=later)] == [False, False]
    assert log.head() == 34


def test_a_kafkasource_event_gives_its_partition_offset_and_record_time() -> None:
    event = Event(
        {
            "id": "partition:2/offset:41",
            "source": "/apis/v1/namespaces/coelho/kafkasources/tfd#tfd",
            "type": "dev.knative.kafka.event",
            "time": "2026-12-03T12:00:00.250Z",
        }
    )
    assert kafka_position(event, "tfd") == KafkaPosition("tfd", "2", 41, "001796299200250")
    event.attributes["knativekafkaoffset"] = "x"
    assert kafka_position(event, "tfd") is None
