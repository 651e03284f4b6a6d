"""At-least-once consumption: commit an offset only when every record before it is done.

A `CommittingConsumer` polls one consumer group in its own thread and hands each record to a handler together
with a `done` callback. Handlers finish out of order (parallel deliveries, producer callbacks); an
`OffsetTracker` per partition moves the commit point over the contiguous prefix of finished offsets. Only the
polling thread touches the KafkaConsumer (kafka-python's consumer is not thread-safe); other threads report
completions through a queue.

>>> t = OffsetTracker()
>>> for o in (5, 6, 7): t.add(o)
>>> t.done(6), t.done(5), t.commit_point
(None, 7, 7)
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from eventing.router.metrics import RouterMetrics

log = logging.getLogger(__name__)

Done = Callable[[], None]
# Tansu holds a fetch for fetch_max_wait_ms even when data arrives meanwhile, so the wait bounds the latency the
# broker adds. With its log on S3, a fetch reads one object per stored batch and returns what it read when the
# wait ends: under a backlog, short waits return (nearly) empty fetches and a consumer read ~1 batch/s (ADR 0070).
# So the wait follows the backlog (ADR 0116): while the records fetched are fresh (the newest produced less than
# BEHIND_MS ago) the consumer keeps up and a short wait keeps latency low; once they are older it is behind and
# long waits gather many batches per fetch; after IDLE_AFTER_S without records, an idle wait (few S3 reads).
FETCH_MAX_WAIT_MS = 500  # behind: throughput (ADR 0070)
# keeping up: latency (COELHO_ROUTER_SHORT_FETCH_WAIT_MS, e.g. to trade S3 reads for latency)
SHORT_FETCH_MAX_WAIT_MS = int(os.environ.get("COELHO_ROUTER_SHORT_FETCH_WAIT_MS") or 20)
IDLE_FETCH_MAX_WAIT_MS = 250
IDLE_AFTER_S = 2.0
BEHIND_MS = int(os.environ.get("COELHO_ROUTER_BEHIND_MS") or 250)
# Tansu answers a fetch at once when records are there and holds it for the whole wait when none are (it does not
# wake up when one arrives). Fetching again the moment a batch was handed out finds the partitions empty and
# parks the next records for FETCH_MAX_WAIT_MS: 108-120 ms median delivery latency at 300 ev/s. Pausing a few ms
# after a non-empty fetch lets the next records land first (bench/router, ADR 0020: 4 ms measured best).
FETCH_PAUSE_S = 0.004
CLOSE_TIMEOUT_MS = 1000  # leaving the group on stop: bounded, the broker times a silent member out anyway
RESTART_DELAY_S = 1.0  # after the polling loop failed: a new KafkaConsumer, from the committed offsets
# A group (re)join that has not ended in an assignment after this long is stuck: after the S3-backed broker's store
# came back, kafka-python was seen waiting for good on a SyncGroup answer that never came, the consumer polling
# nothing while its records piled up. A new consumer joins afresh (ADR 0119).
REJOIN_STALL_S = float(os.environ.get("COELHO_ROUTER_REJOIN_STALL_S") or 60.0)


class GroupJoinStalled(RuntimeError):
    """The consumer has been (re)joining its group for longer than REJOIN_STALL_S."""


Handler = Callable[[Any, Done], None]
# What to do with a record the handler could not take (it raised): (record, reason, done). Dead-letter it.
Poison = Callable[[Any, str, Done], None]


class OffsetTracker:
    """Offsets of one partition handed out, and the next offset to commit."""

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.finished: set[int] = set()
        self.commit_point: int | None = None

    def add(self, offset: int) -> None:
        self.pending.append(offset)

    def done(self, offset: int) -> int | None:
        """Mark `offset` finished; return the new commit point when it moved."""
        self.finished.add(offset)
        moved = None
        while self.pending and self.pending[0] in self.finished:
            first = self.pending.popleft()
            self.finished.discard(first)
            moved = self.commit_point = first + 1
        return moved


class CommittingConsumer:
    """Poll `topics` as `group`, call `handler(record, done)` per record, commit finished prefixes."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        group: str,
        topics: list[str],
        handler: Handler,
        metrics: RouterMetrics,
        initial_offset: str = "earliest",
        max_inflight: int = 2000,
        commit_interval: float = 0.2,
        seeds: Callable[[str], dict[TopicPartition, int]] | None = None,
        poison: Poison | None = None,
    ):
        self.name = name
        self.bootstrap = bootstrap
        self.group = group
        self.topics = topics
        self.handler = handler
        self.max_inflight = max_inflight
        self.commit_interval = commit_interval
        self.initial_offset = "earliest" if initial_offset == "earliest" else "latest"
        self.completions: queue.SimpleQueue[tuple[TopicPartition, int, int]] = queue.SimpleQueue()
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        self.generation = 0  # bumped on revocation so completions of revoked work are ignored
        self.inflight = 0
        self.assigned = threading.Event()
        self.stopping = threading.Event()
        self._to_commit: dict[TopicPartition, int] = {}
        self._thread: threading.Thread | None = None
        self._fetched = metrics.fetched.labels(group)
        self._committed = metrics.committed.labels(group)
        self._fetch_age = metrics.fetch_age.labels(group)
        self._lag = metrics.lag.labels(group)
        self._consumer: KafkaConsumer | None = None
        self._finished = 0  # records done (delivered, filtered out, dead-lettered) since start
        self._reported = 0
        self._last_records = time.monotonic()
        self._wait = FETCH_MAX_WAIT_MS  # the current fetch wait (next_fetch_wait)
        self._seeds = seeds  # start offsets for a group that has none (read once, before joining)
        self._pending_seeds: dict[TopicPartition, int] = {}
        self._poison = poison
        self._poisoned = metrics.poisoned
        self.restarts = 0
        self._restarts = metrics.consumer_restarts.labels(group)
        self._joining_since: float | None = None  # set while the group has not (re)assigned partitions to us

    # --- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"consume-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.join(timeout)

    @property
    def healthy(self) -> bool:
        """The polling thread runs and the group has its partitions (what readiness reports)."""
        return self.assigned.is_set() and self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Wait for the polling thread to commit what is finished and leave the group (after `stopping` is set)."""
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))

    # --- the polling thread --------------------------------------------------------------------------
    def _make_consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=self.initial_offset,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_records=1000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            client_id=f"coelho-router-{self.name}",
        )
        if self._seeds is not None:
            self._pending_seeds = self._seeds(self.group)
        consumer.subscribe(self.topics, listener=_Listener(self))
        self._joining_since = time.monotonic()
        return consumer

    def _run(self) -> None:
        """Poll until stopped. A failure of the loop (the broker gone, a record kafka-python cannot parse) is
        logged, readiness turns red, and a new consumer starts from the committed offsets after a pause: the
        thread never ends while the router runs (a dead consumer with green readiness would stall silently)."""
        while not self.stopping.is_set():
            consumer = self._connect()
            if consumer is None:
                return
            try:
                self._poll_loop(consumer)
                return
            except Exception:
                self.restarts += 1
                self._restarts.inc()
                log.exception("%s: consumer loop failed; restarting from the committed offsets", self.name)
                self.assigned.clear()
                self._forget_work()
            finally:
                consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
            self.stopping.wait(RESTART_DELAY_S)

    def _connect(self) -> KafkaConsumer | None:
        while not self.stopping.is_set():
            try:
                self._consumer = self._make_consumer()
                return self._consumer
            except Exception as exc:  # broker not up yet
                log.warning("%s: cannot connect to Kafka (%s); retrying", self.name, exc)
                self.stopping.wait(1.0)
        return None

    def _poll_loop(self, consumer: KafkaConsumer) -> None:
        last_commit = time.monotonic()
        while not self.stopping.is_set():
            self._drain_completions()
            if self.inflight >= self.max_inflight:
                self._wait_completion(0.05)
            else:
                # Short polls while deliveries are in flight (their offsets get committed), long ones when idle.
                batches = consumer.poll(timeout_ms=50 if self.inflight else 500)
                if consumer.assignment():
                    self.assigned.set()
                self._check_join()
                newest = max((records[-1].timestamp or 0 for records in batches.values()), default=0)
                self._adapt_fetch_wait(consumer, bool(batches), newest)
                now_ms = time.time() * 1000
                observe_age = self._fetch_age.observe
                for tp, records in batches.items():
                    tracker = self.trackers.setdefault(tp, OffsetTracker())
                    generation = self.generation
                    for record in records:
                        tracker.add(record.offset)
                        if record.timestamp:
                            observe_age(max(0.0, now_ms - record.timestamp) / 1000)
                        self.inflight += 1
                        self._hand_over(record, self._done_callback(tp, record.offset, generation))
                    self._fetched.inc(len(records))
                if batches:
                    self.stopping.wait(FETCH_PAUSE_S)
            if self._to_commit and time.monotonic() - last_commit >= self.commit_interval:
                self._commit(consumer)
                last_commit = time.monotonic()
        self._drain_completions()
        self._commit(consumer)

    def _hand_over(self, record: Any, done: Done) -> None:
        """The handler takes the record; if it raises, the record is poison: dead-letter it and carry on."""
        try:
            self.handler(record, done)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._poisoned.labels(self.group, type(exc).__name__).inc()
            log.error(
                "%s: record %s-%s@%s cannot be routed (%s); dead-lettering it",
                self.name,
                record.topic,
                record.partition,
                record.offset,
                reason,
            )
            if self._poison is None:
                done()
                return
            try:
                self._poison(record, reason, done)
            except Exception:
                log.exception("%s: dead-lettering record at offset %s failed; skipping it", self.name, record.offset)
                done()

    def _forget_work(self) -> None:
        """After a failed loop: what was handed out is redelivered by the next consumer (at-least-once)."""
        self.trackers.clear()
        self._to_commit.clear()
        self.generation += 1
        self.inflight = 0

    def _adapt_fetch_wait(self, consumer: KafkaConsumer, got_records: bool, newest_ms: int = 0) -> None:
        wait = self.next_fetch_wait(time.monotonic(), got_records, newest_ms, time.time() * 1000)
        fetcher = getattr(consumer, "_fetcher", None)  # kafka-python reads this per fetch request
        if fetcher is not None and fetcher.config.get("fetch_max_wait_ms") != wait:
            fetcher.config["fetch_max_wait_ms"] = wait

    def next_fetch_wait(self, now: float, got_records: bool, newest_ms: int, wall_ms: float) -> int:
        """The fetch wait after a poll: short while keeping up, long when behind, idle after a silence.

        An empty poll doubles the wait (up to the long one): on the S3-backed broker a fetch shorter than its S3
        reads comes back empty even when records are there, and short empty fetches would spin (ADR 0070).

        >>> c = CommittingConsumer.__new__(CommittingConsumer)
        >>> c._last_records, c._wait = 0.0, FETCH_MAX_WAIT_MS
        >>> c.next_fetch_wait(1.0, True, 99_990, 100_000)     # fresh records: keeping up
        20
        >>> [c.next_fetch_wait(1.1, False, 0, 100_000) for _ in range(5)]  # empty polls: longer and longer
        [40, 80, 160, 320, 500]
        >>> c.next_fetch_wait(1.2, True, 99_000, 100_000)     # the newest is 1 s old: behind
        500
        >>> c.next_fetch_wait(5.0, False, 0, 100_000)         # nothing for 2 s: idle
        250
        """
        if got_records:
            self._last_records = now
            behind = newest_ms > 0 and wall_ms - newest_ms > BEHIND_MS
            self._wait = FETCH_MAX_WAIT_MS if behind else SHORT_FETCH_MAX_WAIT_MS
        elif now - self._last_records > IDLE_AFTER_S:
            self._wait = IDLE_FETCH_MAX_WAIT_MS
        else:
            self._wait = min(FETCH_MAX_WAIT_MS, self._wait * 2)
        return self._wait

    def _done_callback(self, tp: TopicPartition, offset: int, generation: int) -> Done:
        put = self.completions.put

        def done() -> None:
            put((tp, offset, generation))

        return done

    def _wait_completion(self, timeout: float) -> None:
        try:
            item = self.completions.get(timeout=timeout)
        except queue.Empty:
            return
        self._complete(*item)

    def _drain_completions(self) -> None:
        get = self.completions.get_nowait
        while True:
            try:
                item = get()
            except queue.Empty:
                return
            self._complete(*item)

    def _complete(self, tp: TopicPartition, offset: int, generation: int) -> None:
        if generation != self.generation:
            return
        self.inflight -= 1
        self._finished += 1
        tracker = self.trackers.get(tp)
        if tracker is None:
            return
        moved = tracker.done(offset)
        if moved is not None:
            self._to_commit[tp] = moved

    def _commit(self, consumer: KafkaConsumer) -> None:
        if not self._to_commit:
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._to_commit.items()}
        try:
            consumer.commit(offsets)
        except Exception as exc:  # a rebalance in between: the next commit carries the same offsets
            log.warning("%s: commit failed (%s)", self.name, exc)
            return
        self._to_commit.clear()
        self._pending_seeds.clear()  # the group has offsets of its own now
        self._committed.inc(self._finished - self._reported)
        self._reported = self._finished
        self._lag.set(self.inflight)

    def on_revoked(self) -> None:
        """Eager rebalancing takes every partition away: commit what is finished and forget the rest."""
        self._joining_since = time.monotonic()
        if self._consumer is not None:
            self._drain_completions()
            self._commit(self._consumer)
        self._forget_work()

    def on_assigned(self) -> None:
        """The (re)join ended: the group gave this member its partitions (possibly none)."""
        self._joining_since = None

    def _check_join(self) -> None:
        """Raise GroupJoinStalled when a (re)join has not ended after REJOIN_STALL_S: the loop then starts a new
        consumer from the committed offsets. Nothing is in flight while no partition is assigned."""
        since = self._joining_since
        if since is not None and time.monotonic() - since > REJOIN_STALL_S:
            raise GroupJoinStalled(f"{self.group}: no partition assignment after {REJOIN_STALL_S:.0f} s of joining")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python has no type hints: Any
    def __init__(self, owner: CommittingConsumer):
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner.on_revoked()

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner.on_assigned()
        consumer = self.owner._consumer
        for tp in assigned or ():
            seed = self.owner._pending_seeds.get(tp)
            if seed is not None and consumer is not None:
                consumer.seek(tp, seed)
        if assigned:
            self.owner.assigned.set()
