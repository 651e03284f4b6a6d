"""The lake's storage: a table's Delta log and Parquet files on S3, and the raw snapshots, with no batching logic.

A batch is written in two steps, as Delta does it: its Parquet files are put first (one per `event_date` in the
batch, named after the batch), then one commit adds them all to the log. Until the commit the files are invisible
to every reader; a crash between the two steps leaves orphan files that `vacuum` removes and nothing else. The
commit carries a Delta app transaction (`app_id`, batch number): when a commit's outcome is unknown (an error after
the log entry may have been stored), `commit` asks the log whether that batch is there before trying again, so a
batch is never in the log twice. The log, not this process, is the truth.

Objects (Parquet files, raw snapshots) go to S3 with one PUT each through the MinIO client; the Delta log is
delta-rs's (conditional puts keep concurrent commits apart: functions/lake/tables.py).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

from functions.lake.rows import PARTITION_COLUMN, LakeTable, Row, arrow_table
from functions.lake.tables import RAW_BUCKET

log = logging.getLogger("coelho.functions.lake")

# Table properties: app transactions of past writer processes and the log's JSON files older than this go at the
# next checkpoint; time travel reaches back as far.
TABLE_CONFIGURATION = {
    "delta.setTransactionRetentionDuration": "interval 2 days",
    "delta.logRetentionDuration": "interval 2 days",
}
COMMIT_ATTEMPTS = 4


def post_commit_hooks() -> Any:
    """After each commit: a log checkpoint every 100 versions (delta-rs's default interval), so a reader replays at
    most 100 JSON files; but no clean-up of expired log files, which lists the whole log directory (thousands of
    files at one commit a second): maintenance does it (functions/lake/maintenance.py)."""
    from deltalake import PostCommitHookProperties

    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def object_client(options: Mapping[str, str]) -> Any:
    """A MinIO client for the S3 store the Delta options point at."""
    from minio import Minio

    endpoint = options.get("AWS_ENDPOINT_URL", "")
    parsed = urlparse(endpoint) if endpoint else None
    host = parsed.netloc if parsed else "s3.amazonaws.com"
    return Minio(
        host,
        access_key=options.get("AWS_ACCESS_KEY_ID") or None,
        secret_key=options.get("AWS_SECRET_ACCESS_KEY") or None,
        secure=not parsed or parsed.scheme == "https",
        region=options.get("AWS_REGION") or None,
    )


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


def _file_stats(arrow: Any, table: LakeTable) -> str:
    """Delta statistics of one file: row count, null counts, and min/max of numbers and strings (timestamps and
    booleans have none: readers then just do not skip on them). Compaction rewrites files with delta-rs's own."""
    import pyarrow.compute as pc

    types = {c.name: c.type for c in table.columns}
    stats: dict[str, Any] = {"numRecords": arrow.num_rows, "nullCount": {}, "minValues": {}, "maxValues": {}}
    for name in arrow.column_names:
        column = arrow.column(name)
        stats["nullCount"][name] = column.null_count
        if types.get(name) in ("integer", "number", "string") and column.null_count < arrow.num_rows:
            bounds = pc.min_max(column)
            stats["minValues"][name] = bounds["min"].as_py()
            stats["maxValues"][name] = bounds["max"].as_py()
    return json.dumps(stats)


class DeltaStore:
    """One lake table: created on first use, its files written and committed, its identities read back."""

    def __init__(self, table: LakeTable, uri: str, options: Mapping[str, str], objects: Any = None) -> None:
        self.table = table
        self.uri = uri
        self.options = dict(options)
        self.objects = objects if objects is not None else object_client(self.options)
        self.bucket, self.prefix = _bucket_and_prefix(uri)
        self.schema = table.arrow_schema()
        self.dt: Any = None

    # --- the table ----------------------------------------------------------------------------------------------
    def open(self) -> Any:
        """The DeltaTable, created (empty, partitioned by event_date) if it does not exist yet."""
        if self.dt is None:
            from deltalake import DeltaTable

            if not DeltaTable.is_deltatable(self.uri, storage_options=self.options):
                DeltaTable.create(
                    self.uri,
                    self.schema,
                    mode="ignore",
                    partition_by=[PARTITION_COLUMN],
                    name=self.table.name,
                    configuration=TABLE_CONFIGURATION,
                    storage_options=self.options,
                )
            self.dt = DeltaTable(self.uri, storage_options=self.options)
        return self.dt

    def refresh(self) -> Any:
        dt = self.open()
        dt.update_incremental()
        return dt

    def version(self) -> int:
        return int(self.open().version())

    def file_count(self) -> int:
        return len(self.open().file_uris())

    def committed(self, app_id: str) -> int:
        """The last batch number `app_id` committed (0: none), from the log as it is now."""
        return int(self.refresh().transaction_version(app_id) or 0)

    # --- a batch ------------------------------------------------------------------------------------------------
    def write_files(self, rows: list[Row], batch_id: str) -> list[Any]:
        """Put one Parquet file per event_date of `rows`; the AddActions that commit them (nothing visible yet)."""
        import pyarrow.parquet as pq
        from deltalake.transaction import AddAction

        by_date: dict[str, list[Row]] = {}
        for row in rows:
            by_date.setdefault(row.event_date, []).append(row)
        data_columns = [c for c in self.table.column_names if c != PARTITION_COLUMN]
        actions = []
        for date, part in sorted(by_date.items()):
            arrow = arrow_table(self.table, part, data_columns)
            buffer = io.BytesIO()
            pq.write_table(arrow, buffer, compression="zstd")
            size = buffer.tell()
            buffer.seek(0)
            path = f"{PARTITION_COLUMN}={date}/part-{batch_id}.zstd.parquet"
            self.objects.put_object(
                self.bucket, f"{self.prefix}/{path}", buffer, size, content_type="application/vnd.apache.parquet"
            )
            actions.append(
                AddAction(
                    path=path,
                    size=size,
                    partition_values={PARTITION_COLUMN: date},
                    modification_time=int(time.time() * 1000),
                    data_change=True,
                    stats=_file_stats(arrow, self.table),
                )
            )
        return actions

    def commit(self, actions: list[Any], app_id: str, batch: int, batch_id: str) -> int:
        """Add the batch's files to the log in one commit, exactly once; the table version that holds them.

        The handle should be fresh (`refresh`, which the writer runs while the batch's files are put): a commit made
        from an older version is still correct (delta-rs checks the commits in between and retries) but slower."""
        from deltalake import CommitProperties, Transaction

        properties = CommitProperties(
            app_transactions=[Transaction(app_id, batch)], custom_metadata={"coelho.batch": batch_id}
        )
        dt = self.open()
        for attempt in range(COMMIT_ATTEMPTS):
            read_version = int(dt.version())
            try:
                dt.create_write_transaction(
                    actions,
                    mode="append",
                    schema=self.schema,
                    partition_by=[PARTITION_COLUMN],
                    commit_properties=properties,
                    post_commithook_properties=post_commit_hooks(),
                )
                return read_version + 1  # exact unless a maintenance commit came in between (then later)
            except Exception as exc:
                try:
                    if self.committed(app_id) >= batch:  # it went in, only the answer was lost
                        return int(dt.version())
                except Exception:  # the log cannot be read either: this attempt failed
                    pass
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                log.warning("%s: commit of batch %s failed (%s), retrying", self.table.name, batch_id, exc)
                time.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    def load_identities(self, date: str) -> set[str]:
        """The identities (see rows.identities) of the rows committed in one event_date partition."""
        import pyarrow.compute as pc

        from functions.lake.rows import identities

        dt = self.refresh()
        if dt.version() < 1:  # just created: empty
            return set()
        columns = [self.table.id_column, "ce_source", "ce_id"]
        data = dt.to_pyarrow_dataset(partitions=[(PARTITION_COLUMN, "=", date)]).to_table(
            columns=columns, filter=pc.field(PARTITION_COLUMN) == date
        )
        found: set[str] = set()
        for event_id, source, ce_id in zip(*(data.column(c).to_pylist() for c in columns), strict=True):
            found.update(identities(self.table, event_id, source, ce_id))
        return found


class RawStore:
    """Records as received, one JSON Lines object per batch: `raw-data/<table>/date=YYYY-MM-DD/hour=HH/<batch>.jsonl`
    (the arrival's UTC date and hour). Written before the batch's commit: every committed row has its raw line; a
    batch that crashed before its commit may leave a file whose events come again in a later one."""

    def __init__(self, options: Mapping[str, str], bucket: str = RAW_BUCKET, objects: Any = None) -> None:
        self.bucket = bucket
        self.objects = objects if objects is not None else object_client(options)

    def put(self, table: str, batch_id: str, rows: Iterable[Row]) -> list[str]:
        by_hour: dict[str, list[bytes]] = {}
        for row in rows:
            hour = time.strftime("date=%Y-%m-%d/hour=%H", time.gmtime(row.arrived))
            line = json.dumps({**row.raw, "arrived_at": row.values["arrived_at"].isoformat()}, default=str)
            by_hour.setdefault(hour, []).append(line.encode("utf-8"))
        keys = []
        for hour, lines in sorted(by_hour.items()):
            body = b"\n".join(lines) + b"\n"
            key = f"{table}/{hour}/{batch_id}.jsonl"
            self.objects.put_object(self.bucket, key, io.BytesIO(body), len(body), content_type="application/x-ndjson")
            keys.append(key)
        return keys
