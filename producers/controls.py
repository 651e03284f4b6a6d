"""Producer controls in Redis, changed while a producer runs (dashboard, `redis-cli`, the assistant's tools).

    coelho:producer:<domain>:rate     events per second (float; 0 = as fast as possible)
    coelho:producer:<domain>:enabled  "1" produce, "0" pause

A producer reads them about once per second. Redis is optional: when it is unreachable or a key is absent,
the producer keeps the rate it was started with and stays enabled.

Each running producer also says that it runs, about once per second, in

    coelho:producer:<domain>:running  hash: producer id -> JSON {rate, enabled, sent, count, t}

so the dashboard shows the producers that really run (the platform's, or a `coelho produce`), not the switch's
default. An entry older than HEARTBEAT_TTL_S is a producer that stopped or died; the hash itself expires.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def rate_key(domain: str) -> str:
    return f"coelho:producer:{domain}:rate"


def enabled_key(domain: str) -> str:
    return f"coelho:producer:{domain}:enabled"


def running_key(domain: str) -> str:
    return f"coelho:producer:{domain}:running"


HEARTBEAT_TTL_S = 5.0  # a producer not heard of for this long no longer runs


def running_producers(raw: dict[Any, Any], now: float | None = None) -> list[dict[str, Any]]:
    """The producers of a `running_key` hash (HGETALL) heard of in the last HEARTBEAT_TTL_S seconds.

    >>> beat = {b"host:1": json.dumps({"rate": 5.0, "enabled": True, "sent": 10, "count": None, "t": 100.0})}
    >>> [p["id"] for p in running_producers(beat, now=102.0)], running_producers(beat, now=106.0)
    (['host:1'], [])
    """
    now = time.time() if now is None else now
    out = []
    for key, value in raw.items():
        try:
            beat = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(beat, dict) and now - float(beat.get("t", 0)) <= HEARTBEAT_TTL_S:
            out.append({"id": _text(key), **beat})
    return sorted(out, key=lambda b: str(b["id"]))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class ProducerControls:
    """The rate and on/off switch of one domain's producer, refreshed from Redis every `interval_s`."""

    domain: str
    default_rate: float
    redis_url: str | None = None
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        self.rate = self.default_rate
        self.enabled = True
        self._next_poll = 0.0
        self._next_beat = 0.0
        self.producer_id = f"{socket.gethostname()}:{os.getpid()}"
        self._client = None
        self._unreachable_logged = False
        if self.redis_url:
            import redis

            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=0.3, socket_connect_timeout=0.3)

    def poll(self, now: float | None = None) -> bool:
        """Refresh from Redis if a poll is due; True when the rate or the switch changed."""
        now = time.monotonic() if now is None else now
        if self._client is None or now < self._next_poll:
            return False
        self._next_poll = now + self.interval_s
        try:
            raw_rate, raw_enabled = self._client.mget(rate_key(self.domain), enabled_key(self.domain))
        except Exception as err:  # Redis down or unreachable: keep going with what we have
            if not self._unreachable_logged:
                log.warning("producer controls: Redis unreachable (%s); producing at %g ev/s", err, self.rate)
                self._unreachable_logged = True
            rate, enabled = self.default_rate, True
        else:
            self._unreachable_logged = False
            rate = self._parse_rate(_text(raw_rate))
            switch = _text(raw_enabled)
            enabled = switch is None or switch.strip().lower() not in ("0", "false", "off", "no")
        changed = rate != self.rate or enabled != self.enabled
        if changed:
            log.info("producer %s: rate %g ev/s, %s", self.domain, rate, "enabled" if enabled else "paused")
        self.rate, self.enabled = rate, enabled
        return changed

    def _parse_rate(self, raw: str | None) -> float:
        if raw is None:
            return self.default_rate
        try:
            rate = float(raw)
        except ValueError:
            log.warning("producer controls: ignoring %s=%r (not a number)", rate_key(self.domain), raw)
            return self.rate
        if rate < 0 or rate != rate:
            log.warning("producer controls: ignoring %s=%r (negative)", rate_key(self.domain), raw)
            return self.rate
        return rate

    def heartbeat(self, sent: int, count: int | None = None, now: float | None = None) -> None:
        """Say that this producer runs (rate, switch, events sent of `count`), at most once per interval."""
        now = time.monotonic() if now is None else now
        if self._client is None or now < self._next_beat:
            return
        self._next_beat = now + self.interval_s
        beat = {"rate": self.rate, "enabled": self.enabled, "sent": sent, "count": count, "t": time.time()}
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(running_key(self.domain), self.producer_id, json.dumps(beat))
            pipe.expire(running_key(self.domain), int(HEARTBEAT_TTL_S * 6))
            pipe.execute()
        except Exception:  # Redis down: poll() has said so already
            pass

    def stopped(self) -> None:
        """This producer no longer runs (its entry goes at once instead of after HEARTBEAT_TTL_S)."""
        if self._client is None:
            return
        with contextlib.suppress(Exception):  # Redis down: the entry expires by itself
            self._client.hdel(running_key(self.domain), self.producer_id)

    def close(self) -> None:
        if self._client is not None:
            self.stopped()
            self._client.close()
