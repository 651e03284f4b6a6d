"""The Kafka record of an event: a binary-mode CloudEvent, so plain consumers and Knative both read it.

value   = the event data as JSON (what a plain Kafka consumer of the original topics expects)
key     = the entity key (the domain's key_field value: user_id, driver_id, customer_id)
headers = content-type: application/json, and ce_specversion, ce_id, ce_source, ce_type, ce_time, ce_domain,
          ce_partitionkey (the CloudEvents Kafka protocol binding), so a KafkaSource passes the record on as the
          domain's own CloudEvent instead of a generic dev.knative.kafka.event.

>>> from producers.generators.base import GeneratedEvent
>>> message = to_kafka_message("tfd", GeneratedEvent("record", {"user_id": "u1"}, "u1", "t1", 0.0))
>>> message.key, message.headers["ce_type"], message.headers["content-type"], message.value
(b'u1', b'com.coelho.realtime.tfd.record', b'application/json', b'{"user_id":"u1"}')
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from eventing.domains import get_domain
from producers.generators.base import GeneratedEvent

log = logging.getLogger(__name__)
JSON_FORMAT = JSONFormat()


def to_cloudevent(domain: str, event: GeneratedEvent, data: Any = None) -> CloudEvent:
    """The CloudEvent of a generated or replayed event: the domain's type for its kind, source the producer.

    `data` replaces the event's data, e.g. with its JSON already encoded.
    """
    d = get_domain(domain)
    attributes = {
        "id": event.id,
        "source": d.source("producers"),
        "type": d.type(event.kind),
        "time": datetime.fromtimestamp(event.time, UTC),
        "datacontenttype": "application/json",
        "domain": d.name,
        "partitionkey": event.key,
    }
    return CloudEvent(attributes, event.data if data is None else data)


def to_kafka_message(domain: str, event: GeneratedEvent) -> kafka_binding.KafkaMessage:
    """Binary content mode (cloudevents' Kafka binding); the key as bytes, as kafka-python sends it.

    The data goes in as compact JSON bytes, which the binding writes as the value unchanged: half the cost of
    its own JSON encoder, and the same JSON.
    """
    encoded = json.dumps(event.data, separators=(",", ":")).encode()
    message = kafka_binding.to_binary(to_cloudevent(domain, event, encoded), JSON_FORMAT)
    key = message.key.encode() if isinstance(message.key, str) else message.key
    return kafka_binding.KafkaMessage(headers=message.headers, key=key, value=message.value)


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int = 6, replication_factor: int = 1) -> bool:
    """Create `topic` with `partitions` partitions unless it exists. True if it was created here."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="coelho-producer-admin")
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)])
        except TopicAlreadyExistsError:  # another producer won the race
            return False
        log.info("created topic %s with %d partitions", topic, partitions)
        return True
    finally:
        admin.close()
