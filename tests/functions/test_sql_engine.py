"""SQL over the lake without services: Delta tables on a local path, the engine and the sql function's app.

Every refusal is a 400 that says why; a query that runs too long is stopped at the time limit (400); a huge
result is cut at the limit and says so; time travel reads a table as it was; the example queries of the SQL page
run on tables shaped like the lake's (the domains' fields, flattened, from the producers' generators); a table read
on the store gets the query's filters and projection (files never opened, bytes never read).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import deltalake
import pyarrow as pa
import pytest

from eventing.cloudevent_types import SQL_REQUESTED, SQL_RESULT
from eventing.domains import DOMAINS
from functions.lake.catalog import LakeCatalog
from functions.lake.sql import SqlEngine
from functions.lake.sql_check import check_query
from functions.lake.sql_examples import EXAMPLES
from functions.lake.sql_limits import Limits, SqlError
from functions.lake.tables import table_for
from functions.middleware.contract import DependencyUnavailable
from functions.sql import create

EVENTS_PER_DOMAIN = 400


def lake_rows(domain: str, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Generated records of a domain as lake rows: fields flattened with `_`, times as timestamps, CloudEvent and
    partition columns."""
    from producers.generators import make_generator

    declared = dict(DOMAINS[domain].leaf_fields())
    rows = []
    for event in make_generator(domain, seed=seed, start="2026-03-01T00:00:00Z").take(count):
        if event.kind != "record":
            continue
        row: dict[str, Any] = {}
        for path, field in declared.items():
            value: Any = event.data
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if field.type == "timestamp" and isinstance(value, str):
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            row[path.replace(".", "_")] = value
        row.update(
            ce_id=event.id,
            ce_source=f"/coelho/producers/{domain}",
            arrived_at=dt.datetime.now(dt.UTC),
            event_date=dt.datetime.fromtimestamp(event.time, dt.UTC).date().isoformat(),
        )
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    for domain in DOMAINS:
        rows = lake_rows(domain, EVENTS_PER_DOMAIN)
        half = len(rows) // 2
        uri = str(root / table_for(domain))
        deltalake.write_deltalake(uri, pa.Table.from_pylist(rows[:half]), partition_by=["event_date"])
        deltalake.write_deltalake(uri, pa.Table.from_pylist(rows[half:]), mode="append", partition_by=["event_date"])
    labels = pa.table({"transaction_id": ["t-1", "t-2"], "is_fraud": [True, False]})
    deltalake.write_deltalake(str(root / "transactions_labels"), labels)
    return root


@pytest.fixture(scope="module")
def engine(lake: Path) -> SqlEngine:
    return SqlEngine(LakeCatalog(root=str(lake)), Limits(timeout_s=2.0, rows=1_000, max_rows=5_000))


@pytest.fixture(scope="module")
def client(engine: SqlEngine) -> Any:
    return create(engine).test_client()


def post_sql(client: Any, body: Any) -> Any:
    return client.post("/sql", json=body)


