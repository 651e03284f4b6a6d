"""The sql function on the real platform: Delta tables written to the platform's S3 store, queried over HTTP, as
a CloudEvent and with `coelho sql`; a plain client (deltalake and DuckDB in a fresh process) counts the same.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from coelho.runtime import Platform
from eventing.cloudevent_types import SQL_REQUESTED, SQL_RESULT

pytestmark = pytest.mark.stack

ROWS = 30_000
CATEGORIES = ("electronics", "groceries", "travel", "gaming")


def _lake_env(platform: Platform) -> dict[str, str]:
    return {**os.environ, **platform.settings.to_environ(), **platform.settings.function_env()}


@pytest.fixture(scope="module")
def sql_platform(platform: Platform) -> Platform:
    """The platform with the sql function and two Delta tables on its S3 store: transactions in two versions,
    trips in one; customer_interactions does not exist."""
    import deltalake
    import pyarrow as pa

    from functions.lake.tables import storage_options, table_uri

    platform.start(["sql"])
    env = platform.settings.function_env()
    options = storage_options(env)
    bucket = f"sql-tests-{uuid.uuid4().hex[:8]}"
    from coelho.services import s3_client

    s3_client(platform.settings).make_bucket(bucket)
    env["COELHO_LAKE_BUCKET"] = bucket
    half = ROWS // 2
    for start in (0, half):
        ids = range(start, start + half)
        deltalake.write_deltalake(
            table_uri("transactions", environ=env),
            pa.table(
                {
                    "transaction_id": [f"tx-{i}" for i in ids],
                    "amount": [float(i % 977) for i in ids],
                    "product_category": [CATEGORIES[i % 4] for i in ids],
                    "is_fraud": [i % 50 == 0 for i in ids],
                    "event_date": ["2026-03-01" if i % 2 else "2026-03-02" for i in ids],
                }
            ),
            mode="append",
            partition_by=["event_date"],
            storage_options=options,
        )
    deltalake.write_deltalake(
        table_uri("trips", environ=env),
        pa.table({"weather": ["rain", "fog"], "eta": [1.0, 2.0]}),
        storage_options=options,
    )
    platform.sql_bucket = bucket  # type: ignore[attr-defined]
    return platform


@pytest.fixture(scope="module")
def bucket_env(sql_platform: Platform) -> dict[str, str]:
    return {**_lake_env(sql_platform), "COELHO_LAKE_BUCKET": sql_platform.sql_bucket}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def service(sql_platform: Platform, bucket_env: dict[str, str]) -> Iterator[str]:
    """The sql function reads the platform's `delta-lake` bucket; the tests' tables are in a bucket of their own,
    so a second sql function (same module, same server) serves them."""
    from coelho.settings import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "functions.sql"],
        env={**bucket_env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/health/readiness", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "the sql function did not start"
        time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def post(url: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(url + "/sql", json=body, timeout=60)


def test_the_platforms_sql_function_is_ready_and_answers(sql_platform: Platform) -> None:
    url = sql_platform.settings.url("sql")
    assert requests.get(url + "/health/readiness", timeout=5).status_code == 200
    response = requests.post(url + "/sql", json={"query": "SELECT 42 AS answer"}, timeout=30)
    assert response.status_code == 200 and response.json()["rows"] == [[42]]
    tables = requests.get(url + "/tables", timeout=30).json()
    assert {"tables", "missing"} <= set(tables)


def test_counts_equal_a_plain_client_in_a_fresh_process(service: str, bucket_env: dict[str, str]) -> None:
    query = (
        "SELECT product_category, count(*) AS n, sum(CAST(is_fraud AS INTEGER)) AS fraud, sum(amount) AS total "
        "FROM transactions GROUP BY 1 ORDER BY 1"
    )
    body = post(service, {"query": query}).json()
    assert sum(row[1] for row in body["rows"]) == ROWS and body["versions"] == {"transactions": 1}
    plain = textwrap.dedent(f"""
        import json, os, duckdb, deltalake
        from functions.lake.tables import storage_options, table_uri
        table = deltalake.DeltaTable(table_uri("transactions"), storage_options=storage_options())
        con = duckdb.connect()
        con.register("transactions", table.to_pyarrow_dataset())
        print(json.dumps(con.execute({query!r}).fetchall()))
    """)
    out = subprocess.run([sys.executable, "-c", plain], env=bucket_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == body["rows"]


def test_time_travel_over_http(service: str) -> None:
    now = post(service, {"query": "SELECT count(*) FROM transactions"}).json()
    then = post(service, {"query": "SELECT count(*) FROM transactions", "version": 0}).json()
    assert now["rows"] == [[ROWS]] and then["rows"] == [[ROWS // 2]] and then["versions"] == {"transactions": 0}


def test_partition_filters_and_point_lookups(service: str) -> None:
    body = post(service, {"query": "SELECT amount FROM transactions WHERE transaction_id = 'tx-12345'"}).json()
    assert body["rows"] == [[float(12345 % 977)]]
    body = post(service, {"query": "SELECT count(*) FROM transactions WHERE event_date = '2026-03-01'"}).json()
    assert body["rows"] == [[ROWS // 2]]


def test_filters_and_projection_reach_the_scan_of_the_s3_dataset(
    sql_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transactions table on S3 (a bucket of its own) read on the store, not in memory: a partition filter opens
    half of its four files, one column reads a fraction of the bytes of all columns (delta-rs's S3 reads counted)."""
    from coelho.services import s3_client
    from functions.lake.catalog import LakeCatalog
    from functions.lake.sql import SqlEngine
    from functions.lake.tables import storage_options, table_uri
    from tests.functions.store_reads import assert_pushed_down, write_transactions

    bucket = f"sql-pushdown-{uuid.uuid4().hex[:8]}"
    s3_client(sql_platform.settings).make_bucket(bucket)
    env = {**_lake_env(sql_platform), "COELHO_LAKE_BUCKET": bucket}
    write_transactions(table_uri("transactions", environ=env), storage_options(env))
    assert_pushed_down(lambda: SqlEngine(LakeCatalog(environ=env, cache_bytes=0)), monkeypatch)


