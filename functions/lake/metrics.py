"""The lake function's Prometheus metrics, labelled by domain and kind (record or label: the table).

Counted as batches commit: rows written, duplicates dropped, commits (ok or error), the time to write and commit a
batch, and the lag of every row (seconds from its arrival to the commit of its batch). Read at scrape time from
the writers: the table's version and active files, the rows waiting for a commit and the age of the oldest one
(what the alert CoelhoLakeBehind watches), and when the last commit was.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from functions.lake.writer import Pending, TableWriter

LABELS = ["domain", "kind"]
ROWS = Counter("coelho_lake_rows_written_total", "Rows committed to a lake table", LABELS)
DUPLICATES = Counter(
    "coelho_lake_duplicates_total", "Events not written because the table (or their batch) already holds them", LABELS
)
COMMITS = Counter(
    "coelho_lake_commits_total", "Batch commits to a lake table, by outcome (ok, error)", [*LABELS, "outcome"]
)
COMMIT_SECONDS = Histogram(
    "coelho_lake_commit_seconds",
    "Time to write a batch's Parquet files and raw snapshot and commit it to the log",
    LABELS,
    buckets=(0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG_SECONDS = Histogram(
    "coelho_lake_lag_seconds",
    "Seconds from an event's arrival at the lake function to the commit of its batch",
    LABELS,
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
BATCH_ROWS = Histogram(
    "coelho_lake_batch_rows", "Rows per committed batch", LABELS, buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
)
MAINTENANCE_SECONDS = Histogram(
    "coelho_lake_maintenance_seconds",
    "Time to compact, vacuum and checkpoint one lake table",
    LABELS,
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)

_writers: weakref.WeakSet[TableWriter] = weakref.WeakSet()


def observe_batch(writer: TableWriter, batch: list[Pending], fresh: list[Pending], seconds: float) -> None:
    labels = writer.labels
    duplicates = len(batch) - len(fresh)
    if duplicates:
        DUPLICATES.labels(*labels).inc(duplicates)
    if not fresh:
        return
    now = time.time()
    ROWS.labels(*labels).inc(len(fresh))
    COMMITS.labels(*labels, "ok").inc()
    COMMIT_SECONDS.labels(*labels).observe(seconds)
    BATCH_ROWS.labels(*labels).observe(len(fresh))
    lag = LAG_SECONDS.labels(*labels)
    for pending in fresh:
        lag.observe(max(0.0, now - pending.row.arrived))


class WriterCollector(Collector):
    """Gauges read from the live writers at scrape time."""

    def collect(self) -> Iterator[Any]:
        gauges = {
            "version": GaugeMetricFamily(
                "coelho_lake_table_version", "Delta version of the table the writer last saw", labels=LABELS
            ),
            "files": GaugeMetricFamily(
                "coelho_lake_table_files", "Active Parquet files of the table (compaction merges them)", labels=LABELS
            ),
            "pending": GaugeMetricFamily(
                "coelho_lake_pending_rows", "Rows received and waiting for their batch's commit", labels=LABELS
            ),
            "oldest": GaugeMetricFamily(
                "coelho_lake_oldest_pending_seconds",
                "Age of the oldest row waiting for a commit (0: none waits)",
                labels=LABELS,
            ),
            "last": GaugeMetricFamily(
                "coelho_lake_last_commit_timestamp_seconds",
                "When this process last committed to the table (0: not yet)",
                labels=LABELS,
            ),
        }
        now = time.time()
        for writer in list(_writers):
            labels = list(writer.labels)
            gauges["version"].add_metric(labels, writer.version)
            gauges["files"].add_metric(labels, writer.files)
            gauges["pending"].add_metric(labels, writer.pending_rows())
            gauges["oldest"].add_metric(labels, writer.oldest_pending_age(now))
            gauges["last"].add_metric(labels, writer.last_commit)
        yield from gauges.values()


_collector: WriterCollector | None = None


def register_writer(writer: TableWriter) -> None:
    global _collector
    _writers.add(writer)
    if _collector is None:
        _collector = WriterCollector()
        REGISTRY.register(_collector)
