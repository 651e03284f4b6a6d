"""The platform's own router (`coelho up`'s, reading the real knative/ manifests) routes producer records to the
real learn function and the function's replies back into the Broker."""

from __future__ import annotations

import itertools
import time
import urllib.request
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.prometheus_text import sample_value

pytestmark = pytest.mark.stack


def metric(platform: Any, name: str, **labels: str) -> float:
    port = platform.settings.ports["router_metrics"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sample_value(text, name, **labels) or 0.0


def test_producer_records_reach_learn_and_no_reply_reenters_the_broker(platform: Any) -> None:
    """KafkaSource -> Broker -> ordered Trigger -> learn-one, which the Trigger asks for no reply (`/?reply=none`,
    ADR 0076): every record is learned and no `learned` event is written back into the Broker."""
    import redis

    from producers.generators import make_generator
    from producers.kafka_record import to_kafka_message

    platform.start(["router", "learn"])
    before_out = metric(platform, "coelho_router_events_out_total", trigger="tfd-learn-records")
    before_replies = metric(platform, "coelho_router_replies_total", trigger="tfd-learn-records")
    client = redis.Redis.from_url(platform.settings.redis_url)
    summary_key = "coelho:tfd:model:logreg_rus:summary"  # written by learn-one as it applies the log
    start = int(client.hget(summary_key, "seq") or 0)
    producer = KafkaProducer(bootstrap_servers=platform.settings.kafka_bootstrap)
    count = 20
    for event in itertools.islice(iter(make_generator("tfd", seed=11)), count):
        message = to_kafka_message("tfd", event)
        producer.send(
            "transaction_fraud_detection", key=message.key, value=message.value, headers=list(message.headers.items())
        )
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 120
    learned = 0
    while time.monotonic() < deadline:
        delivered = metric(platform, "coelho_router_events_out_total", trigger="tfd-learn-records") - before_out
        learned = int(client.hget(summary_key, "seq") or 0) - start
        if delivered >= count and learned >= count:
            break
        time.sleep(0.5)
    assert delivered >= count, f"learn got {delivered} of {count} records"
    assert learned >= count, f"learn-one applied {learned} of {count} records"
    replies = metric(platform, "coelho_router_replies_total", trigger="tfd-learn-records") - before_replies
    assert replies == 0, f"{replies} learned replies went back into the Broker"
    assert metric(platform, "coelho_router_events_in_total", source="tfd-records") >= count
