"""SQL over the lake: latency of the sql function over a transactions-like Delta table of 1 million rows on S3.

Private S3 store (the platform's service, free ports) and one sql function process. The table has the columns the
lake writes for tfd (the domain's fields flattened, CloudEvent columns, `event_date` partitions), random UUID
transaction ids, written as --files Delta commits spread over 10 days (default 10: a compacted table; the lake
function's micro-batches make many more files until its maintenance compacts them). Then, one client, back to back
over HTTP (POST /sql):

- aggregate: fraud rate, count and amount per product category over every row (target p50 <= 300 ms);
- point lookup: one transaction by its id, a different existing id each time (target p50 <= 100 ms).

    .venv/bin/python bench/sql.py [--rows 1000000] [--files 10] [--samples 60] [--cache-mb 1024]

The function holds the latest version of the table in memory (COELHO_SQL_CACHE_MB, default 1024); --cache-mb 0
measures every query reading the store through the Arrow dataset instead.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid

from function_harness import function_process, load_average, percentile, private_platform

AGGREGATE = (
    "SELECT product_category, count(*) AS transactions, avg(CAST(is_fraud AS DOUBLE)) AS fraud_rate, "
    "sum(amount) AS amount FROM transactions GROUP BY 1 ORDER BY 1"
)
POINT = "SELECT * FROM transactions WHERE transaction_id = '{id}'"
DAYS = 10


def write_table(settings: object, rows: int, files: int, seed: int = 7) -> tuple[list[str], float]:
    """Writes the table in `files` commits; returns (a sample of its transaction ids, seconds to write)."""
    import datetime as dt

    import deltalake
    import numpy as np
    import pyarrow as pa

    from eventing.domains import get_domain
    from functions.lake.tables import storage_options, table_uri

    env = settings.function_env()  # type: ignore[attr-defined]
    fields = dict(get_domain("tfd").leaf_fields())
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    sample: list[str] = []
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    per_file = rows // files
    for f in range(files):
        n = per_file if f < files - 1 else rows - per_file * (files - 1)
        seconds = np.sort(rng.uniform(f * DAYS * 86400 / files, (f + 1) * DAYS * 86400 / files, n))
        times = [start + dt.timedelta(seconds=float(s)) for s in seconds]
        ids = [str(uuid.UUID(int=int(x), version=4)) for x in rng.integers(0, 2**63, n)]
        sample += random.Random(f).sample(ids, 50)

        def pick(path: str, size: int = n) -> list[str]:
            choices = list(fields[path].choices or ())
            return [choices[i] for i in rng.integers(0, len(choices), size)]

        table = pa.table(
            {
                "transaction_id": ids,
                "user_id": [f"user-{u:06d}" for u in rng.integers(0, 50_000, n)],
                "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
                "amount": np.round(rng.lognormal(3.5, 1.2, n), 2),
                "currency": pick("currency"),
                "merchant_id": [f"merchant-{m:05d}" for m in rng.integers(0, 5_000, n)],
                "product_category": pick("product_category"),
                "transaction_type": pick("transaction_type"),
                "payment_method": pick("payment_method"),
                "location_lat": rng.uniform(-60, 70, n),
                "location_lon": rng.uniform(-180, 180, n),
                "ip_address": [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 255, (n, 3))],
                "device_info_os": pick("device_info.os"),
                "device_info_browser": pick("device_info.browser"),
                "user_agent": ["Mozilla/5.0"] * n,
                "account_age_days": rng.integers(0, 5_000, n),
                "cvv_provided": rng.random(n) < 0.9,
                "billing_address_match": rng.random(n) < 0.85,
                "is_fraud": rng.random(n) < 0.02,
                "ce_id": ids,
                "ce_source": ["/coelho/producers/tfd"] * n,
                "arrived_at": pa.array(times, pa.timestamp("us", tz="UTC")),
                "event_date": [t.date().isoformat() for t in times],
            }
        )
        deltalake.write_deltalake(
            table_uri("transactions", environ=env),
            table,
            mode="append",
            partition_by=["event_date"],
            storage_options=storage_options(env),
        )
    return sample, time.perf_counter() - started


def measure(url: str, queries: list[str], warmup: int = 3) -> dict[str, float]:
    import requests

    from functions.middleware.auth import auth_headers

    session = requests.Session()
    session.headers.update(auth_headers())  # the sql function asks for COELHO_API_TOKEN when it is set
    client, server = [], []
    for i, query in enumerate(queries):
        started = time.perf_counter()
        response = session.post(url + "/sql", json={"query": query}, timeout=60)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        assert body["row_count"] >= 1, body
        if i >= warmup:
            client.append(elapsed * 1000)
            server.append(body["elapsed_ms"])
    client.sort()
    return {
        "p50_ms": round(percentile(client, 50), 1),
        "p99_ms": round(percentile(client, 99), 1),
        "mean_ms": round(statistics.fmean(client), 1),
        "server_p50_ms": round(statistics.median(server), 1),
        "samples": len(client),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10, help="Delta commits (files) the table is written in")
    parser.add_argument("--samples", type=int, default=60, help="queries measured per kind")
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=1024,
        help="COELHO_SQL_CACHE_MB of the function (0: no table in memory, every query reads the store)",
    )
    args = parser.parse_args()

    with private_platform(["s3"]) as platform:
        ids, write_s = write_table(platform.settings, args.rows, args.files)
        print(f"wrote {args.rows:,} rows in {args.files} commits in {write_s:.1f} s", flush=True)
        load_before = load_average()
        extra_env = {"COELHO_SQL_CACHE_MB": str(args.cache_mb)}
        with function_process(platform.settings, "sql", server="waitress", extra_env=extra_env) as url:
            aggregate = measure(url, [AGGREGATE] * (args.samples + 3))
            print("aggregate", json.dumps(aggregate), flush=True)
            picks = random.Random(1).choices(ids, k=args.samples + 3)
            point = measure(url, [POINT.format(id=i) for i in picks])
            print("point lookup", json.dumps(point), flush=True)
    result = {
        "bench": "sql",
        "rows": args.rows,
        "files": args.files,
        "cache_mb": args.cache_mb,
        "aggregate": aggregate,
        "point_lookup": point,
        "targets": {"aggregate_p50_ms": 300, "point_lookup_p50_ms": 100},
        "met": {"aggregate": aggregate["p50_ms"] <= 300, "point_lookup": point["p50_ms"] <= 100},
        "load_avg": {"before": load_before, "after": load_average()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
