"""SQL over the lake: DuckDB over the Delta tables, read-only and bounded.

Each Delta table of the lake (functions/lake/tables.py, plus `<table>_labels` where one exists) is a view in a
DuckDB connection over its Arrow dataset (`deltalake.DeltaTable(...).to_pyarrow_dataset()`): DuckDB pushes the
projection and the filters down to the Arrow scanner, so no DuckDB extension (delta, httpfs) is needed. A table
that does not exist yet is simply absent. The schema is the table's own: nothing here names a column.

What a query may do, judged by DuckDB's own parser (`duckdb.extract_statements` and `json_serialize_sql`):
exactly one statement, a SELECT (or WITH ... SELECT, VALUES, DESCRIBE, SUMMARIZE); table functions only from
`SAFE_TABLE_FUNCTIONS` (no read_csv, read_parquet, glob, query, ...). Underneath, every connection runs with
`enable_external_access=false` (no file, URL or extension) and `lock_configuration=true` (no SET can lift a limit).

Limits (`Limits`, from COELHO_SQL_* variables): rows returned (the rest is cut and `truncated` says so), time (the
query is interrupted), memory and threads per connection, concurrent queries. Every refusal or failure caused by
the query is a `SqlError` (HTTP 400 with the reason); an unreachable S3 store is `DependencyUnavailable` (503).

    >>> import tempfile, deltalake, pyarrow as pa
    >>> root = tempfile.mkdtemp()
    >>> deltalake.write_deltalake(f"{root}/trips", pa.table({"weather": ["rain", "clear", "rain"], "eta": [9, 5, 7]}))
    >>> engine = SqlEngine(LakeCatalog(root=root))
    >>> engine.query("SELECT weather, avg(eta) AS eta FROM trips GROUP BY 1 ORDER BY 1")["rows"]
    [['clear', 5.0], ['rain', 8.0]]
    >>> try:
    ...     engine.query("SELECT * FROM read_csv('/etc/passwd')")
    ... except SqlError as exc:
    ...     print(exc)
    table function read_csv is not allowed: queries read the lake's tables only (allowed table functions: generate_series, range, unnest)
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eventing.schema import ValidationError
from functions.lake.tables import TABLES, storage_options, table_uri
from functions.middleware.contract import DependencyUnavailable
from functions.middleware.events import UnsupportedEvent

log = logging.getLogger("coelho.functions.sql")

# Table functions a query may call: they generate values and reach nothing outside the query.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
LABELS_SUFFIX = "_labels"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FILE_LIKE = re.compile(r"[/\\:]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|gz|zst|db|duckdb|xlsx|arrow)$", re.IGNORECASE)


class SqlError(UnsupportedEvent):
    """A query that cannot run as asked: a syntax error, a forbidden statement, an unknown table or column, a
    limit reached. HTTP 400 with the reason."""


@dataclass(frozen=True)
class Limits:
    """How much one query may take. `rows` is the default row limit, `max_rows` the largest a request may ask."""

    rows: int = 10_000
    max_rows: int = 100_000
    timeout_s: float = 10.0
    memory_limit: str = "512MB"
    threads: int = 2
    concurrent: int = 4
    max_query_chars: int = 20_000
    cache_mb: int = 1024  # the lake's latest tables held in memory, at most (LakeCatalog)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """COELHO_SQL_ROWS, COELHO_SQL_MAX_ROWS, COELHO_SQL_TIMEOUT_S, COELHO_SQL_MEMORY_LIMIT, COELHO_SQL_THREADS,
        COELHO_SQL_CONCURRENT, COELHO_SQL_CACHE_MB; unset or empty: the defaults.

        >>> Limits.from_env({"COELHO_SQL_TIMEOUT_S": "5", "COELHO_SQL_ROWS": ""}).timeout_s
        5.0
        """
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            rows=int(env.get("COELHO_SQL_ROWS") or base.rows),
            max_rows=int(env.get("COELHO_SQL_MAX_ROWS") or base.max_rows),
            timeout_s=float(env.get("COELHO_SQL_TIMEOUT_S") or base.timeout_s),
            memory_limit=str(env.get("COELHO_SQL_MEMORY_LIMIT") or base.memory_limit),
            threads=int(env.get("COELHO_SQL_THREADS") or base.threads),
            concurrent=int(env.get("COELHO_SQL_CONCURRENT") or base.concurrent),
            cache_mb=int(env.get("COELHO_SQL_CACHE_MB") or base.cache_mb),
        )


def lake_table_names() -> list[str]:
    """Every table the lake may hold: one per domain and its labels table."""
    return [name for table in TABLES for name in (table, table + LABELS_SUFFIX)]


def domain_of(name: str) -> str:
    return TABLES[name.removesuffix(LABELS_SUFFIX)]


# --- the catalog: Delta tables as Arrow datasets ---------------------------------------------------------------


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
            raise DependencyUnavailable(f"the lake's store is unreachable: {_clean(exc).splitlines()[0]}") from None

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
            log.warning("refreshing lake table %s failed: %s", name, _clean(exc).splitlines()[0])
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
                    message = _clean(exc).splitlines()[0]
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
            raise SqlError(f"table {name} cannot be read at version {version}: {_clean(exc).splitlines()[0]}") from None
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


# --- checking a query with DuckDB's parser --------------------------------------------------------------------


@dataclass
class CheckedQuery:
    text: str
    tables: set[str] = field(default_factory=set)  # names read as tables (lake tables or not), CTEs excluded
    ctes: set[str] = field(default_factory=set)


def _position(query: str, offset: int) -> str:
    """The text " at line L, column C:" and the line with a caret under the character at `offset`."""
    offset = max(0, min(offset, len(query)))
    line_no = query.count("\n", 0, offset) + 1
    start = query.rfind("\n", 0, offset) + 1
    end = query.find("\n", offset)
    line = query[start:] if end < 0 else query[start:end]
    column = offset - start
    return f" at line {line_no}, column {column + 1}:\n  {line}\n  {' ' * column}^"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def check_query(connection: Any, query: str, max_chars: int = Limits.max_query_chars) -> CheckedQuery:
    """The query if it is one read-only SELECT, else SqlError saying why (syntax error with its position, the
    forbidden statement or table function)."""
    import duckdb

    if not query.strip():
        raise SqlError("the query is empty: write one SELECT statement")
    if len(query) > max_chars:
        raise SqlError(f"the query is {len(query)} characters long: at most {max_chars}")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.ParserException:
        statements = None  # worded below, with its position
    if statements is not None:
        if len(statements) != 1:
            raise SqlError(f"exactly one statement per query: this has {len(statements)}")
        statement = statements[0]
        if statement.type != duckdb.StatementType.SELECT:
            keyword = (statement.query.split() or ["?"])[0].upper()
            read_as = "" if keyword == statement.type.name else f" (a {statement.type.name} statement)"
            raise SqlError(
                f"{keyword} is not allowed{read_as}: only one SELECT query (or WITH ... SELECT) runs here, read-only"
            )
    row = connection.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    tree: dict[str, Any] = json.loads(str(row[0])) if row else {"error": True, "error_message": "cannot parse"}
    if tree.get("error"):
        message = str(tree.get("error_message", "cannot parse"))
        if tree.get("error_type") == "parser":
            where = _position(query, int(tree["position"])) if str(tree.get("position", "")).isdigit() else ""
            raise SqlError(f"syntax error: {message}{where}")
        keyword = (query.split() or ["?"])[0].upper()
        raise SqlError(f"{keyword} is not allowed: only one SELECT query (or WITH ... SELECT) runs here, read-only")
    checked = CheckedQuery(query)
    for node in _walk(tree["statements"]):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "?"))
            if name.lower() not in SAFE_TABLE_FUNCTIONS:
                raise SqlError(
                    f"table function {name} is not allowed: queries read the lake's tables only "
                    f"(allowed table functions: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
                )
        elif kind == "BASE_TABLE":
            if node.get("at_clause"):
                raise SqlError(
                    "AT (VERSION => ...) is not supported here: send `version` (or `as_of`) with the query "
                    "to read the tables as they were"
                )
            name = str(node.get("table_name", ""))
            if _FILE_LIKE.search(name):  # DuckDB would read it as a file (a replacement scan)
                raise SqlError(f"reading a file or URL ({name}) is not allowed: queries read the lake's tables only")
            if not node.get("schema_name") and not node.get("catalog_name"):
                checked.tables.add(name)
        if isinstance(node.get("cte_map"), dict):
            checked.ctes |= {str(entry["key"]) for entry in node["cte_map"].get("map", [])}
    checked.tables -= checked.ctes
    return checked


# --- results as JSON ------------------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A query result value as JSON: NaN and infinities become null, times ISO 8601, decimals numbers, bytes
    base64.

    >>> json_value(float("nan")), json_value(Decimal("2.50")), json_value(dt.date(2026, 1, 2)), json_value(b"ab")
    (None, 2.5, '2026-01-02', 'YWI=')
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _clean(exc: BaseException) -> str:
    return _ANSI.sub("", str(exc)).strip()


# --- the engine -----------------------------------------------------------------------------------------------


def _parse_version(value: Any) -> int | dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in value.items()
    ):
        return dict(value)
    raise ValidationError({"version": "a Delta version (an integer >= 0) or {table: version}"})


def _parse_as_of(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError({"as_of": f"not an ISO 8601 time: {str(value)[:40]!r}"}) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class SqlEngine:
    """Runs checked, bounded queries over a `LakeCatalog` on a pool of locked-down DuckDB connections."""

    def __init__(self, catalog: LakeCatalog | None = None, limits: Limits | None = None) -> None:
        self.catalog = catalog or LakeCatalog()
        self.limits = limits or Limits()
        self._pool: queue.LifoQueue[_Connection] = queue.LifoQueue()
        self._created = 0
        self._pool_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SqlEngine:
        limits = Limits.from_env(environ)
        return cls(LakeCatalog(environ=environ, cache_bytes=limits.cache_mb << 20), limits)

    # --- connections ------------------------------------------------------------------------------------------
    def _connect(self) -> _Connection:
        import duckdb

        con = duckdb.connect(
            ":memory:",
            config={
                "enable_external_access": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "threads": self.limits.threads,
                "memory_limit": self.limits.memory_limit,
                "lock_configuration": True,
            },
        )
        return _Connection(con)

    @contextmanager
    def connection(self, wait_s: float | None = None) -> Iterator[_Connection]:
        """A pooled connection; at most `limits.concurrent` queries run at once (503 when none frees up in time)."""
        try:
            con = self._pool.get_nowait()
        except queue.Empty:
            with self._pool_lock:
                create = self._created < self.limits.concurrent
                if create:
                    self._created += 1
            if create:
                try:
                    con = self._connect()
                except Exception:
                    with self._pool_lock:
                        self._created -= 1
                    raise
            else:
                try:
                    con = self._pool.get(timeout=self.limits.timeout_s if wait_s is None else wait_s)
                except queue.Empty:
                    raise DependencyUnavailable(
                        f"all {self.limits.concurrent} query slots are busy: retry in a moment"
                    ) from None
        try:
            yield con
        finally:
            try:
                con.clear()
            finally:
                self._pool.put(con)

    def close(self) -> None:
        """Close the pooled connections and forget the tables (a process that queried once, before it exits)."""
        while True:
            try:
                con = self._pool.get_nowait()
            except queue.Empty:
                break
            con.duckdb.close()
        with self._pool_lock:
            self._created = 0
        self.catalog.forget()

    # --- queries ---------------------------------------------------------------------------------------------
    def query(
        self, sql: str, limit: int | None = None, version: Any = None, as_of: Any = None, timeout_s: Any = None
    ) -> dict[str, Any]:
        """{columns: [{name, type}], rows, row_count, truncated, limit, elapsed_ms, versions: {table: version}}.

        `timeout_s` may lower the time limit of this query, never raise it."""
        started = time.perf_counter()
        if not isinstance(sql, str):
            raise ValidationError({"query": "a SQL SELECT statement (a string)"})
        if limit is None:
            limit = self.limits.rows
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= self.limits.max_rows:
            raise ValidationError({"limit": f"an integer between 1 and {self.limits.max_rows}"})
        versions = _parse_version(version)
        when = _parse_as_of(as_of)
        if timeout_s is None:
            timeout_s = self.limits.timeout_s
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s <= self.limits.timeout_s
        ):
            raise ValidationError({"timeout_s": f"seconds, more than 0 and at most {self.limits.timeout_s:g}"})
        if versions is not None and when is not None:
            raise ValidationError({"as_of": "send either version or as_of, not both"})
        with self.connection() as con:
            checked = check_query(con.duckdb, sql, self.limits.max_query_chars)
            read = self._register(con, checked, versions, when)
            table, names, types = con.run(sql, limit, timeout_s, lambda exc: self._explain(exc, checked, timeout_s))
        truncated = table.num_rows > limit
        if truncated:
            table = table.slice(0, limit)
        columns = [c.to_pylist() for c in table.columns]
        rows = [[json_value(v) for v in row] for row in zip(*columns, strict=True)] if columns else []
        return {
            "columns": [{"name": n, "type": t} for n, t in zip(names, types, strict=True)],
            "rows": rows,
            "row_count": len(rows),
            "truncated": truncated,
            "limit": limit,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
            "versions": read,
        }

    def _register(
        self, con: _Connection, checked: CheckedQuery, versions: int | dict[str, int] | None, when: dt.datetime | None
    ) -> dict[str, int]:
        """Registers the lake tables the query reads; returns {table: Delta version read}."""
        wanted = sorted(name for name in checked.tables if name in self.catalog.names)
        if isinstance(versions, dict):
            unknown = sorted(set(versions) - set(wanted))
            if unknown:
                raise ValidationError({"version": f"the query does not read {', '.join(unknown)}"})
        read: dict[str, int] = {}
        for name in wanted:
            pinned = versions.get(name) if isinstance(versions, dict) else versions
            if pinned is None and when is not None:
                pinned = self.catalog.version_as_of(name, when)
            if pinned is None:
                snapshot = self.catalog.current(name)
                if snapshot is None:
                    con.unregister(name)
                    continue  # absent: DuckDB says the table does not exist, _explain adds what does
                dataset, read[name] = snapshot.dataset, snapshot.version
            else:
                dataset, read[name] = self.catalog.at_version(name, pinned), pinned
            con.register(name, dataset)
        return read

    def _explain(self, exc: BaseException, checked: CheckedQuery, timeout_s: float) -> BaseException:
        """The error to raise for an exception of DuckDB while running `checked`."""
        import duckdb

        message = _clean(exc).removeprefix("INTERRUPT Error: ")
        if isinstance(exc, duckdb.InterruptException):
            return SqlError(
                f"the query ran longer than the time limit of {timeout_s:g} s and was stopped: "
                "filter or aggregate more, or add a LIMIT"
            )
        if isinstance(exc, duckdb.OutOfMemoryException):
            return SqlError(
                f"the query needs more memory than its limit of {self.limits.memory_limit}: filter or "
                f"aggregate more, or select fewer columns ({message.splitlines()[0]})"
            )
        if isinstance(exc, duckdb.PermissionException):
            return SqlError(f"not allowed: queries read the lake's tables only ({message.splitlines()[0]})")
        if isinstance(exc, duckdb.CatalogException) and "Table with name" in message:
            missing = re.search(r'Table with name "?([^\s"!]+)"? does not exist', message)
            name = missing[1] if missing else "?"
            existing = self.catalog.existing()
            not_yet = [n for n in self.catalog.names if n not in existing]
            what = (
                f"table {name} does not exist yet (nothing is written to it)"
                if name in self.catalog.names
                else f"unknown table {name}"
            )
            tables = ", ".join(existing) or "none yet"
            hint = f"; not written yet: {', '.join(not_yet)}" if not_yet else ""
            return SqlError(f"{what}: the lake's tables are {tables}{hint}{_line(message)}")
        if isinstance(exc, duckdb.BinderException) and "not found" in message and "column" in message.lower():
            described = []
            for name in sorted(n for n in checked.tables if n in self.catalog.names):
                snapshot = self.catalog.current(name)
                if snapshot is not None:
                    described.append(f"{name}: {', '.join(snapshot.dataset.schema.names)}")
            first = message.splitlines()[0].removeprefix("Binder Error: ")
            columns = f"; columns of {'; of '.join(described)}" if described else ""
            return SqlError(f"unknown column: {first}{columns}{_line(message)}")
        if isinstance(exc, duckdb.ParserException):
            return SqlError(f"syntax error: {message.removeprefix('Parser Error: ')}")
        if isinstance(exc, duckdb.IOException | OSError) or _unreachable(message):
            return DependencyUnavailable(f"the lake's store is unreachable: {message.splitlines()[0]}")
        if isinstance(exc, duckdb.Error):
            return SqlError(message)
        return exc

    # --- the tables -------------------------------------------------------------------------------------------
    def tables(self, history: int = 10) -> dict[str, Any]:
        """Every lake table that exists: domain, URI, Delta version, row count, files, columns with their types,
        partition columns and recent versions; `missing` lists those not written yet."""
        out: list[dict[str, Any]] = []
        missing: list[str] = []
        for name in self.catalog.names:
            snapshot = self.catalog.current(name)
            facts = self.catalog.describe(name, history) if snapshot is not None else None
            if snapshot is None or facts is None:
                missing.append(name)
                continue
            with self.connection() as con:
                con.register(name, snapshot.dataset)
                names, types = con.describe(name)
            columns = [{"name": n, "type": t} for n, t in zip(names, types, strict=True)]
            out.append(
                {"name": name, "domain": domain_of(name), "uri": self.catalog.uri(name), **facts, "columns": columns}
            )
        return {"tables": out, "missing": missing}


def _line(message: str) -> str:
    """DuckDB's "LINE n: ..." and caret lines of an error message, when it has them."""
    lines = message.splitlines()
    for i, text in enumerate(lines):
        if text.startswith("LINE "):
            return "\n" + "\n".join(lines[i : i + 2])
    return ""


