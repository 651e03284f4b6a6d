"""The micro-batcher: one writer thread per lake table turns concurrent requests into few commits.

A request hands its row to its table's `TableWriter` and waits: it is answered only once the batch holding its row
is committed to the Delta log (or found there already), so a crash at any instant loses nothing the platform was
told is stored. Rows that arrive while a batch is being committed form the next one (requests share commits); a
batch is closed at `batch_rows` rows or when its oldest row is `batch_ms` old, whichever comes first.

No duplicate rows: before a batch is written, each row is checked against what is committed, by its identities
(the domain's event id, and CloudEvent source + id: functions/lake/rows.py) in its `event_date` partition, and
against the rows before it in the batch. `SeenIds` keeps the identities of a few partitions in memory, read from
the table on first need and extended after every commit; after a failed commit it forgets them all and reads
again, since the log (not memory) says what is committed. One writer process per table is assumed (the Knative
Service runs at scale 1): a second one would not see the first one's rows until it re-reads a partition.

    >>> config = LakeConfig.from_env({"COELHO_LAKE_BATCH_ROWS": "100", "COELHO_LAKE_BATCH_MS": "250"})
    >>> config.batch_rows, config.batch_ms
    (100, 250.0)
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from functions.lake import metrics
from functions.lake.rows import LakeTable, Row
from functions.middleware.contract import DependencyUnavailable

log = logging.getLogger("coelho.functions.lake")

FAULTS = ("", "crash-before-commit", "crash-after-commit")


@dataclass(frozen=True)
class LakeConfig:
    """The lake function's knobs, from its environment (the coelho-config ConfigMap in a cluster)."""

    batch_rows: int = 500  # COELHO_LAKE_BATCH_ROWS: a batch is committed at this many rows ...
    batch_ms: float = 1000.0  # COELHO_LAKE_BATCH_MS: ... or when its oldest row is this old
    dedup_days: int = 7  # COELHO_LAKE_DEDUP_DAYS: event_date partitions whose identities stay in memory
    wait_s: float = 25.0  # COELHO_LAKE_WAIT_S: a request waits this long for its batch, then answers 503
    vacuum_hours: int = 168  # COELHO_LAKE_VACUUM_HOURS: files unreferenced for this long are deleted (at least 1)
    raw: bool = True  # COELHO_LAKE_RAW: also write records as received to the raw-data bucket
    # COELHO_LAKE_FAULT, for the crash tests only: exit at once (as kill -9 would) after a batch's files are
    # written but before its commit, or after its commit but before anyone is answered.
    fault: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LakeConfig:
        env = os.environ if environ is None else environ
        fault = env.get("COELHO_LAKE_FAULT", "")
        if fault not in FAULTS:
            raise ValueError(f"COELHO_LAKE_FAULT={fault!r}: one of {', '.join(repr(f) for f in FAULTS)}")
        return cls(
            batch_rows=max(1, int(env.get("COELHO_LAKE_BATCH_ROWS") or cls.batch_rows)),
            batch_ms=max(0.0, float(env.get("COELHO_LAKE_BATCH_MS") or cls.batch_ms)),
            dedup_days=max(1, int(env.get("COELHO_LAKE_DEDUP_DAYS") or cls.dedup_days)),
            wait_s=float(env.get("COELHO_LAKE_WAIT_S") or cls.wait_s),
            vacuum_hours=max(1, int(env.get("COELHO_LAKE_VACUUM_HOURS") or cls.vacuum_hours)),
            raw=(env.get("COELHO_LAKE_RAW") or "1") != "0",
            fault=fault,
        )


class Store(Protocol):
    """What the writer needs of a table's storage (functions/lake/store.py's DeltaStore; a fake in unit tests)."""

    def open(self) -> Any: ...
    def refresh(self) -> Any: ...
    def version(self) -> int: ...
    def file_count(self) -> int: ...
    def write_files(self, rows: list[Row], batch_id: str) -> list[Any]: ...
    def commit(self, actions: list[Any], app_id: str, batch: int, batch_id: str) -> int: ...
    def load_identities(self, date: str) -> set[str]: ...


class Raw(Protocol):
    def put(self, table: str, batch_id: str, rows: list[Row]) -> list[str]: ...


