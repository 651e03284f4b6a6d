"""A domain's write-ahead log of clean events: a Redis stream, with duplicate suppression and pause.

`EventLog.append` runs ONE Lua script per event that atomically drops duplicates (CloudEvent source+id and the
domain's id field, SET keys with a TTL; a KafkaSource record by its partition's offset high-water mark, no TTL) and appends the clean event to the domain's
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
from functions.model_state.keys import as_text, key

DEDUP_TTL = int(os.environ.get("COELHO_DEDUP_TTL", "3600"))  # seconds a CloudEvent id or event id is remembered
# Offsets of a Kafka partition remembered exactly below its highest (reordered deliveries); older ones are
# duplicates by the high-water mark, without a time window (docs/adr/0091-dedup-windows.md).
KAFKA_WINDOW = int(os.environ.get("COELHO_KAFKA_DEDUP_OFFSETS", "10000"))

# KEYS: seq, log, paused_at, the Kafka partition's offset mark (or the seq key when none), the chain, then the dedup
# keys.
#
# The chain: each entry carries `p`, the chain value after the entry before it, and `h` = sha1(p|seq|kind|payload),
# which becomes the domain's chain value. A replica keeps the `h` of the last entry it learned and checks the next
# entry's `p` against it: when Redis loses its last writes (appendfsync everysec) and hands the same sequence numbers
# to other events, the first of them does not continue the replica's chain, and the replica reloads the snapshot and
# replays the log instead of carrying on diverged (functions/model_state/replica.py, ADR 0094).
# ARGV: ttl, kind, payload, Kafka offset ('' when none), the Kafka record's time, the offset window, the position
# the caller's models have reached (0: none).
#
# A caller whose models have learned entries while Redis has no sequence number at all (Redis wiped, or restarted
# without its data) gets {2, ...} and nothing is written: it re-seeds Redis from its models first (`LogLost`,
# functions/model_state/replica.py `reseed`), so the new entries continue after what the models hold.
#
# The log entry is written first: if it cannot be (Redis out of memory, an entry id not above the stream's last), the
# script returns an error having written nothing, and a retry appends the event. Marking the delivery as seen first
# would make every retry a "duplicate" of an event that was never logged. (Scripts are atomic; Redis refuses a
# script's first write when out of memory and lets the writes after it through, so the XADD is that gate.)
#
# A Kafka partition's mark is a sorted set of "offset|seq|time" (score: offset) holding the offsets within WINDOW
# of the highest one. An offset in it with the same record time is a duplicate (its seq is known); an offset below
# the window is a duplicate too, whatever its age (seq 0: not known any more), unless its record is newer than the
# highest one's: then the offsets started again (a recreated topic) and the mark is reset, as it is when a seen
# offset comes back with another record time.
_APPEND = """
local paused = redis.call('GET', KEYS[3]) or false
if tonumber(ARGV[7]) > 0 and redis.call('EXISTS', KEYS[1]) == 0 then return {2, 0, 0, paused} end
for i = 6, #KEYS do
  local prior = redis.call('GET', KEYS[i])
  if prior then return {0, tonumber(prior), 0, paused} end
end
local offset = tonumber(ARGV[4])
local rtime = ARGV[5]
local restart = false
if offset then
  local hit = redis.call('ZRANGEBYSCORE', KEYS[4], offset, offset, 'LIMIT', 0, 1)[1]
  if hit then
    local s, t = string.match(hit, '^[^|]*|([^|]*)|(.*)$')
    if rtime == '' or t == '' or t == rtime then return {0, tonumber(s), 0, paused} end
    restart = true
  else
    local top = redis.call('ZRANGE', KEYS[4], -1, -1)[1]
    if top then
      local o, t = string.match(top, '^([^|]*)|[^|]*|(.*)$')
      if offset < tonumber(o) - tonumber(ARGV[6]) then
        if rtime == '' or t == '' or rtime <= t then return {0, 0, 0, paused} end
        restart = true
      end
    end
  end
end
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local prev = redis.call('GET', KEYS[5]) or ''
local chain = redis.sha1hex(prev .. '|' .. seq .. '|' .. ARGV[2] .. '|' .. ARGV[3])
local added = redis.pcall('XADD', KEYS[2], seq .. '-0', 'k', ARGV[2], 'd', ARGV[3], 't', ms, 'p', prev, 'h', chain)
if type(added) == 'table' and added.err then
  return redis.error_reply('event not appended, nothing written: ' .. added.err)
end
redis.call('SET', KEYS[1], seq)
redis.call('SET', KEYS[5], chain)
for i = 6, #KEYS do redis.call('SET', KEYS[i], seq, 'EX', ARGV[1]) end
if offset then
  if restart then redis.call('DEL', KEYS[4]) end
  redis.call('ZADD', KEYS[4], offset, offset .. '|' .. seq .. '|' .. rtime)
  local high = tonumber(redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (high - tonumber(ARGV[6])))
