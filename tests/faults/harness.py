"""The fault-injection harness: a steady load of tfd records through the Broker, a fault in the middle, then the
accounting of every event (tests/faults and bench/faults.py share it).

The load posts CloudEvents to the Broker ingress as a producer with retries would: each event has a unique id and
transaction_id, and a POST that fails (connection refused, 5xx) is sent again until the Broker takes it (so a
retried send whose first attempt did get through is a duplicate the platform must absorb). After the load, the
accounting waits until every acknowledged event is in the domain's log or dead-lettered, then counts per event:
learned exactly once, learned twice, dead-lettered (with the reason), lost.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

import producers
from coelho.runtime import Platform
from eventing.router.event import WireEvent

DOMAIN = "tfd"
RECORD_TYPE = "com.coelho.realtime.tfd.record"


def record_event(ce_id: str, data: dict[str, Any]) -> WireEvent:
    return WireEvent(
        {
            "specversion": "1.0",
            "id": ce_id,
            "source": "/tests/faults",
            "type": RECORD_TYPE,
            "datacontenttype": "application/json",
            "partitionkey": str(data.get("transaction_id", ce_id)),
        },
        json.dumps(data).encode(),
    )


@dataclass
class Load:
    """Posts `rate` tfd records per second to the Broker until stopped; remembers what the Broker acknowledged."""

    platform: Platform
    rate: float = 20.0
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acknowledged: list[str] = field(default_factory=list)
    sends: int = 0
    retries: int = 0
    first_ack_after: dict[float, float] = field(default_factory=dict)  # fault time -> first ack after it
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def ingress(self) -> str:
        s = self.platform.settings
        return f"{s.broker_url}/{s.namespace}/default"

    def events(self, n: int, offset: int = 0) -> list[WireEvent]:
        """n record events (ids tag-offset, tag-offset+1, ...) of a seeded stream."""
        seed = int(self.tag, 16) % 100_000 + offset
        out = []
        for i, data in enumerate(producers.records(DOMAIN, 2 * n + 10, seed=seed)[:n]):
            ident = f"{self.tag}-{offset + i}"
            out.append(record_event(ident, dict(data, transaction_id=ident)))
        return out

    def post_until_taken(self, event: WireEvent, session: requests.Session, give_up: float = 120.0) -> bool:
        deadline = time.monotonic() + give_up
        while not self._stop.is_set() or time.monotonic() < deadline:
            self.sends += 1
            try:
                r = session.post(self.ingress, data=event.data, headers=event.http_headers(), timeout=10)
                if r.status_code == 202:
                    return True
                if r.status_code < 500 and r.status_code != 429:
                    return False  # refused for good: not counted as produced
            except requests.RequestException:
                pass
            self.retries += 1
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return False

    def start(self) -> None:
        def run() -> None:
            session = requests.Session()
            pool = self.events(int(self.rate * 300) + 50)  # enough for five minutes (three kills of a slow start)
            i = 0
            period = 1.0 / self.rate
            next_at = time.monotonic()
            while not self._stop.is_set() and i < len(pool):
                event = pool[i]
                i += 1
                if self.post_until_taken(event, session):
                    self.acknowledged.append(str(event.get("id")))
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))

        self._thread = threading.Thread(target=run, name="fault-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(150)


def log_ids(platform: Platform, after_seq: int) -> tuple[Counter[str], int]:
    """How often each transaction_id is in the domain's log after `after_seq`, and the log's head."""
    import redis

    client: Any = redis.Redis.from_url(platform.settings.redis_url, socket_timeout=10)
    counts: Counter[str] = Counter()
    start = f"{after_seq + 1}-0"
    while True:
        batch = client.xrange(f"coelho:{DOMAIN}:log", min=start, count=5000)
        if not batch:
            break
        for _entry_id, fields in batch:
            if fields.get(b"k") == b"record":
                counts[str(json.loads(fields[b"d"]).get("transaction_id"))] += 1
        last = int(batch[-1][0].decode().split("-")[0])
        start = f"{last + 1}-0"
    head = int(client.get(f"coelho:{DOMAIN}:seq") or 0)
    client.close()
    return counts, head


def log_head(platform: Platform) -> int:
    import redis

    for _ in range(100):
        try:
            client = redis.Redis.from_url(platform.settings.redis_url, socket_timeout=5)
            head = int(client.get(f"coelho:{DOMAIN}:seq") or 0)
            client.close()
            return head
        except (redis.RedisError, OSError):
            time.sleep(0.5)
    raise RuntimeError("Redis unreachable")


def dead_letters(platform: Platform, tag: str) -> dict[str, str]:
    """Dead-lettered events of this run: id -> reason."""
    from coelho.dlq_command import read_dead_letters

    return {
        d.id: (f"{d.code} " if d.code else "") + d.reason[:100]
        for d in read_dead_letters(platform.settings.kafka_bootstrap, idle=2.0)
        if d.id.startswith(tag)
    }


@dataclass
class Result:
    scenario: str
    produced: int = 0
    learned_once: int = 0
    learned_twice: int = 0
    dead_lettered: int = 0
    lost: int = 0
    recover_s: float | None = None
    model_equals_replay: bool | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    note: str = ""
    duplicates_sent: int = 0
    late: int = 0  # missing when the scenario was counted, learned later (the final recount)
    faults: int = 1  # how many times the fault was injected during the load (kill -9 and restarts: --repeat)
    recover_each_s: list[float] = field(default_factory=list)  # the supervisor's recovery after each of them
    missing_ids: list[str] = field(default_factory=list)
    acknowledged_ids: list[str] = field(default_factory=list)  # what the Broker took (other stores are checked too)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("missing_ids")
        doc.pop("acknowledged_ids")
        return doc


def recount(platform: Platform, results: list[Result]) -> None:
    """Count again, at the very end, the events each scenario found missing: those learned since then were late
    (delivered after the scenario's settle time, e.g. behind retries), not lost."""
    counts, _ = log_ids(platform, 0)
    for r in results:
        found = [i for i in r.missing_ids if counts.get(i)]
        for ident in found:
            if counts[ident] == 1:
                r.learned_once += 1
            else:
                r.learned_twice += 1
        r.late += len(found)
        r.lost -= len(found)
        r.missing_ids = [i for i in r.missing_ids if i not in found]


def account(
    platform: Platform,
    load: Load,
    scenario: str,
    start_seq: int,
    settle: float = 90.0,
    extra_ids: set[str] | None = None,
) -> Result:
    """Wait until every acknowledged event is learned or dead-lettered (at most `settle` s), then count."""
    wanted = set(load.acknowledged) | (extra_ids or set())
    deadline = time.monotonic() + settle
    counts: Counter[str] = Counter()
    dlq: dict[str, str] = {}
    while True:
        try:
            counts, _ = log_ids(platform, start_seq)
        except Exception:  # noqa: BLE001 — Redis may still be coming back
            time.sleep(1)
            continue
        missing = wanted - set(counts)
        if not missing or time.monotonic() > deadline:
            if missing:
                dlq = dead_letters(platform, load.tag)
                missing -= set(dlq)
            if not missing or time.monotonic() > deadline:
                break
        time.sleep(1)
    if not dlq:
        dlq = dead_letters(platform, load.tag) if wanted - set(counts) else {}
    result = Result(scenario=scenario, produced=len(wanted), acknowledged_ids=sorted(wanted))
    for ident in wanted:
        n = counts.get(ident, 0)
        if n == 1:
            result.learned_once += 1
        elif n > 1:
            result.learned_twice += 1
        elif ident in dlq:
            result.dead_lettered += 1
            result.reasons[dlq[ident]] = result.reasons.get(dlq[ident], 0) + 1
        else:
            result.lost += 1
            result.missing_ids.append(ident)
    return result


def live_models(platform: Platform) -> list[str]:
    """The domain's live models, oldest first (the champion's model before any promotion first)."""
    import redis

    from eventing.domains import get_domain
    from functions.model_state import ab

    client: Any = redis.Redis.from_url(platform.settings.redis_url, socket_timeout=10)
    try:
        return [s.name for s in ab.live_models(client, get_domain(DOMAIN), seed=False)]
    finally:
        client.close()


def model_equals_replay(platform: Platform, wait: float = 60.0, model: str | None = None) -> bool | None:
    """learn-one's model equals a fresh in-process model that replays the domain's log: once learn-one has applied
    the whole log, its summary (events learned and every progressive-validation metric, which depend on each event
    learned, once, in order) equals the replay's at the same position. `model`: a live model (the replay starts
    where it was added, with its hyper-parameters); by default the first by name. None when the log no longer holds
    the model's first entry (trimmed) or learn-one never catches up within `wait` s."""
    import math

    import redis

    from eventing.domains import get_domain
    from functions.model_state import ab
    from functions.model_state.event_log import EventLog
    from functions.model_state.keys import key, model_key
    from functions.model_state.online_model import OnlineModel

    domain = get_domain(DOMAIN)
    client: Any = redis.Redis.from_url(platform.settings.redis_url, socket_timeout=10)
    summary: dict[str, Any] = {}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        models = (
            [model]
            if model
            else sorted(
                m.decode() for m in client.smembers(key(DOMAIN, "live")) or client.smembers(key(DOMAIN, "models"))
            )
        )
        raw = client.hget(model_key(DOMAIN, models[0], "summary"), "json") if models else None
        summary = json.loads(raw) if raw else {}
        if summary and int(summary.get("seq", 0)) >= int(client.get(key(DOMAIN, "seq")) or 0):
            break
        time.sleep(0.5)
    else:
        return None
    spec = next((s for s in ab.live_models(client, domain, seed=False) if s.name == summary["model"]), None)
    params, start_seq = (spec.params, spec.start_seq) if spec is not None else ({}, 0)
    entries = EventLog(client, domain).read_after(start_seq, count=1_000_000)
    if not entries or entries[0].seq != start_seq + 1:
        return None
    fresh = OnlineModel.fresh(domain, summary["model"], params, seq=start_seq)
    for e in entries:
        if e.seq > int(summary["seq"]):
            break
        fresh.learn_one(e.seq, e.kind, e.event, e.t_ms)
    mine = json.loads(json.dumps(fresh.summary()))

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return bool(a == b)

    return bool(
        mine["seq"] == summary["seq"]
        and mine["events_learned"] == summary["events_learned"]
        and same(mine["metrics"], summary["metrics"])
    )


def run_scenario(
    platform: Platform,
    scenario: str,
    fault: Callable[[Load], object],
    *,
    rate: float = 20.0,
    before: float = 3.0,
    after: float = 6.0,
    settle: float = 90.0,
    check_model: bool = False,
) -> Result:
    """Load for `before` s, the fault (at a random instant within the next second), load for `after` s more, then
    the accounting. Time to recover: from the fault until the log holds an event sent after it."""
    start_seq = log_head(platform)
    load = Load(platform, rate=rate)
    load.start()
    time.sleep(before + random.random())
    fault_at = time.monotonic()
    sent_before = len(load.acknowledged)
    fault(load)
    time.sleep(after)
    load.stop()
    result = account(platform, load, scenario, start_seq, settle=settle)
    # recovery: the first acknowledged event after the fault that is in the log
    later = load.acknowledged[sent_before + 1 :]
    if later:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts, _ = log_ids(platform, start_seq)
            if any(i in counts for i in later):
                break
            time.sleep(0.5)
        result.recover_s = round(_first_learned_after(platform, later, start_seq, fault_at), 2)
    if check_model:
        result.model_equals_replay = model_equals_replay(platform)
    result.duplicates_sent = load.retries
    return result


def _first_learned_after(platform: Platform, ids: list[str], start_seq: int, fault_at: float) -> float:
    """Seconds from the fault to the log time of the first event sent after it (log times are wall clock)."""
    import redis

    client: Any = redis.Redis.from_url(platform.settings.redis_url, socket_timeout=10)
    wanted = set(ids)
    wall_fault = time.time() - (time.monotonic() - fault_at)
    for _entry_id, fields in client.xrange(f"coelho:{DOMAIN}:log", min=f"{start_seq + 1}-0"):
        if fields.get(b"k") == b"record" and json.loads(fields[b"d"]).get("transaction_id") in wanted:
            client.close()
            return max(0.0, int(fields[b"t"]) / 1000 - wall_fault)
    client.close()
    return float("nan")