class SeenIds:
    """Identities of committed rows, by event_date partition, for the `keep` partitions used last.

    >>> seen = SeenIds(lambda d: {"id:a"} if d == "2026-01-01" else set(), keep=1)
    >>> seen.known(["id:a"], ["2026-01-01"]), seen.known(["id:b"], ["2026-01-01"])
    (True, False)
    >>> seen.add(["id:b"], "2026-01-01"); seen.known(["id:b"], ["2026-01-01"]), seen.loads
    (True, 1)
    >>> seen.known(["id:a"], ["2026-01-02"]), seen.known(["id:a"], ["2026-01-01"]), seen.loads  # keep=1: reloaded
    (False, True, 3)
    """

    def __init__(self, loader: Callable[[str], set[str]], keep: int = 7) -> None:
        self.loader = loader
        self.keep = keep
        self.partitions: OrderedDict[str, set[str]] = OrderedDict()
        self.loads = 0

    def _partition(self, date: str) -> set[str]:
        found = self.partitions.get(date)
        if found is None:
            found = self.loader(date)
            self.loads += 1
            self.partitions[date] = found
            while len(self.partitions) > self.keep:
                self.partitions.popitem(last=False)
        else:
            self.partitions.move_to_end(date)
        return found

    def known(self, identities: list[str] | tuple[str, ...], dates: list[str]) -> bool:
        return any(i in self._partition(d) for d in dates for i in identities)

    def add(self, identities: list[str] | tuple[str, ...], date: str) -> None:
        """After a commit. A partition not in memory is not read for this: it is read, commits included, when needed."""
        found = self.partitions.get(date)
        if found is not None:
            found.update(identities)

    def forget(self) -> None:
        self.partitions.clear()


def dedup_dates(row: Row) -> list[str]:
    """Where a duplicate of `row` would be: its event_date; when that date is the arrival's (the event carries no
    time), also the day before (a redelivery arrives after the first delivery, maybe after midnight).

    >>> from functions.lake.rows import lake_table
    >>> dedup_dates(Row(lake_table("tfd", "label"), {}, "2026-03-01", False, ("id:t",), 0.0))
    ['2026-03-01', '2026-02-28']
    """
    if row.dated_by_event:
        return [row.event_date]
    return [row.event_date, (date.fromisoformat(row.event_date) - timedelta(days=1)).isoformat()]


@dataclass
class Pending:
    """One request's row, waiting for its batch."""

    row: Row
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    duplicate: bool = False
    version: int | None = None  # the table version that holds the row (None: a duplicate)


class Closed(DependencyUnavailable):
    """The writer is stopping (SIGTERM): the request is refused with 503, and retried elsewhere or later."""


