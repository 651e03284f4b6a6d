"""Lake maintenance, on the PingSource schedule or on demand: per table, compact the small files the micro-batches
leave, delete files no version needs any more, checkpoint the log and drop its expired JSON files.

It runs beside the writers, on a DeltaTable of its own: compaction rewrites files without changing data
(`dataChange: false`), so it does not conflict with appends; a commit that did meet a conflict fails alone and the
next run retries it. Vacuum deletes only files unreferenced for `retention_hours` (at least one hour), so the
Parquet files of a batch still being committed are never touched; with `full` it also finds the orphans a crash
between a batch's files and its commit left behind.
"""

from __future__ import annotations

import time
from typing import Any

from functions.lake import metrics
from functions.lake.store import DeltaStore


def maintain(store: DeltaStore, retention_hours: int) -> dict[str, Any]:
    """Compact, vacuum, checkpoint and clean up one table's log; what was done."""
    from deltalake import DeltaTable

    started = time.perf_counter()
    store.open()  # created if no event came yet
    dt = DeltaTable(store.uri, storage_options=store.options)
    files_before = len(dt.file_uris())
    compacted = dt.optimize.compact()
    vacuumed = dt.vacuum(
        retention_hours=max(1, retention_hours), dry_run=False, enforce_retention_duration=False, full=True
    )
    dt.update_incremental()
    dt.create_checkpoint()
    dt.cleanup_metadata()
    seconds = time.perf_counter() - started
    metrics.MAINTENANCE_SECONDS.labels(store.table.domain.name, store.table.kind).observe(seconds)
    return {
        "table": store.table.name,
        "version": int(dt.version()),
        "files_before": files_before,
        "files_after": len(dt.file_uris()),
        "files_compacted": int(compacted.get("numFilesRemoved", 0)),
        "files_vacuumed": len(vacuumed),
        "seconds": round(seconds, 3),
    }
