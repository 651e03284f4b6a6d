"""One process's in-memory copy of a model (`ModelReplica`), kept equal to its domain's event log.

Why and the measurements: docs/adr/0031-model-state-event-log.md. In short:

- Every process holds each model in memory and learns the log entries after its own position
  (`OnlineModel.learn_one`: predict, score, learn). When an append returns seq == local seq + 1 the process learns
  the event it already has, without reading it back (`learn_committed`); otherwise it catches up from the log.
- Learners write snapshots (`functions.model_state.codec`) with compare-and-set on the sequence number every
  SNAPSHOT_EVERY entries; the log is trimmed only below the oldest snapshot (minus a margin). A cold replica loads
  the latest snapshot and replays the rest. Pause: `coelho:<domain>:paused_at` = a seq replicas stop at; events
  are still logged, and resume lets everyone catch up.

The Redis keys are listed in `functions.model_state.keys`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis
from prometheus_client import Counter, Gauge

from eventing.domain import Domain
from eventing.domains import DOMAINS, get_domain
from functions.model_state import ab, ab_outcomes, ab_served
from functions.model_state.codec import StateRefused
from functions.model_state.event_log import EventLog, LogEntry
from functions.model_state.keys import key, model_key
from functions.model_state.online_model import OnlineModel, Outcome

log = logging.getLogger("coelho.functions.model_state.online_model")

SNAPSHOT_EVERY = int(os.environ.get("COELHO_SNAPSHOT_EVERY", "1000"))  # log entries between snapshots
HISTORY_EVERY = int(os.environ.get("COELHO_HISTORY_EVERY", "100"))  # entries between history points
HISTORY_MAX = 2000  # history points kept per model
DRIFT_MAX = 500  # drift markers kept per model
# Entries kept below the oldest snapshot so lagging replicas rarely reload one (bench/e2e_learn.py raises it to
# check every record of a long run in the log).
TRIM_MARGIN = int(os.environ.get("COELHO_LOG_KEEP", "10000"))
SUMMARY_EVERY_S = 0.5
# How long a request whose entry is not next in line waits for the requests holding the entries before it (in
# this process) to apply them, before reading them back from the log (ADR 0070).
DIRECT_WAIT_S = float(os.environ.get("COELHO_DIRECT_WAIT_S", "0.2"))

EVENTS_LEARNED = Gauge("coelho_model_events_learned", "Events the model has learned", ["domain", "model"])
LOG_POSITION = Gauge(
    "coelho_model_log_position", "Last event-log sequence number applied by this process", ["domain", "model"]
)
DRIFTS = Counter("coelho_drift_detected_total", "Drifts detected by the models' ADWIN detectors", ["domain", "model"])
SNAPSHOTS = Counter("coelho_model_snapshots_total", "Model snapshots written to Redis", ["domain", "model"])
DUPLICATES = Counter("coelho_events_duplicate_total", "Deliveries dropped as duplicates", ["domain"])
LOG_LOST = Counter(
    "coelho_model_log_lost_total",
    "Times a process found Redis holding less of a domain's log than its models learned (Redis wiped or restarted "
    "without its data, or lost its last writes), by what it did: reseeded Redis from its models, reloaded the "
    "snapshot, kept its model, reset, diverged (the log reused sequence numbers it had learned: reloaded, replayed)",
    ["domain", "outcome"],
)

_RESEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[#ARGV - 1] ~= '' then redis.call('SET', KEYS[2], ARGV[#ARGV - 1]) end
for i = 3, #KEYS do
  local at = 2 + (i - 3) * 3
  redis.call('HSET', KEYS[i], 'seq', ARGV[at], 'blob', ARGV[at + 1], 'events_learned', ARGV[at + 2],
    'written_ms', ARGV[#ARGV])
end
return 1
"""