def _unreachable(message: str) -> bool:
    lowered = message.lower()
    return any(
        s in lowered
        for s in ("error sending request", "connection refused", "tcp connect error", "timed out", "dns error")
    )


class _Connection:
    """One DuckDB connection of the pool, the datasets registered on it for one query, and the interrupting timer."""

    def __init__(self, connection: Any) -> None:
        self.duckdb = connection
        self.registered: set[str] = set()

    def register(self, name: str, dataset: Any) -> None:
        self.duckdb.register(name, dataset)
        self.registered.add(name)

    def unregister(self, name: str) -> None:
        if name in self.registered:
            self.registered.discard(name)
            self.duckdb.unregister(name)

    def clear(self) -> None:
        """Unregister every view, so an idle connection holds no table's data (a refresh may have replaced it)."""
        for name in list(self.registered):
            self.unregister(name)

    def describe(self, name: str) -> tuple[list[str], list[str]]:
        description = self.duckdb.execute(f'SELECT * FROM "{name}" LIMIT 0').description
        return [d[0] for d in description], [str(d[1]) for d in description]

    def run(self, sql: str, limit: int, timeout_s: float, explain: Any) -> tuple[Any, list[str], list[str]]:
        """(Arrow table of at most limit + 1 rows, column names, DuckDB types); the query is interrupted after
        `timeout_s` seconds."""
        import pyarrow as pa

        done = threading.Event()
        lock = threading.Lock()

        def interrupt() -> None:
            with lock:
                if not done.is_set():
                    self.duckdb.interrupt()

        timer = threading.Timer(timeout_s, interrupt)
        timer.daemon = True
        timer.start()
        try:
            cursor = self.duckdb.execute(sql)
            description = cursor.description or []
            reader = cursor.to_arrow_reader(min(limit + 1, 10_000))
            batches, count = [], 0
            while count <= limit:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                batches.append(batch)
                count += batch.num_rows
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except Exception as exc:
            raise explain(exc) from None
        finally:
            with lock:
                done.set()
            timer.cancel()
        return table, [d[0] for d in description], [str(d[1]) for d in description]
