"""SQL over the lake: the engine, DuckDB over the Delta tables, read-only and bounded.

`SqlEngine` runs a query on a pool of locked-down DuckDB connections: each lake table the query reads is a view
over its snapshot in the `LakeCatalog` (functions/lake/catalog.py: the Arrow table in memory, or the Arrow dataset
on the store, where DuckDB pushes the projection and the filters down to the Arrow scanner, so no DuckDB extension
such as delta or httpfs is needed). Before it runs, `check_query` (functions/lake/sql_check.py) judges the query
with DuckDB's own parser. Underneath, every connection runs with `enable_external_access=false` (no file, URL or
extension) and `lock_configuration=true` (no SET can lift a limit), within the `Limits` of
functions/lake/sql_limits.py. Results are JSON (`json_value`).

Every refusal or failure caused by the query is a `SqlError` (HTTP 400 with the reason); an unreachable S3 store is
`DependencyUnavailable` (503).

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
import math
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from eventing.schema import ValidationError
from functions.lake.catalog import LakeCatalog, domain_of
from functions.lake.sql_check import CheckedQuery, check_query
from functions.lake.sql_limits import Limits, SqlError, error_text
from functions.middleware.contract import DependencyUnavailable

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

        message = error_text(exc).removeprefix("INTERRUPT Error: ")
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
