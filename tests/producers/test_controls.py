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


@pytest.mark.stack
def test_a_running_producer_says_so_in_redis_and_leaves_when_it_stops(redis_url: str, kafka_bootstrap: str) -> None:
    """What the dashboard's producer card reads: each producer that runs (here a bounded run, as `coelho produce`
    does), with its rate and progress; nothing once it stopped."""
    import json
    import threading

    import redis

    from producers.controls import running_key, running_producers
    from producers.producer import produce

    r: Any = redis.Redis.from_url(redis_url)
    domain = "ecci"
    r.delete(running_key(domain), rate_key(domain), enabled_key(domain))
    seen: list[list[dict[str, Any]]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(running_producers(r.hgetall(running_key(domain))))
            done.wait(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        stats = produce(domain, rate=20, count=60, bootstrap_servers=kafka_bootstrap, redis_url=redis_url)
    finally:
        done.set()
        watcher.join()
    assert stats.sent == 60
    # Only this run's heartbeats (a platform's own producer may share the Redis): a bounded run of 60.
    beats = [b for snapshot in seen for b in snapshot if b["count"] is not None]
    assert beats, "no heartbeat while producing"
    assert {b["count"] for b in beats} == {60} and {b["rate"] for b in beats} == {20.0}
    assert max(b["sent"] for b in beats) > 0
    after = running_producers(r.hgetall(running_key(domain)))
    assert [b for b in after if b["count"] is not None] == []  # stopped: gone at once
    stale = {"stale:1": json.dumps({"rate": 3.0, "enabled": True, "sent": 1, "count": None, "t": 1.0})}
    assert running_producers(stale) == []  # a producer that died without a word is not "running"
