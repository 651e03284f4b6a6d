"""The lake's Delta tables as DuckDB scans them: `LakeCatalog`, each table opened once and kept at its latest version.

Each Delta table of the lake (functions/lake/tables.py, plus `<table>_labels` where one exists) is read as an Arrow
dataset (`deltalake.DeltaTable(...).to_pyarrow_dataset()`), or held in memory as an Arrow table while the latest
versions fit the cache. A table that does not exist yet is simply absent. The schema is the table's own: nothing
here names a column. Older versions (time travel) are opened on demand.

    >>> import tempfile, deltalake, pyarrow as pa
    >>> root = tempfile.mkdtemp()
    >>> deltalake.write_deltalake(f"{root}/trips", pa.table({"eta": [9, 5, 7]}))
    >>> catalog = LakeCatalog(root=root, tables=["trips", "trips_labels"])
    >>> catalog.existing(), catalog.current("trips").version, catalog.current("trips").in_memory
    (['trips'], 0, True)
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.lake.sql_limits import SqlError, error_text
from functions.lake.tables import TABLES, storage_options, table_uri
from functions.middleware.contract import DependencyUnavailable

log = logging.getLogger("coelho.functions.sql")

LABELS_SUFFIX = "_labels"


def lake_table_names() -> list[str]:
    """Every table the lake may hold: one per domain and its labels table."""
    return [name for table in TABLES for name in (table, table + LABELS_SUFFIX)]


def domain_of(name: str) -> str:
    return TABLES[name.removesuffix(LABELS_SUFFIX)]


@dataclass(frozen=True)
class Snapshot:
    """One version of a table as DuckDB scans it: the Arrow table in memory (`files` holds its data files), else
    the Arrow dataset on the store (`files` empty)."""

    version: int
    dataset: Any
    files: frozenset[str] = frozenset()
    nbytes: int = 0

    @property
    def in_memory(self) -> bool:
        return bool(self.files)


@dataclass
class _Loaded:
    table: Any = None  # deltalake.DeltaTable; only the refresh touches it (under `lock`)
    snapshot: Snapshot | None = None  # None while the table does not exist
    checked: float = -math.inf
    refreshing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


# Arrow bytes in memory per byte of Parquet on the store, to decide before loading whether a table fits the cache.
_EXPANSION = 6
_MAX_CHUNKS = 64  # a table appended to this often in memory is made contiguous again


class LakeCatalog:
    """The lake's Delta tables, each opened once and kept at its latest version.

    A query reads the snapshot at hand; when it is older than `refresh_s`, a background thread brings it up to date
    (a query never waits for the store, and sees a commit within about `refresh_s`); `refresh_s=0` refreshes before
    every read instead. A table not seen yet is looked for when asked.

    The latest version of each table is held in memory as an Arrow table while all of them fit in `cache_bytes`
    (0: none): a query then scans memory, not the store, and a new version appends only the files it added (a
    version that removed files, e.g. a compaction, is read again whole). A table that does not fit is scanned on the
    store through its Arrow dataset (projection and filters pushed down, files pruned by their Delta statistics).

    `root` (a local directory or URI prefix) replaces the S3 bucket: `<root>/<table>`. Versions read by time travel
    are kept as datasets (a few, least recently used out): a version never changes.
    """

    def __init__(
        self,
        root: str | None = None,
        environ: Mapping[str, str] | None = None,
        refresh_s: float = 1.0,
        tables: list[str] | None = None,
        cache_bytes: int = 1 << 30,
    ) -> None:
        self.cache_bytes = cache_bytes
        self.environ = dict(os.environ if environ is None else environ)
        self.root = root.rstrip("/") if root else None
        self.options = {} if root else storage_options(self.environ)
        self.refresh_s = refresh_s
        self.names = tables or lake_table_names()
        self._loaded: dict[str, _Loaded] = {}
        self._versions: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def uri(self, name: str) -> str:
        if self.root:
            return f"{self.root}/{name}"
        return table_uri(name.removesuffix(LABELS_SUFFIX), environ=self.environ) + (
            LABELS_SUFFIX if name.endswith(LABELS_SUFFIX) else ""
        )

    def _open(self, name: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(self.uri(name), version=version, storage_options=self.options or None)
        except TableNotFoundError:
            return None
        except OSError as exc:  # the object store did not answer
            raise DependencyUnavailable(f"the lake's store is unreachable: {error_text(exc).splitlines()[0]}") from None

    def current(self, name: str) -> Snapshot | None:
        """The table's latest snapshot (None: the table does not exist)."""
        with self._lock:
            loaded = self._loaded.setdefault(name, _Loaded())
        if time.monotonic() - loaded.checked < self.refresh_s:
            return loaded.snapshot
        if loaded.snapshot is None or self.refresh_s <= 0:
            self._refresh(name, loaded)  # nothing to serve yet, or no staleness wanted
        elif not loaded.refreshing:
            loaded.refreshing = True
            threading.Thread(
                target=self._refresh_quietly, args=(name, loaded), name=f"sql-refresh-{name}", daemon=True
            ).start()
        return loaded.snapshot

    def _refresh_quietly(self, name: str, loaded: _Loaded) -> None:
        try:
            self._refresh(name, loaded)
        except Exception as exc:  # the store is down: keep serving what is at hand, try again on a later query
            log.warning("refreshing lake table %s failed: %s", name, error_text(exc).splitlines()[0])
        finally:
            loaded.refreshing = False

    def _refresh(self, name: str, loaded: _Loaded) -> None:
        with loaded.lock:
            started = time.monotonic()
            if started - loaded.checked < self.refresh_s:
                return  # another thread just did
            if loaded.table is None:
                loaded.table = self._open(name)
            else:
                try:
                    loaded.table.update_incremental()
                except OSError as exc:
                    message = error_text(exc).splitlines()[0]
                    raise DependencyUnavailable(f"the lake's store is unreachable: {message}") from None
            table = loaded.table
            if table is not None and (loaded.snapshot is None or loaded.snapshot.version != table.version()):
                loaded.snapshot = self._load(name, table, loaded.snapshot)
            loaded.checked = started

    def _load(self, name: str, table: Any, previous: Snapshot | None) -> Snapshot:
        """The table's latest version: in memory when it fits (appending the files added since `previous`), else
        its dataset on the store."""
        import pyarrow as pa
        import pyarrow.dataset as pds

        version = table.version()
        dataset = table.to_pyarrow_dataset()
        fragments = list(dataset.get_fragments())
        paths = frozenset(f.path for f in fragments)
        with self._lock:
            others = sum(v.snapshot.nbytes for k, v in self._loaded.items() if k != name and v.snapshot)
        stored = sum(pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist() or [0])
        if self.cache_bytes <= 0 or others + stored * _EXPANSION > self.cache_bytes:
            return Snapshot(version, dataset)
        if (
            previous is not None
            and previous.in_memory
            and previous.files <= paths
            and (previous.dataset.schema == dataset.schema)
        ):
            cached = previous.dataset
            added = [f for f in fragments if f.path not in previous.files]
            if added:
                new = pds.FileSystemDataset(added, dataset.schema, dataset.format, dataset.filesystem).to_table()
                cached = pa.concat_tables([cached, new])
                if cached.column(0).num_chunks > _MAX_CHUNKS:
                    cached = cached.combine_chunks()
        else:
            cached = dataset.to_table()
        if others + cached.nbytes > self.cache_bytes:  # the estimate was low: read it on the store instead
            return Snapshot(version, dataset)
        return Snapshot(version, cached, paths, cached.nbytes)

    def describe(self, name: str, history: int) -> dict[str, Any] | None:
        """The latest snapshot's Delta facts: files, partition columns, recent commits (None: no such table)."""
        import pyarrow as pa

        self.current(name)
        with self._lock:
            loaded = self._loaded[name]
        with loaded.lock:
            snapshot, table = loaded.snapshot, loaded.table
            if snapshot is None or table is None:
                return None
            actions = pa.table(table.get_add_actions(flatten=True))
            commits = sorted(table.history(history), key=lambda c: -int(c["version"]))
            partitions = list(table.metadata().partition_columns)
        counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else []
        if snapshot.in_memory or not hasattr(snapshot.dataset, "count_rows"):  # an Arrow table: counted already
            rows = int(snapshot.dataset.num_rows)
        elif counts and all(c is not None for c in counts):
            rows = int(sum(counts))
        else:
            rows = int(snapshot.dataset.count_rows())
        return {
            "version": snapshot.version,
            "row_count": rows,
            "files": actions.num_rows,
            "in_memory": snapshot.in_memory,
            "partition_columns": partitions,
            "versions": [
                {
                    "version": int(c["version"]),
                    "operation": c.get("operation"),
                    "timestamp": dt.datetime.fromtimestamp(int(c["timestamp"]) / 1000, dt.UTC).isoformat(),
                }
                for c in commits
            ],
        }

    def forget(self) -> None:
        """Drop every opened table and dataset."""
        with self._lock:
            self._loaded.clear()
            self._versions.clear()

    def existing(self) -> list[str]:
        return [name for name in self.names if self.current(name) is not None]

    def at_version(self, name: str, version: int) -> Any:
        """The dataset of `name` at `version`; SqlError when the table or the version does not exist."""
        key = (name, version)
        with self._lock:
            found = self._versions.get(key)
            if found is not None:
                self._versions[key] = self._versions.pop(key)  # most recently used last
                return found
        latest = self.current(name)
        if latest is None:
            raise SqlError(f"table {name} does not exist yet: no version {version} to read")
        if version < 0 or version > latest.version:
            raise SqlError(f"table {name} has no version {version}: its versions are 0 to {latest.version}")
        if version == latest.version:
            return latest.dataset
        try:
            table = self._open(name, version)
        except Exception as exc:  # e.g. a version whose log entry was cleaned up
            raise SqlError(
                f"table {name} cannot be read at version {version}: {error_text(exc).splitlines()[0]}"
            ) from None
        found = table.to_pyarrow_dataset()
        with self._lock:
            self._versions[key] = found
            while len(self._versions) > 16:
                self._versions.pop(next(iter(self._versions)))
        return found

    def version_as_of(self, name: str, when: dt.datetime) -> int:
        """The table's version at time `when` (its last commit at or before it)."""
        if self.current(name) is None:
            raise SqlError(f"table {name} does not exist yet")
        with self._lock:
            loaded = self._loaded[name]
        with loaded.lock:
            history = loaded.table.history()
        commits = sorted((int(c["version"]), int(c["timestamp"])) for c in history)
        millis = when.timestamp() * 1000
        before = [v for v, ts in commits if ts <= millis]
        if not before:
            first = dt.datetime.fromtimestamp(commits[0][1] / 1000, dt.UTC).isoformat() if commits else "never"
            raise SqlError(f"table {name} did not exist at {when.isoformat()} (its first version is from {first})")
        return before[-1]