def test_refusals_and_limits_are_400s_never_5xx(service: str) -> None:
    cases = {
        "DROP VIEW transactions": "DROP is not allowed",
        "SELECT * FROM read_parquet('s3://delta-lake/x.parquet')": "table function read_parquet is not allowed",
        "SELECT * FROM customer_interactions": "table customer_interactions does not exist yet",
        "SELECT nope FROM trips": "columns of trips: weather, eta",
        "SELECT FROM WHERE": "syntax error",
    }
    for query, reason in cases.items():
        response = post(service, {"query": query})
        assert response.status_code == 400 and reason in response.json()["error"], (query, response.text)
    big = post(service, {"query": "SELECT * FROM transactions", "limit": 100}).json()
    assert big["row_count"] == 100 and big["truncated"] is True


def test_a_long_query_is_stopped_at_the_time_limit(service: str) -> None:
    started = time.monotonic()
    response = post(
        service,
        {"query": "SELECT count(*) FROM transactions a, transactions b WHERE a.amount < b.amount", "timeout_s": 2},
    )
    assert response.status_code == 400, response.text
    assert "ran longer than the time limit of 2 s" in response.json()["error"]
    assert time.monotonic() - started < 30
    assert post(service, {"query": "SELECT count(*) FROM trips"}).json()["rows"] == [[2]]


def test_a_sql_requested_cloudevent_gets_a_sql_result(service: str) -> None:
    headers = {
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/tests",
        "ce-specversion": "1.0",
        "ce-type": SQL_REQUESTED,
        "content-type": "application/json",
    }
    response = requests.post(
        service + "/", data=json.dumps({"query": "SELECT count(*) AS n FROM trips"}), headers=headers, timeout=30
    )
    assert response.status_code == 200 and response.headers["ce-type"] == SQL_RESULT
    assert response.json()["rows"] == [[2]]


def coelho(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coelho.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_coelho_sql_prints_table_json_and_csv(service: str, bucket_env: dict[str, str]) -> None:
    query = "SELECT product_category, count(*) AS n FROM transactions GROUP BY 1 ORDER BY 1"
    table = coelho(bucket_env, "sql", query, "--url", service)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split(" | ") == ["product_category", "n"] and lines[2].split() == ["electronics", "|", "7500"]
    assert "4 row(s) in" in lines[-1]
    as_json = json.loads(coelho(bucket_env, "sql", query, "--url", service, "--format", "json").stdout)
    assert as_json["rows"][0] == ["electronics", ROWS // 4]
    as_csv = coelho(bucket_env, "sql", query, "--url", service, "--format", "csv", "--limit", "2")
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["product_category", "n"],
        ["electronics", "7500"],
        ["gaming", "7500"],
    ]
    assert "cut at the limit of 2" in as_csv.stderr


def test_coelho_sql_fails_with_the_message(service: str, bucket_env: dict[str, str]) -> None:
    result = coelho(bucket_env, "sql", "DELETE FROM transactions", "--url", service)
    assert result.returncode != 0
    assert "DELETE is not allowed" in result.stderr and "HTTP 400" in result.stderr


def test_coelho_sql_tables(service: str, bucket_env: dict[str, str]) -> None:
    result = coelho(bucket_env, "sql", "--tables", "--url", service)
    assert result.returncode == 0, result.stderr
    assert f"transactions (tfd): {ROWS:,} rows, Delta version 1" in result.stdout
    assert "event_date" in result.stdout and "(partition)" in result.stdout
    assert "not written yet:" in result.stdout and "customer_interactions" in result.stdout
    listed = json.loads(coelho(bucket_env, "sql", "--tables", "--url", service, "--format", "json").stdout)
    assert listed == requests.get(service + "/tables", timeout=30).json()


def test_coelho_sql_without_the_function_queries_in_process(bucket_env: dict[str, str]) -> None:
    env = {**bucket_env, "COELHO_PORT_SQL": "9"}  # nothing listens there
    result = coelho(env, "sql", "SELECT count(*) AS n FROM trips")
    assert result.returncode == 0, result.stderr
    assert "querying the lake from this process" in result.stderr and result.stdout.splitlines()[2].strip() == "2"
