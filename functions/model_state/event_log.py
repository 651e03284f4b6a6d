"""A domain's write-ahead log of clean events: a Redis stream, with duplicate suppression and pause.

`EventLog.append` runs ONE Lua script per event that atomically drops duplicates (CloudEvent source+id, Kafka
partition+offset, the domain's id field, each a SET NX key with a TTL) and appends the clean event to the domain's
stream under the next sequence number: the entry first, then the sequence number and the dedup keys, so an append
that fails leaves nothing behind (`AppendRefused`) and its retry is appended, not taken for a duplicate. The stream is the commit point: once appended, the event will be learned
exactly once by every model of the domain, whatever crashes afterwards (docs/adr/0031-model-state-event-log.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from eventing.domain import Domain
from functions.model_state.keys import key

DEDUP_TTL = int(os.environ.get("COELHO_DEDUP_TTL", "3600"))  # seconds a delivery is remembered

# The log entry is written first: if it cannot be (Redis out of memory, an entry id not above the stream's last), the
# script returns an error having written nothing, and a retry appends the event. Marking the delivery as seen first
# would make every retry a "duplicate" of an event that was never logged. (Scripts are atomic; Redis refuses a
# script's first write when out of memory and lets the writes after it through, so the XADD is that gate.)
_APPEND = """
for i = 4, #KEYS do
  local prior = redis.call('GET', KEYS[i])
  if prior then return {0, tonumber(prior), 0, redis.call('GET', KEYS[3]) or false} end
end
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local added = redis.pcall('XADD', KEYS[2], seq .. '-0', 'k', ARGV[2], 'd', ARGV[3], 't', ms)
if type(added) == 'table' and added.err then
  return redis.error_reply('event not appended, nothing written: ' .. added.err)
end
redis.call('SET', KEYS[1], seq)
for i = 4, #KEYS do redis.call('SET', KEYS[i], seq, 'EX', ARGV[1]) end
return {1, seq, ms, redis.call('GET', KEYS[3]) or false}
"""


class AppendRefused(redis.ConnectionError):
    """Redis refused the append and wrote nothing: the delivery is to be retried (a 503, as for Redis down)."""


@dataclass
class Appended:
    seq: int
    new: bool  # False: a duplicate delivery, seq is the entry the first delivery got
    t_ms: int
    paused_at: int | None


@dataclass
class LogEntry:
    seq: int
    kind: str
    event: dict[str, Any]
    t_ms: int


class EventLog:
    """A domain's write-ahead log of clean events in a Redis stream, with duplicate suppression and pause."""

    def __init__(self, client: redis.Redis, domain: Domain) -> None:
        self.redis: Any = client
        self.domain = domain
        self._append = client.register_script(_APPEND)
        self.seq_key = key(domain.name, "seq")
        self.log_key = key(domain.name, "log")
        self.paused_key = key(domain.name, "paused_at")

    def dedup_keys(
        self,
        source: str | None,
        event_id: str | None,
        event: Mapping[str, Any],
        kind: str,
        kafka: tuple[Any, Any] | None = None,
    ) -> list[str]:
        """The identities of one delivery: any one already seen makes it a duplicate."""
        keys = []
        if source and event_id:
            keys.append(key(self.domain.name, "dedup", f"ce:{source}|{event_id}"))
        if kafka and kafka[0] is not None and kafka[1] is not None:
            keys.append(key(self.domain.name, "dedup", f"kafka:{self.domain.topic}:{kafka[0]}:{kafka[1]}"))
        ident = event.get(self.domain.id_field)
        if ident is not None:
            keys.append(key(self.domain.name, "dedup", f"{'label' if kind == 'label' else 'id'}:{ident}"))
        return keys

    def append(self, kind: str, event: Mapping[str, Any], dedup_keys: Iterable[str]) -> Appended:
        """Append the event unless a dedup key says it is a duplicate. AppendRefused: nothing was written."""
        payload = json.dumps(event, separators=(",", ":"), sort_keys=True)
        try:
            new, seq, t_ms, paused = self._append(
                keys=[self.seq_key, self.log_key, self.paused_key, *dedup_keys], args=[DEDUP_TTL, kind, payload]
            )
        except redis.ResponseError as exc:  # out of memory, or the log's ids ahead of its seq: retryable
            raise AppendRefused(f"{self.domain.name}: {exc}") from exc
        return Appended(int(seq), bool(new), int(t_ms), int(paused) if paused else None)

    def read_after(self, seq: int, count: int = 2000) -> list[LogEntry]:
        return [_entry(i, f) for i, f in self.redis.xrange(self.log_key, min=f"{seq + 1}-0", count=count)]

    def head(self) -> int:
        return int(self.redis.get(self.seq_key) or 0)

    def paused_at(self) -> int | None:
        value = self.redis.get(self.paused_key)
        return int(value) if value is not None else None

    def pause(self) -> int:
        """Stop batch_learners at the current end of the log (idempotent); returns the pause position."""
        self.redis.set(self.paused_key, self.head(), nx=True)
        return int(self.redis.get(self.paused_key) or 0)

    def resume(self) -> None:
        self.redis.delete(self.paused_key)


def _entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> LogEntry:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return LogEntry(int(text.split("-")[0]), fields[b"k"].decode(), json.loads(fields[b"d"]), int(fields[b"t"]))
