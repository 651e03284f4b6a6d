"""A Redis client for the assistant that only reads: `ReadOnlyRedis` passes the commands of `READ_COMMANDS`
through and refuses every other one (`ReadOnlyViolation`), scripts and pipelines included (docs/adr/0061).

    >>> import redis
    >>> guarded = ReadOnlyRedis(redis.Redis(port=1))  # no connection is made before a command
    >>> try:
    ...     guarded.set("coelho:x", 1)
    ... except ReadOnlyViolation as exc:
    ...     print(exc)
    Redis command 'set' is not allowed: the assistant only reads
    >>> reply_text(b"42"), reply_text(None)
    ('42', None)
"""

from __future__ import annotations

from typing import Any

import redis


class ReadOnlyViolation(PermissionError):
    """A tool tried a Redis command that writes: tools only read."""


READ_COMMANDS = frozenset(
    {
        "get",
        "mget",
        "hget",
        "hmget",
        "hgetall",
        "hkeys",
        "hlen",
        "exists",
        "ttl",
        "type",
        "lrange",
        "llen",
        "smembers",
        "scard",
        "sismember",
        "zrange",
        "zrevrange",
        "zrangebyscore",
        "zrevrangebyscore",
        "zcard",
        "zcount",
        "xrange",
        "xrevrange",
        "xlen",
        "xinfo_stream",
        "ping",
        "scan_iter",
        "info",
        "dbsize",
    }
)


class _NoScript:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyViolation("scripts may write: the assistant's Redis access is read-only")


class ReadOnlyRedis:
    """A Redis client that only passes read commands through (`READ_COMMANDS`)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name in READ_COMMANDS:
            return getattr(self._client, name)
        raise ReadOnlyViolation(f"Redis command {name!r} is not allowed: the assistant only reads")

    def register_script(self, script: str) -> _NoScript:  # ModelReplica registers scripts it only runs as a learner
        return _NoScript("script")

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyViolation("pipelines are not allowed: the assistant only reads")


def reply_text(value: Any) -> str | None:
    """A Redis reply as text (None stays None)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