class TableWriter:
    """The writer thread of one table and its queue of pending rows."""

    def __init__(
        self,
        table: LakeTable,
        store: Store,
        config: LakeConfig,
        raw: Raw | None = None,
        exit_now: Callable[[int], Any] = os._exit,
    ) -> None:
        self.table = table
        self.store = store
        self.raw = raw if config.raw else None
        self.config = config
        self.exit_now = exit_now
        self.labels = (table.domain.name, table.kind)
        self.seen = SeenIds(store.load_identities, keep=config.dedup_days)
        self.writer_id = uuid.uuid4().hex[:12]
        self.app_id = f"coelho-lake/{table.name}/{self.writer_id}"  # one Delta app transaction id per process
        self.batches = 0
        self.files = 0
        self.version = -1
        self.last_commit = 0.0
        self.queue: list[Pending] = []
        self.cond = threading.Condition()
        self.closing = False
        self._opened = False
        self._open_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(3, thread_name_prefix=f"coelho-lake-{table.name}-io")
        self.thread = threading.Thread(target=self._run, name=f"coelho-lake-{table.name}", daemon=True)
        self.thread.start()
        metrics.register_writer(self)

    # --- requests ----------------------------------------------------------------------------------------------
    def ensure_open(self) -> None:
        """Create or open the table (readiness; the writer thread before its first batch)."""
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self.store.open()
                self.version = self.store.version()
                self.files = self.store.file_count()
                self._opened = True

    def submit(self, row: Row) -> Pending:
        pending = Pending(row)
        with self.cond:
            if self.closing:
                raise Closed(f"the lake writer of {self.table.name} is stopping")
            self.queue.append(pending)
            self.cond.notify_all()
        return pending

    def write(self, row: Row, timeout: float | None = None) -> Pending:
        """Submit `row` and wait for its batch: the Pending, committed (or a duplicate of a committed row); raises
        DependencyUnavailable when the batch failed or took longer than the wait (the sender retries)."""
        pending = self.submit(row)
        if not pending.done.wait(self.config.wait_s if timeout is None else timeout):
            raise DependencyUnavailable(f"{self.table.name}: the batch was not committed within the wait; retry")
        if pending.error is not None:
            raise DependencyUnavailable(f"{self.table.name}: commit failed: {pending.error}") from pending.error
        return pending

    # --- the writer thread -------------------------------------------------------------------------------------
    def oldest_pending_age(self, now: float | None = None) -> float:
        with self.cond:
            oldest = self.queue[0].row.arrived if self.queue else None
        return 0.0 if oldest is None else max(0.0, (now or time.time()) - oldest)

    def pending_rows(self) -> int:
        with self.cond:
            return len(self.queue)

    def _next_batch(self) -> list[Pending] | None:
        """Wait until a batch is due (full, old enough, or closing) and take it; None once closed and empty."""
        with self.cond:
            while True:
                if self.queue:
                    due_at = self.queue[0].row.arrived + self.config.batch_ms / 1000
                    wait = due_at - time.time()
                    if self.closing or len(self.queue) >= self.config.batch_rows or wait <= 0:
                        batch = self.queue[: self.config.batch_rows]
                        del self.queue[: self.config.batch_rows]
                        return batch
                    self.cond.wait(wait)
                elif self.closing:
                    return None
                else:
                    self.cond.wait()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self.write_batch(batch)

    def write_batch(self, batch: list[Pending]) -> None:
        """Write and commit one batch, then answer every request in it."""
        started = time.perf_counter()
        try:
            self.ensure_open()
            fresh = self._drop_duplicates(batch)
            if fresh:
                self._commit([p.row for p in fresh], fresh)
            metrics.observe_batch(self, batch, fresh, time.perf_counter() - started)
        except Exception as exc:
            log.warning("%s: batch of %d rows not committed: %s", self.table.name, len(batch), exc)
            self.seen.forget()  # whatever happened, the log says what is committed: read it again
            metrics.COMMITS.labels(*self.labels, "error").inc()
            for pending in batch:
                pending.error = exc
        for pending in batch:
            pending.done.set()

    def _drop_duplicates(self, batch: list[Pending]) -> list[Pending]:
        fresh: list[Pending] = []
        in_batch: set[str] = set()
        for pending in batch:
            row = pending.row
            if in_batch.intersection(row.identities) or self.seen.known(row.identities, dedup_dates(row)):
                pending.duplicate = True
                continue
            in_batch.update(row.identities)
            fresh.append(pending)
        return fresh

    def _commit(self, rows: list[Row], fresh: list[Pending]) -> None:
        self.batches += 1
        batch_id = f"{self.writer_id}-{self.batches:08d}"
        # the Parquet files, the raw snapshot and a fresh look at the log, at once (each is a round trip to S3)
        files = self.pool.submit(self.store.write_files, rows, batch_id)
        raw = self.pool.submit(self.raw.put, self.table.name, batch_id, rows) if self.raw is not None else None
        fresh_log = self.pool.submit(self.store.refresh)
        actions = files.result()
        if raw is not None:
            raw.result()
        fresh_log.result()
        if self.config.fault == "crash-before-commit":
            log.error("COELHO_LAKE_FAULT=crash-before-commit: exiting after writing batch %s", batch_id)
            self.exit_now(9)
        self.version = self.store.commit(actions, self.app_id, self.batches, batch_id)
        self.files += len(actions)
        self.last_commit = time.time()
        for row in rows:
            self.seen.add(row.identities, row.event_date)
        for pending in fresh:
            pending.version = self.version
        if self.config.fault == "crash-after-commit":
            log.error("COELHO_LAKE_FAULT=crash-after-commit: exiting after committing batch %s", batch_id)
            self.exit_now(9)

    # --- stopping ----------------------------------------------------------------------------------------------
    def close(self, timeout: float = 20.0) -> None:
        """Refuse new rows, commit every pending one now (SIGTERM), and stop the thread."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join(timeout)

    def maintenance_done(self, files: int) -> None:
        self.files = files