end
return {1, seq, ms, paused, prev, chain}
"""


@dataclass(frozen=True)
class KafkaPosition:
    """Where a KafkaSource record sits: its partition, offset and record time (CloudEvent `time`, '' if none)."""

    topic: str
    partition: str
    offset: int
    time: str = ""


class LogLost(RuntimeError):
    """The domain's log and sequence number are gone while the caller's models hold a position: re-seed first."""


class AppendRefused(redis.ConnectionError):
    """Redis refused the append and wrote nothing: the delivery is to be retried (a 503, as for Redis down)."""


@dataclass
class Appended:
    seq: int
    new: bool  # False: a duplicate delivery, seq is the entry the first delivery got
    t_ms: int
    paused_at: int | None
    prev: str | None = None  # the chain value before the entry (new entries only)
    chain: str | None = None  # the chain value after it


@dataclass
class LogEntry:
    seq: int
    kind: str
    event: dict[str, Any]
    t_ms: int
    prev: str | None = None  # the chain value the entry continues (None: an entry written before the chain)
    chain: str | None = None  # the chain value after it


class EventLog:
    """A domain's write-ahead log of clean events in a Redis stream, with duplicate suppression and pause."""

    def __init__(self, client: redis.Redis, domain: Domain) -> None:
        self.redis: Any = client
        self.domain = domain
        self._append = client.register_script(_APPEND)
        self.seq_key = key(domain.name, "seq")
        self.log_key = key(domain.name, "log")
        self.paused_key = key(domain.name, "paused_at")
        self.chain_key = key(domain.name, "chain")

    def dedup_keys(
        self,
        source: str | None,
        event_id: str | None,
        event: Mapping[str, Any],
        kind: str,
        kafka: KafkaPosition | None = None,
    ) -> list[str]:
        """The identities of one delivery that expire (DEDUP_TTL): any one already seen makes it a duplicate.
        A KafkaSource record (`kafka`) is deduplicated by its partition's offset mark instead (`append`): its
        CloudEvent id is only its partition and offset, which a recreated topic reuses."""
        keys = []
        if source and event_id and kafka is None:
            keys.append(key(self.domain.name, "dedup", f"ce:{source}|{event_id}"))
        ident = event.get(self.domain.id_field)
        if ident is not None:
            keys.append(key(self.domain.name, "dedup", f"{'label' if kind == 'label' else 'id'}:{ident}"))
        return keys

    def kafka_key(self, kafka: KafkaPosition) -> str:
        return key(self.domain.name, "kafka", f"{kafka.topic}:{kafka.partition}")

    def append(
        self,
        kind: str,
        event: Mapping[str, Any],
        dedup_keys: Iterable[str],
        kafka: KafkaPosition | None = None,
        position: int = 0,
    ) -> Appended:
        """Append the event unless a dedup key or its Kafka partition's mark says it is a duplicate (then seq is the
        first delivery's, or 0 for a Kafka offset below the window). position: where the caller's models are
        (LogLost when Redis has lost the log under them). AppendRefused: nothing was written."""
        payload = json.dumps(event, separators=(",", ":"), sort_keys=True)
        mark = self.kafka_key(kafka) if kafka is not None else self.seq_key
        args: list[str | int] = [DEDUP_TTL, kind, payload, "", "", KAFKA_WINDOW, position]
        if kafka is not None:
            args[3:5] = [kafka.offset, kafka.time]
        try:
            reply = self._append(
                keys=[self.seq_key, self.log_key, self.paused_key, mark, self.chain_key, *dedup_keys], args=args
            )
        except redis.ResponseError as exc:  # out of memory, or the log's ids ahead of its seq: retryable
            raise AppendRefused(f"{self.domain.name}: {exc}") from exc
        new, seq, t_ms, paused = reply[:4]
        if new == 2:
            raise LogLost(f"{self.domain.name}: the log has no sequence number, models are at {position}")
        prev, chain = (as_text(v) for v in reply[4:6]) if len(reply) >= 6 else (None, None)
        return Appended(int(seq), bool(new), int(t_ms), int(paused) if paused else None, prev, chain)

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
    text = as_text(entry_id)
    prev, chain = fields.get(b"p"), fields.get(b"h")
    return LogEntry(
        int(text.split("-")[0]),
        fields[b"k"].decode(),
        json.loads(fields[b"d"]),
        int(fields[b"t"]),
        as_text(prev) if prev is not None else None,
        as_text(chain) if chain is not None else None,
    )


def set_training(client: Any, domain: str, action: str) -> dict[str, Any]:
    """Pause (batch_learners stop at the current end of the log) or resume (everyone catches up) a domain."""
    from eventing.domains import get_domain

    event_log = EventLog(client, get_domain(domain))
    if action == "pause":
        at = event_log.pause()
        return {"domain": domain, "training": "paused", "paused_at": at}
    event_log.resume()
    return {"domain": domain, "training": "live", "head": event_log.head()}
