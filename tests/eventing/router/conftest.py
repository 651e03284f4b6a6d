"""Fixtures of the router tests: the platform's REAL Kafka-protocol broker (Tansu), started once per session.

Each test module's router uses its own namespace (so its own Broker topic and consumer groups): a platform
router started by another test in the same session never sees these events, nor these routers its events.
"""

from __future__ import annotations

from typing import Any

import pytest

from coelho.settings import Settings


@pytest.fixture(scope="session")
def kafka_settings(platform: Any) -> Settings:
    platform.start(["kafka"])
    return platform.settings