# --- what runs ------------------------------------------------------------------------------------------------
def test_select_answers_columns_types_rows_and_versions(client: Any) -> None:
    response = post_sql(client, {"query": "SELECT count(*) AS n, max(amount) AS top FROM transactions"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["columns"] == [{"name": "n", "type": "BIGINT"}, {"name": "top", "type": "DOUBLE"}]
    assert body["rows"][0][0] == EVENTS_PER_DOMAIN
    assert body["row_count"] == 1 and body["truncated"] is False and body["limit"] == 1_000
    assert body["versions"] == {"transactions": 1}
    assert body["elapsed_ms"] > 0


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.title)
def test_every_example_query_runs_on_tables_shaped_like_the_lake(engine: SqlEngine, example: Any) -> None:
    result = engine.query(example.sql)
    assert result["row_count"] > 0, example.sql
    assert all(c["name"] for c in result["columns"])


@pytest.mark.parametrize(
    "query",
    [
        "WITH fraud AS (SELECT * FROM transactions WHERE is_fraud) SELECT count(*) FROM fraud",
        "SELECT t.transaction_id FROM transactions t JOIN transactions_labels l USING (transaction_id)",
        "FROM trips SELECT weather LIMIT 1",
        "VALUES (1, 'a')",
        "DESCRIBE trips",
        "SELECT * FROM range(3)",
        "SELECT unnest([1, 2])",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 1;",
    ],
)
def test_read_only_queries_run(engine: SqlEngine, query: str) -> None:
    engine.query(query)


def test_timestamps_decimals_nan_and_nested_values_are_json(client: Any) -> None:
    query = (
        "SELECT TIMESTAMPTZ '2026-01-02 03:04:05+00' AS t, 1.25::DECIMAL(6, 2) AS d, 'nan'::DOUBLE AS nan, "
        "[1, 2] AS l, {'a': 1} AS s, DATE '2026-01-02' AS day, 'ab'::BLOB AS b"
    )
    response = post_sql(client, {"query": query})
    assert response.status_code == 200, response.json
    assert response.json["rows"] == [["2026-01-02T03:04:05+00:00", 1.25, None, [1, 2], {"a": 1}, "2026-01-02", "YWI="]]


# --- what is refused ------------------------------------------------------------------------------------------
FORBIDDEN = {
    "INSERT INTO transactions VALUES (1)": "INSERT is not allowed",
    "UPDATE transactions SET amount = 0": "UPDATE is not allowed",
    "DELETE FROM transactions": "DELETE is not allowed",
    "CREATE TABLE x AS SELECT 1": "CREATE is not allowed",
    "DROP VIEW transactions": "DROP is not allowed",
    "ALTER TABLE transactions ADD COLUMN x INT": "ALTER is not allowed",
    "ATTACH 'other.db'": "ATTACH is not allowed",
    "DETACH other": "DETACH is not allowed",
    "COPY (SELECT 1) TO '/tmp/out.csv'": "COPY is not allowed",
    "EXPORT DATABASE '/tmp/dump'": "EXPORT is not allowed",
    "PRAGMA version": "PRAGMA is not allowed",
    "SET threads = 64": "SET is not allowed",
    "RESET memory_limit": "RESET is not allowed",
    "INSTALL httpfs": "INSTALL is not allowed",
    "LOAD httpfs": "LOAD is not allowed",
    "CALL pragma_version()": "CALL is not allowed",
    "EXPLAIN SELECT 1": "EXPLAIN is not allowed",
    "BEGIN TRANSACTION": "BEGIN is not allowed",
    "CHECKPOINT": "CHECKPOINT is not allowed",
    "USE memory": "USE is not allowed",
    "SELECT 1; SELECT 2": "exactly one statement per query: this has 2",
    "SELECT 1; DROP VIEW trips": "exactly one statement per query: this has 2",
}
TABLE_FUNCTIONS = {
    "SELECT * FROM read_csv('/etc/passwd')": "read_csv",
    "SELECT * FROM read_csv_auto('/etc/passwd')": "read_csv_auto",
    "SELECT * FROM read_parquet('s3://delta-lake/transactions/*.parquet')": "read_parquet",
    "SELECT * FROM parquet_scan('/tmp/x.parquet')": "parquet_scan",
    "SELECT * FROM read_json('/tmp/x.json')": "read_json",
    "SELECT * FROM read_json_auto('http://example.org/x.json')": "read_json_auto",
    "SELECT * FROM read_text('/etc/hostname')": "read_text",
    "SELECT * FROM read_blob('/etc/hostname')": "read_blob",
    "SELECT * FROM glob('/*')": "glob",
    "SELECT * FROM duckdb_settings()": "duckdb_settings",
    "SELECT * FROM query('SELECT 1')": "query",
    "SELECT * FROM query_table('trips')": "query_table",
    "SELECT * FROM trips WHERE weather IN (SELECT * FROM read_csv('/etc/passwd'))": "read_csv",
    "WITH x AS (SELECT * FROM glob('/etc/*')) SELECT * FROM x": "glob",
    "SELECT * FROM '/etc/passwd'": "",  # a file as a table (DuckDB's replacement scan)
    "SELECT * FROM 'data.csv'": "",
    'SELECT * FROM "s3://delta-lake/transactions"': "",
}


@pytest.mark.parametrize(("query", "reason"), FORBIDDEN.items(), ids=list(FORBIDDEN))
def test_every_statement_but_one_select_is_a_400_naming_why(client: Any, query: str, reason: str) -> None:
    response = post_sql(client, {"query": query})
    assert response.status_code == 400, response.json
    assert reason in response.json["error"]


@pytest.mark.parametrize(("query", "function"), TABLE_FUNCTIONS.items(), ids=list(TABLE_FUNCTIONS))
def test_table_functions_that_reach_files_urls_or_settings_are_400(client: Any, query: str, function: str) -> None:
    response = post_sql(client, {"query": query})
    assert response.status_code == 400, response.json
    error = response.json["error"]
    if function:
        assert f"table function {function} is not allowed" in error
    else:
        assert "reading a file or URL" in error and "is not allowed" in error, error


def test_a_connection_cannot_reach_files_even_past_the_parser(engine: SqlEngine) -> None:
    with engine.connection() as con:
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            "COPY (SELECT 1) TO '/tmp/coelho-sql.csv'",
            "SET enable_external_access = true",
            "SET memory_limit = '64GB'",
        ):
            with pytest.raises(Exception, match="disabled by configuration|locked|Permission"):
                con.duckdb.execute(sql)


