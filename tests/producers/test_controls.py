"""Producer controls: read from the platform's real Redis; without Redis the producer keeps its own rate."""

from __future__ import annotations

from typing import Any

import pytest

from producers.controls import ProducerControls, enabled_key, rate_key


def test_without_redis_the_cli_rate_holds(unused_redis_url: str) -> None:
    controls = ProducerControls("tfd", 7.5, unused_redis_url, interval_s=0)
    assert controls.poll() is False
    assert (controls.rate, controls.enabled) == (7.5, True)
    assert ProducerControls("tfd", 2.0, None).poll() is False


@pytest.mark.stack
def test_rate_and_switch_come_from_redis(redis_url: str) -> None:
    import redis

    r: Any = redis.Redis.from_url(redis_url)
    domain = "eta"
    r.delete(rate_key(domain), enabled_key(domain))
    controls = ProducerControls(domain, 3.0, redis_url, interval_s=1.0)
    assert controls.poll(now=100.0) is False and controls.rate == 3.0
    r.set(rate_key(domain), "250")
    r.set(enabled_key(domain), "0")
    assert controls.poll(now=100.5) is False  # not due yet: about once per second
    assert controls.poll(now=101.0) is True
    assert (controls.rate, controls.enabled) == (250.0, False)
    r.set(rate_key(domain), "fast")  # nonsense is ignored, the last good rate stays
    r.set(enabled_key(domain), "1")
    assert controls.poll(now=102.0) is True and (controls.rate, controls.enabled) == (250.0, True)
    r.delete(rate_key(domain), enabled_key(domain))
    controls.poll(now=103.0)
    assert (controls.rate, controls.enabled) == (3.0, True)  # keys removed: back to the CLI rate
    controls.close()
