"""The Kafka record of an event is a binary-mode CloudEvent that the cloudevents Kafka binding reads back."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from cloudevents.core.bindings import kafka as kafka_binding

import producers
from eventing.domains import DOMAINS, TFD
from producers.kafka_record import to_kafka_message
from producers.producer import JsonlSink, Pacer
from producers.replay import replay_events


def test_each_domain_record_is_a_binary_cloudevent_keyed_by_the_entity() -> None:
    for name, d in DOMAINS.items():
        event = next(producers.generate(name, seed=3, count=1))
        message = to_kafka_message(name, event)
        assert message.key == event.data[d.key_field].encode()
        assert json.loads(message.value) == event.data
        assert message.headers["content-type"] == b"application/json"
        assert {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_domain", "ce_partitionkey"} <= set(
            message.headers
        )
        back = kafka_binding.from_binary_event(message)
        assert back.get_type() == d.type("record") and back.get_source() == f"/coelho/producers/{name}"
        assert back.get_id() == event.data[d.id_field]
        assert back.get_extension("domain") == name and back.get_extension("partitionkey") == event.key
        assert back.get_time() == datetime.fromisoformat(event.data["timestamp"]).astimezone(UTC)
        assert back.get_data() == event.data


def test_a_delayed_label_is_its_own_event_type_on_the_same_key() -> None:
    events = list(producers.generate("tfd", seed=8, count=50, delayed_labels=True))
    label = next(e for e in events if e.kind == "label")
    back = kafka_binding.from_binary_event(to_kafka_message("tfd", label))
    assert back.get_type() == TFD.type("label")
    assert back.get_extension("partitionkey") == label.data["user_id"]
    data = back.get_data()
    assert isinstance(data, dict) and set(data) == {"transaction_id", "user_id", "is_fraud"}


def test_a_recorded_stream_replays_records_and_labels(tmp_path: object) -> None:
    events = list(producers.generate("tfd", seed=9, count=40, delayed_labels=True))
    buffer = io.StringIO()
    sink = JsonlSink("tfd", buffer)
    for event in events:
        sink.send(event)
    path = tmp_path / "tfd.jsonl"  # type: ignore[operator]
    path.write_text(buffer.getvalue())
    replayed = list(replay_events(TFD, path))
    assert [(e.kind, e.id, e.key, e.data) for e in replayed] == [(e.kind, e.id, e.key, e.data) for e in events]


def test_pacer_spaces_events_and_restarts_after_a_stall() -> None:
    import threading
    import time

    stop = threading.Event()
    pacer = Pacer(200.0)
    started = time.monotonic()
    for _ in range(40):
        pacer.wait(stop)
    assert time.monotonic() - started >= 0.19
    pacer.t0 -= 5  # far behind schedule (a pause): no burst to catch up, a new schedule
    pacer.wait(stop)
    assert pacer.n == 0 and pacer.rate == 200.0
    unlimited = Pacer(0)
    started = time.monotonic()
    for _ in range(1000):
        unlimited.wait(stop)
    assert time.monotonic() - started < 0.5