def test_a_syntax_error_says_where(client: Any) -> None:
    response = post_sql(client, {"query": "SELECT weather,\nFROM trips WHERE"})
    assert response.status_code == 400
    error = response.json["error"]
    assert error.startswith("syntax error: syntax error at end of input at line 2, column 17"), error
    assert "FROM trips WHERE" in error and "^" in error


def test_an_unknown_table_lists_the_tables_that_exist(client: Any) -> None:
    error = post_sql(client, {"query": "SELECT * FROM transaction"}).json["error"]
    assert error.startswith("unknown table transaction: the lake's tables are transactions, transactions_labels, trips")
    assert "not written yet: trips_labels, customer_interactions_labels" in error
    error = post_sql(client, {"query": "SELECT * FROM trips_labels"}).json["error"]
    assert error.startswith("table trips_labels does not exist yet")


def test_an_unknown_column_lists_the_columns_of_the_tables_read(client: Any) -> None:
    response = post_sql(client, {"query": "SELECT weathr FROM trips"})
    assert response.status_code == 400
    error = response.json["error"]
    assert error.startswith('unknown column: Referenced column "weathr" not found')
    assert "columns of trips: trip_id, driver_id" in error and "origin_lat" in error and "event_date" in error


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": 42},
        {"query": "SELECT 1", "limit": 0},
        {"query": "SELECT 1", "limit": 5_001},
        {"query": "SELECT 1", "limit": True},
        {"query": "SELECT 1", "version": -1},
        {"query": "SELECT 1", "as_of": "yesterday"},
        {"query": "SELECT 1", "rows": 3},
        {"query": ""},
        {"query": "SELECT 1 " + " " * 30_000},
        ["SELECT 1"],
    ],
)
def test_a_malformed_request_is_a_400(client: Any, body: Any) -> None:
    response = post_sql(client, body)
    assert response.status_code == 400, response.json


def test_not_json_is_a_400(client: Any) -> None:
    assert client.post("/sql", data="SELECT 1", content_type="text/plain").status_code == 400


# --- limits ---------------------------------------------------------------------------------------------------
def test_a_huge_result_is_cut_at_the_limit_and_says_so(client: Any) -> None:
    body = post_sql(client, {"query": "SELECT range AS n FROM range(100000000)", "limit": 5_000}).json
    assert body["row_count"] == 5_000 and len(body["rows"]) == 5_000 and body["truncated"] is True
    assert body["rows"][-1] == [4_999]
    body = post_sql(client, {"query": "SELECT * FROM range(10)"}).json
    assert body["row_count"] == 10 and body["truncated"] is False
    body = post_sql(client, {"query": "SELECT * FROM transactions", "limit": 7}).json  # a lake table, cut
    assert body["row_count"] == 7 and body["truncated"] is True
    assert post_sql(client, {"query": "SELECT count(*) FROM transactions"}).json["rows"] == [[EVENTS_PER_DOMAIN]]


@pytest.mark.slow  # waits for a real time limit
def test_a_long_query_is_stopped_at_the_time_limit_with_a_400(client: Any, engine: SqlEngine) -> None:
    started = time.monotonic()
    response = post_sql(client, {"query": "SELECT count(*) FROM range(100000000) a, range(100000000) b"})
    assert response.status_code == 400, response.json
    assert "ran longer than the time limit of 2 s and was stopped" in response.json["error"]
    assert time.monotonic() - started < 30  # stopped, not run to the end (hours)
    # every pooled connection still answers afterwards
    for _ in range(engine.limits.concurrent + 1):
        assert post_sql(client, {"query": "SELECT 1 AS one"}).json["rows"] == [[1]]


def test_a_query_over_its_memory_limit_is_a_400(lake: Path) -> None:
    small = SqlEngine(LakeCatalog(root=str(lake)), Limits(memory_limit="32MB", threads=1, timeout_s=20))
    with pytest.raises(SqlError, match="needs more memory than its limit of 32MB"):
        small.query("SELECT n % 3000000 AS k, list(n) FROM range(6000000) t(n) GROUP BY 1 ORDER BY 1")


