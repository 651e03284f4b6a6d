"""Fixtures of the router tests: the platform's REAL Kafka-protocol broker (Tansu), started once per session, and
a producer to it. harness.py builds the manifests, starts the routers and posts the events.

Each test module's router uses its own namespace (so its own Broker topic and consumer groups): a platform
router started by another test in the same session never sees these events, nor these routers its events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer

from coelho.settings import Settings


@pytest.fixture(scope="session")
def kafka_settings(platform: Any) -> Settings:
    platform.start(["kafka"])
    return platform.settings


@pytest.fixture(scope="module")
def kafka_producer(kafka_settings: Settings) -> Iterator[KafkaProducer]:
    """A producer to that broker, for records a router's KafkaSources and Broker topics read."""
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    yield producer
    producer.close()