def reseed(client: redis.Redis, domain: Domain, replicas: list[ModelReplica]) -> bool:
    """Redis lost a domain's log (no sequence number) while these replicas hold models: write their snapshots and set
    the sequence number to the furthest position, in one script, unless another process did first (then its
    snapshots are the ones every replica reloads). Models behind that position skip the entries in between: they
    are gone with the log. True if this call re-seeded."""
    locks = [r.lock for r in replicas]
    for lock in locks:
        lock.acquire()
    try:
        position = max((r.state.seq for r in replicas), default=0)
        if position == 0:
            return False
        furthest = max(replicas, key=lambda r: r.state.seq)
        chain = furthest.state.__dict__.get("chain") or ""
        keys = [key(domain.name, "seq"), key(domain.name, "chain")]
        args: list[int | bytes | str] = [position]
        for replica in replicas:
            replica.state.seq = position  # the entries between are lost with the log
            replica.state.chain = chain or None
            keys.append(replica.mkey("snapshot"))
            args += [position, replica.state.to_bytes(), replica.state.events_learned]
        done = bool(client.register_script(_RESEED)(keys=keys, args=[*args, chain, int(time.time() * 1000)]))
    finally:
        for lock in reversed(locks):
            lock.release()
    if done:
        LOG_LOST.labels(domain.name, "reseeded").inc()
        log.error(
            "%s: Redis had lost the log: re-seeded from this process's models at seq %d (%s); entries appended to the "
            "lost log after what these models learned are gone",
            domain.name,
            position,
            ", ".join(f"{r.model_name} {r.state.events_learned} events" for r in replicas),
        )
    return done


def models_for(domain: Domain, environ: Mapping[str, str] | None = None) -> list[str]:
    """Model names a deployment runs for a domain: COELHO_MODEL_<DOMAIN>=name[,name...] or the default."""
    env = os.environ if environ is None else environ
    raw = env.get(f"COELHO_MODEL_{domain.name.upper()}", "")
    names = [n.strip() for n in raw.split(",") if n.strip()] or [domain.default_model]
    for name in names:
        if name not in domain.model_factories:
            raise ValueError(
                f"COELHO_MODEL_{domain.name.upper()}: unknown model {name!r}, choose from {', '.join(domain.model_factories)}"
            )
    return names


_SET_IF_NEWER = """
local current = tonumber(redis.call('HGET', KEYS[1], 'seq') or '-1')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], unpack(ARGV, 2))
return 1
"""

_ADD_POINT = """
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
  return 1
end
return 0
"""