# --- time travel ----------------------------------------------------------------------------------------------
def test_version_reads_a_table_as_it_was(client: Any) -> None:
    half = EVENTS_PER_DOMAIN // 2
    now = post_sql(client, {"query": "SELECT count(*) FROM transactions"}).json
    then = post_sql(client, {"query": "SELECT count(*) FROM transactions", "version": 0}).json
    assert now["rows"] == [[EVENTS_PER_DOMAIN]] and then["rows"] == [[half]]
    assert then["versions"] == {"transactions": 0}
    pinned = post_sql(
        client,
        {"query": "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM trips)", "version": {"trips": 0}},
    ).json
    assert pinned["rows"] == [[EVENTS_PER_DOMAIN, half]] and pinned["versions"] == {"transactions": 1, "trips": 0}


def test_as_of_reads_the_version_current_at_that_time(client: Any, lake: Path) -> None:
    history = deltalake.DeltaTable(str(lake / "trips")).history()
    first = min(int(c["timestamp"]) for c in history if int(c["version"]) == 0)
    as_of = dt.datetime.fromtimestamp(first / 1000, dt.UTC).isoformat()
    body = post_sql(client, {"query": "SELECT count(*) FROM trips", "as_of": as_of}).json
    assert body["versions"] == {"trips": 0} and body["rows"] == [[EVENTS_PER_DOMAIN // 2]]
    early = post_sql(client, {"query": "SELECT count(*) FROM trips", "as_of": "2000-01-01T00:00:00Z"})
    assert early.status_code == 400 and "did not exist at 2000-01-01" in early.json["error"]


def test_a_version_that_does_not_exist_is_a_400(client: Any) -> None:
    response = post_sql(client, {"query": "SELECT count(*) FROM trips", "version": 99})
    assert response.status_code == 400
    assert response.json["error"] == "table trips has no version 99: its versions are 0 to 1"
    response = post_sql(client, {"query": "SELECT 1", "version": {"trips": 0}})
    assert response.status_code == 400 and "the query does not read trips" in response.json["message"]


@pytest.mark.parametrize("cache_bytes", [1 << 30, 0], ids=["in memory", "on the store"])
def test_a_table_written_after_start_is_seen(tmp_path: Path, cache_bytes: int) -> None:
    engine = SqlEngine(LakeCatalog(root=str(tmp_path), refresh_s=0.0, cache_bytes=cache_bytes))
    with pytest.raises(SqlError, match="does not exist yet"):
        engine.query("SELECT * FROM trips_labels")
    deltalake.write_deltalake(str(tmp_path / "trips_labels"), pa.table({"trip_id": ["e1"]}))
    assert engine.query("SELECT count(*) FROM trips_labels")["rows"] == [[1]]
    deltalake.write_deltalake(str(tmp_path / "trips_labels"), pa.table({"trip_id": ["e2"]}), mode="append")
    assert engine.query("SELECT count(*) FROM trips_labels")["rows"] == [[2]]
    deltalake.DeltaTable(str(tmp_path / "trips_labels")).optimize.compact()  # files removed: read again whole
    deltalake.write_deltalake(str(tmp_path / "trips_labels"), pa.table({"trip_id": ["e3"]}), mode="append")
    assert engine.query("SELECT string_agg(trip_id, ',' ORDER BY trip_id) FROM trips_labels")["rows"] == [["e1,e2,e3"]]
    (listed,) = engine.tables()["tables"]
    assert listed["in_memory"] is bool(cache_bytes) and listed["row_count"] == 3 and listed["version"] == 3


def test_a_commit_is_seen_within_the_refresh_interval_without_waiting_for_the_store(tmp_path: Path) -> None:
    engine = SqlEngine(LakeCatalog(root=str(tmp_path), refresh_s=0.2))
    deltalake.write_deltalake(str(tmp_path / "trips"), pa.table({"trip_id": ["a"]}))
    assert engine.query("SELECT count(*) FROM trips")["rows"] == [[1]]
    deltalake.write_deltalake(str(tmp_path / "trips"), pa.table({"trip_id": ["b"]}), mode="append")
    deadline = time.monotonic() + 20
    while (answer := engine.query("SELECT count(*) FROM trips"))["rows"] != [[2]]:
        assert answer["versions"] == {"trips": 0} and time.monotonic() < deadline
        time.sleep(0.05)
    assert answer["versions"] == {"trips": 1}


def test_a_table_larger_than_the_cache_is_read_on_the_store(lake: Path) -> None:
    engine = SqlEngine(LakeCatalog(root=str(lake), cache_bytes=50_000))
    tables = {t["name"]: t for t in engine.tables()["tables"]}
    assert tables["transactions_labels"]["in_memory"] and not tables["transactions"]["in_memory"]
    assert engine.query("SELECT count(*) FROM transactions")["rows"] == [[EVENTS_PER_DOMAIN]]


# --- the tables, the CloudEvent, the store being down ---------------------------------------------------------
def test_filters_and_projection_reach_the_scan_of_a_table_on_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.functions.store_reads import assert_pushed_down, write_transactions

    write_transactions(str(tmp_path / "transactions"))
    # cache_bytes=0: the table is the Arrow dataset on the store, as a table too large for memory is
    assert_pushed_down(lambda: SqlEngine(LakeCatalog(root=str(tmp_path), cache_bytes=0)), monkeypatch)


def test_get_tables_lists_columns_types_rows_and_versions(client: Any) -> None:
    response = client.get("/tables")
    assert response.status_code == 200
    tables = {t["name"]: t for t in response.json["tables"]}
    assert set(tables) == {"transactions", "transactions_labels", "trips", "customer_interactions"}
    trips = tables["trips"]
    assert trips["domain"] == "eta" and trips["row_count"] == EVENTS_PER_DOMAIN and trips["version"] == 1
    assert trips["partition_columns"] == ["event_date"]
    types = {c["name"]: c["type"] for c in trips["columns"]}
    assert types["weather"] == "VARCHAR" and types["origin_lat"] == "DOUBLE" and types["hour_of_day"] == "BIGINT"
    assert [v["version"] for v in trips["versions"]] == [1, 0]
    assert "trips_labels" in response.json["missing"]


def test_a_sql_requested_cloudevent_is_answered_with_a_sql_result(client: Any) -> None:
    headers = {"ce-id": str(uuid.uuid4()), "ce-source": "/tests", "ce-specversion": "1.0", "ce-type": SQL_REQUESTED}
    response = client.post("/", json={"query": "SELECT count(*) AS n FROM trips", "limit": 5}, headers=headers)
    assert response.status_code == 200, response.json
    assert response.headers["ce-type"] == SQL_RESULT and response.headers["ce-source"] == "/coelho/functions/sql"
    assert response.json["rows"] == [[EVENTS_PER_DOMAIN]]
    bad = client.post("/", json={"query": "DROP VIEW trips"}, headers={**headers, "ce-id": "2"})
    assert bad.status_code == 400 and "DROP is not allowed" in bad.json["error"]


def test_an_unreachable_store_is_a_503() -> None:
    environ = {"S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    catalog = LakeCatalog(environ=environ)
    catalog.options.update(max_retries="0", retry_timeout="1s")
    app = create(SqlEngine(catalog)).test_client()
    response = app.post("/sql", json={"query": "SELECT count(*) FROM trips"})
    assert response.status_code == 503 and "unreachable" in response.json["error"], response.json
    assert app.get("/tables").status_code == 503


def test_the_parser_check_alone(engine: SqlEngine) -> None:
    with engine.connection() as con:
        checked = check_query(
            con.duckdb, "WITH t AS (SELECT 1) SELECT * FROM t, trips JOIN information_schema.tables ON true"
        )
    assert checked.tables == {"trips"} and checked.ctes == {"t"}


def test_the_error_body_is_json_with_the_reason(client: Any) -> None:
    response = post_sql(client, {"query": "DROP VIEW trips"})
    assert response.headers["Content-Type"] == "application/json"
    assert set(json.loads(response.data)) == {"error"}


def test_limits_from_the_environment() -> None:
    limits = Limits.from_env(
        {
            "COELHO_SQL_ROWS": "50",
            "COELHO_SQL_MAX_ROWS": "60",
            "COELHO_SQL_TIMEOUT_S": "1.5",
            "COELHO_SQL_MEMORY_LIMIT": "1GB",
            "COELHO_SQL_THREADS": "1",
            "COELHO_SQL_CONCURRENT": "2",
        }
    )
    assert (limits.rows, limits.max_rows, limits.timeout_s, limits.memory_limit, limits.threads, limits.concurrent) == (
        50,
        60,
        1.5,
        "1GB",
        1,
        2,
    )
    with pytest.raises(DependencyUnavailable):
        raise DependencyUnavailable("typed")
