"""The session fixture starts real infrastructure services and they answer."""

from __future__ import annotations

import pytest

from coelho.runtime import Platform

pytestmark = pytest.mark.stack


def test_infra_services_start_and_are_healthy(platform: Platform) -> None:
    platform.start(["s3", "kafka", "redis"])
    status = platform.status()
    for name in ("s3", "kafka", "redis"):
        assert status[name].running and status[name].healthy, status[name]
    # idempotent: a second start starts nothing new
    assert platform.start(["kafka"]) == {}