class ModelReplica:
    """One process's in-memory copy of a domain model, kept equal to the log. Thread-safe (one lock).

    role "learner" also writes snapshots, history points, drift markers, the live summary and the paired outcomes
    of A/B comparisons (functions/model_state/ab_outcomes.py) to Redis; with `score_served`, it also scores the
    answers predict-one served for the labelled events it learns (functions/model_state/ab_served.py). params: the
    model's hyper-parameters (a challenger's).
    """

    def __init__(
        self,
        client: redis.Redis,
        domain: Domain,
        model_name: str | None = None,
        role: str = "follower",
        on_drift: Callable[[ModelReplica, Outcome], None] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.redis: Any = client
        self.domain = domain
        self.model_name = model_name or domain.default_model
        self.role = role
        self.params = dict(params or {})
        self.score_served = False
        self._outcomes: list[tuple[int, str]] = []  # paired outcomes not written yet (learners)
        self._labelled: list[tuple[str, Any]] = []  # (event id, truth) of labelled entries (score_served)
        self._served_scorer = ab_served.ServedScorer(client) if role == "learner" else None
        self.log = EventLog(client, domain)
        self.lock = threading.RLock()
        self.applied = threading.Condition(self.lock)  # notified whenever the local position moves
        self._expected: dict[int, float] = {}  # seq -> when a request of this process appended it (see expect)
        self.on_drift = on_drift
        self.state = OnlineModel.fresh(domain, self.model_name, self.params)
        self._summary_at = 0.0
        self._set_if_newer = client.register_script(_SET_IF_NEWER)
        self._add_point = client.register_script(_ADD_POINT)
        self.synced_at = 0.0  # monotonic time of the last successful read of the log
        self._reset_checked_at = 0.0
        self._lost_reported: tuple[int, str] | None = None
        self.version: str | None = None  # registered MLflow version of the last checkpoint, if known
        self._summary_timer: threading.Timer | None = None  # trailing summary write after a burst
        if role == "learner":  # listed from the start (dashboard, `coelho models`, exporters)
            DRIFTS.labels(domain.name, self.model_name)  # exported at 0 from the start: rate() and alerts work
            try:
                client.sadd(key(domain.name, "models"), self.model_name)
            except redis.ConnectionError:
                log.warning("%s/%s: Redis unreachable, model not listed yet", domain.name, self.model_name)

    def mkey(self, part: str) -> str:
        return model_key(self.domain.name, self.model_name, part)

    # --- loading ------------------------------------------------------------------------------
    def load_snapshot(self) -> bool:
        """Replace the in-memory state by Redis's snapshot if it is ahead. True if loaded."""
        blob, seq = self.redis.hmget(self.mkey("snapshot"), ["blob", "seq"])
        if blob is None or int(seq or 0) <= self.state.seq:
            return False
        try:
            state = self._verified(blob, seq)
        except StateRefused:  # logged and counted by the codec: keep what this replica has, replay the log
            return False
        with self.lock:
            self.state = state
        log.info("%s/%s: loaded snapshot at seq %d", self.domain.name, self.model_name, state.seq)
        return True

    def _verified(self, blob: bytes, seq: Any) -> OnlineModel:
        """The state of this model's Redis snapshot, signed for this domain, model and position (StateRefused)."""
        return OnlineModel.from_bytes(blob, self.domain.name, self.model_name, int(seq or 0), where="redis")

    def install(self, state: OnlineModel) -> None:
        """Write `state` as this model's snapshot (compare-and-set) and adopt it if it is ahead (restore)."""
        self.write_snapshot(state)
        if self.redis.set(self.log.seq_key, state.seq, nx=True) and state.__dict__.get("chain"):
            self.redis.set(self.log.chain_key, str(state.chain))
        self.load_snapshot()

    # --- learning the log ---------------------------------------------------------------------
    def catch_up(
        self,
        paused_at: int | None = None,
        check_pause: bool = True,
        batch: int = 2000,
        on_learned: Callable[[LogEntry, Outcome], None] | None = None,
    ) -> list[Outcome]:
        """Learn every log entry after the local position (up to a pause), in order. Returns what each did.

        The one replay loop of the platform: learners, followers and the assistant's read-only replicas all catch up
        here. Reads happen outside the lock, so predictions served from this replica never wait on Redis.
        on_learned: called under the lock with each entry and its outcome (e.g. to record its prediction).
        """
        done: list[Outcome] = []
        if check_pause:
            paused_at = self.log.paused_at()
        while True:
            entries = self.log.read_after(self.state.seq, count=batch)
            self.synced_at = time.monotonic()
            if not entries:
                self._check_reset()
                break
            stop = False
            with self.lock:
                entries = [e for e in entries if e.seq > self.state.seq]
                if entries and entries[0].seq != self.state.seq + 1:
                    self._reset_to_snapshot(needed=entries[0].seq)
                    continue
                applied = []
                diverged = False
                for entry in entries:
                    if paused_at is not None and entry.seq > paused_at:
                        stop = True
                        break
                    if self._diverged(entry):
                        diverged = True
                        break
                    outcome = self._learn_entry(entry)
                    applied.append(outcome)
                    if on_learned is not None:
                        on_learned(entry, outcome)
                self._after_learning(applied)
                done.extend(applied)
                if diverged:
                    self._recover_divergence(entry)
                    continue
            if stop or len(entries) < batch:
                break
        return done

    def _check_reset(self) -> None:
        """About once a second: if Redis is behind this replica (flushed, restored), take Redis's snapshot."""
        now = time.monotonic()
        if now - self._reset_checked_at < 1.0:
            return
        self._reset_checked_at = now
        if self.state.seq > self.log.head():
            with self.lock:
                self._reset_to_snapshot()

    def expect(self, seq: int) -> None:
        """Announce that a request of this process appended `seq` and is about to `learn_committed` it here."""
        now = time.monotonic()
        self._expected[seq] = now
        if len(self._expected) > 10_000:  # entries never applied here (a pause): forget the old ones
            for old in [k for k, t in list(self._expected.items()) if now - t > 5.0]:
                self._expected.pop(old, None)

    def _expecting(self, first: int, last: int) -> bool:
        """Were all of first..last appended by requests of this process that are still to apply them?"""
        if last - first > 256:
            return False
        return all(s in self._expected for s in range(first, last + 1))

    def learn_committed(self, entry: LogEntry, paused_at: int | None, wait: float = DIRECT_WAIT_S) -> list[Outcome]:
        """Apply an event just appended: directly when it is next in line, else by catching up.

        Concurrent requests append in one order and reach the lock in another. When the entries before this one
        were all announced (`expect`) by requests of this process, those requests are about to apply them: wait
        up to `wait` seconds for that (each apply notifies) instead of reading the log back from Redis under the
        lock. Otherwise (an entry appended by another replica), or after the wait, catch up from the log.
        """
        if paused_at is not None and entry.seq > paused_at:
            self._expected.pop(entry.seq, None)  # applied after the resume, by a catch-up
            return []
        with self.lock:
            if entry.seq > self.state.seq + 1 and wait > 0 and self._expecting(self.state.seq + 1, entry.seq - 1):
                self.applied.wait_for(lambda: entry.seq <= self.state.seq + 1, timeout=wait)
            if entry.seq == self.state.seq + 1 and self._diverged(entry):
                self._recover_divergence(entry)
                return self.catch_up(paused_at=paused_at, check_pause=False)
            if entry.seq == self.state.seq + 1:
                applied = [self._learn_entry(entry)]
                self._after_learning(applied)
                return applied
            if entry.seq <= self.state.seq:
                if self.state.seq > self.log.head():  # the log lost what this replica learned (flushed, restored)
                    self._reset_to_snapshot()
                    return self.catch_up(paused_at=paused_at, check_pause=False)
                return []
            return self.catch_up(paused_at=paused_at, check_pause=False)

    def _reset_to_snapshot(self, needed: int | None = None) -> None:
        blob, seq = self.redis.hmget(self.mkey("snapshot"), ["blob", "seq"])
        if blob is None:
            if needed is not None:
                raise RuntimeError(
                    f"{self.domain.name}/{self.model_name}: log starts at {needed}, no snapshot covers it"
                )
            if self.state.seq > 0 and not self.redis.exists(self.log.seq_key):
                self._log_lost("kept")  # Redis lost the log: keep the model until a learner re-seeds Redis
                return
            if self.state.seq > 0:  # a new log was started without re-seeding (a learner holding no model): follow it
                self._log_lost("reset")
            self.state = OnlineModel.fresh(self.domain, self.model_name, self.params)
            return
        if self.state.seq > self.log.head():
            self._log_lost("reloaded")
        try:
            state = self._verified(blob, seq)
        except StateRefused as exc:  # never loaded: this replica keeps serving what it has
            raise RuntimeError(f"{self.domain.name}/{self.model_name}: snapshot refused, not reloaded: {exc}") from exc
        self.state = state
        if needed is not None and self.state.seq + 1 < needed:
            raise RuntimeError(
                f"{self.domain.name}/{self.model_name}: snapshot at {self.state.seq}, log starts at {needed}"
            )
        log.warning("%s/%s: reloaded snapshot at seq %d", self.domain.name, self.model_name, self.state.seq)

    def _log_lost(self, outcome: str) -> None:
        """Redis holds less of the log than this replica learned (wiped, restarted without its data): say so, once
        per position. kept: no snapshot yet, the replica keeps its model until a learner re-seeds Redis (`reseed`);
        reloaded: it takes the snapshot the log continues from, and what it learned beyond is dropped; reset: a new
        log was started from nothing (by a learner that held no model), the replica follows it from scratch."""
        if self._lost_reported == (self.state.seq, outcome):
            return
        self._lost_reported = (self.state.seq, outcome)
        LOG_LOST.labels(self.domain.name, outcome).inc()
        log.error(
            "%s/%s: Redis holds the log up to %d, this replica learned up to %d: %s",
            self.domain.name,
            self.model_name,
            self.log.head(),
            self.state.seq,
            {
                "kept": "model kept, waiting for a learner to re-seed Redis",
                "reloaded": "reloading the snapshot the log continues from",
                "reset": "a new log started from nothing: following it from a fresh model",
            }[outcome],
        )

    def _diverged(self, entry: LogEntry) -> bool:
        """Does the next entry not continue the chain this replica learned (Redis lost entries it had learned and
        gave their sequence numbers to other events)? Unknown chains (older entries or states) are not checked."""
        chain = self.state.__dict__.get("chain")
        return chain is not None and entry.prev is not None and entry.prev != chain

    def _recover_divergence(self, entry: LogEntry) -> None:
        """Reload the snapshot (or start again from the log) so that the model equals a replay of what the log
        holds; the entries this replica learned past `entry.seq - 1` are the ones Redis lost."""
        learned = self.state.seq
        LOG_LOST.labels(self.domain.name, "diverged").inc()
        log.error(
            "%s/%s: the log diverges at seq %d from what this replica learned up to %d: Redis lost up to %d "
            "acknowledged entries (a crash with appendfsync everysec) and reused their numbers; reloading the "
            "snapshot and replaying the log",
            self.domain.name,
            self.model_name,
            entry.seq,
            learned,
            learned - entry.seq + 1,
        )
        self.state = OnlineModel.fresh(self.domain, self.model_name, self.params)
        blob, seq = self.redis.hmget(self.mkey("snapshot"), ["blob", "seq"])
        if blob is not None and int(seq or 0) < entry.seq:
            with contextlib.suppress(StateRefused):  # reported by the codec: replay from the start of the log
                self.state = self._verified(blob, seq)
        if entry.seq == self.state.seq + 1 and self._diverged(entry):  # the snapshot does not chain either
            log.warning("%s/%s: snapshot off the log's chain, chain check restarts", self.domain.name, self.model_name)
            self.state.chain = None

    def _learn_entry(self, entry: LogEntry) -> Outcome:
        self._expected.pop(entry.seq, None)
        applied = self.state.learn_one(entry.seq, entry.kind, entry.event, entry.t_ms)
        if entry.chain is not None:
            self.state.chain = entry.chain
        if self.role == "learner":
            if entry.seq % HISTORY_EVERY == 0:
                self._history_point(entry)
            if applied.drift:
                self._drift_marker(entry)
                if self.on_drift is not None:
                    self.on_drift(self, applied)
            if entry.seq % SNAPSHOT_EVERY == 0:
                self.write_snapshot(self.state)
            if applied.learned:
                self._keep_outcome(entry, applied)
        return applied

    def _keep_outcome(self, entry: LogEntry, applied: Outcome) -> None:
        """Buffer this model's scored answer for the A/B comparison and, with `score_served`, the event's label
        for the answers predict-one served (written with the summary, `_flush_ab`)."""
        member = ab_outcomes.outcome_member(self.domain, entry.seq, entry.event, applied.prediction)
        if member is not None:
            self._outcomes.append((entry.seq, member))
        target = self.domain.target
        if self.score_served and target is not None and entry.event.get(target) is not None:
            self._labelled.append((str(entry.event.get(self.domain.id_field)), entry.event[target]))
        if len(self._outcomes) >= 2000 or len(self._labelled) >= 2000:
            self._flush_ab()

    def _flush_ab(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        labelled, self._labelled = self._labelled, []
        try:
            ab_outcomes.record_outcomes(
                self.redis, self.domain, self.model_name, outcomes[-ab_outcomes.OUTCOMES_KEEP :]
            )
            if self._served_scorer is not None:
                self._served_scorer.score(self.domain, labelled)
        except (redis.RedisError, OSError) as exc:  # monitoring only: the model itself is unaffected
            log.warning("%s/%s: A/B outcomes not written: %s", self.domain.name, self.model_name, exc)

    def _after_learning(self, applied: list[Outcome]) -> None:
        if not applied:
            return
        self.applied.notify_all()
        labels = (self.domain.name, self.model_name)
        EVENTS_LEARNED.labels(*labels).set(self.state.events_learned)
        LOG_POSITION.labels(*labels).set(self.state.seq)
        if self.role == "learner" and time.monotonic() - self._summary_at > SUMMARY_EVERY_S:
            self.write_summary()
        elif self.role == "learner":
            self._write_summary_later()

    def _write_summary_later(self) -> None:
        """Trailing write: the summary the dashboard reads also shows the last events of a burst."""
        if self._summary_timer is not None:
            return

        def flush() -> None:
            try:
                with self.lock:
                    self._summary_timer = None
                    self.write_summary()  # compare-and-set on seq: a no-op if nothing new
            except (redis.RedisError, OSError) as exc:
                log.warning("%s/%s: summary not written: %s", self.domain.name, self.model_name, exc)

        self._summary_timer = threading.Timer(SUMMARY_EVERY_S, flush)
        self._summary_timer.daemon = True
        self._summary_timer.start()

    # --- what learners publish ----------------------------------------------------------------
    def write_snapshot(self, state: OnlineModel) -> bool:
        blob = state.to_bytes()
        written = self._set_if_newer(
            keys=[self.mkey("snapshot")],
            args=[
                state.seq,
                "blob",
                blob,
                "events_learned",
                state.events_learned,
                "written_ms",
                int(time.time() * 1000),
            ],
        )
        self.redis.sadd(key(self.domain.name, "models"), self.model_name)
        if written:
            SNAPSHOTS.labels(self.domain.name, self.model_name).inc()
            self._trim()
        return bool(written)

    def _trim(self) -> None:
        names = [n.decode() for n in self.redis.smembers(key(self.domain.name, "live"))] or [
            n.decode() for n in self.redis.smembers(key(self.domain.name, "models"))
        ]
        seqs = [
            int(s or 0) for s in (self.redis.hget(model_key(self.domain.name, n, "snapshot"), "seq") for n in names)
        ]
        oldest = min(seqs, default=0) - TRIM_MARGIN
        if oldest > 1:
            self.redis.xtrim(self.log.log_key, minid=f"{oldest}-0", approximate=False)

    def write_summary(self) -> None:
        self._summary_at = time.monotonic()
        if self._outcomes or self._labelled:
            self._flush_ab()
        summary = self.state.summary()
        self._set_if_newer(keys=[self.mkey("summary")], args=[self.state.seq, "json", json.dumps(summary)])

    def _history_point(self, entry: LogEntry) -> None:
        values = self.state.metric_values()
        point: dict[str, Any] = {"seq": entry.seq, "t_ms": entry.t_ms, "events_learned": self.state.events_learned}
        point.update({m: values.get(m) for m in self.domain.main_metrics})
        point.update(self.state.task.history(self.state))
        self._add_point(keys=[self.mkey("history")], args=[entry.seq, json.dumps(point), HISTORY_MAX])

    def _drift_marker(self, entry: LogEntry) -> None:
        marker = {"seq": entry.seq, "t_ms": entry.t_ms, "events_learned": self.state.events_learned}
        if self._add_point(keys=[self.mkey("drift")], args=[entry.seq, json.dumps(marker), DRIFT_MAX]):
            DRIFTS.labels(self.domain.name, self.model_name).inc()

    # --- predictions --------------------------------------------------------------------------
    def predict_one(self, x: dict[str, Any]) -> tuple[Any, OnlineModel]:
        with self.lock:
            return self.state.predict_one(x), self.state


def replicas_for(
    client: redis.Redis,
    role: str,
    domains: Iterable[str] | None = None,
    on_drift: Callable[[ModelReplica, Outcome], None] | None = None,
) -> dict[str, list[ModelReplica]]:
    """The replicas a process keeps: each domain's configured models (COELHO_MODEL_<DOMAIN>)."""
    out: dict[str, list[ModelReplica]] = {}
    for name in domains or DOMAINS:
        domain = get_domain(name)
        out[domain.name] = [ModelReplica(client, domain, m, role=role, on_drift=on_drift) for m in models_for(domain)]
    return out


def sync_replicas(
    client: redis.Redis,
    domain: Domain,
    role: str,
    current: list[ModelReplica],
    on_drift: Callable[[ModelReplica, Outcome], None] | None = None,
    catch_up: bool = True,
    seed: bool = True,
) -> list[ModelReplica]:
    """The replicas of the domain's live models (functions/model_state/ab.py), in the live order: the ones of
    `current` that are still live, plus a new replica (its snapshot loaded and, with `catch_up`, the log applied)
    for each model added since. The caller swaps its list for the result: one assignment, so concurrent readers see
    the old list or the new one. seed False: a read-only reader (predict-one) never seeds an empty live set, it
    follows the configured models until a learner seeds it."""
    specs = ab.live_models(client, domain, models_for(domain), seed=seed)
    have = {r.model_name: r for r in current}
    out = []
    for spec in specs:
        replica = have.get(spec.name)
        if replica is None or replica.params != spec.params:
            replica = ModelReplica(client, domain, spec.name, role=role, on_drift=on_drift, params=spec.params)
            replica.load_snapshot()
            if catch_up:
                replica.catch_up()
            log.info("%s/%s: %s replica started at seq %d", domain.name, spec.name, role, replica.state.seq)
        out.append(replica)
    if role == "learner":
        for index, replica in enumerate(out):
            replica.score_served = index == 0  # one model per process takes the served answers (atomically)
    return out
