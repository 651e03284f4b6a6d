"""The lake function: events/s it ingests, and how long an event waits for its commit at the producers' rates.

On a private S3 server (SeaweedFS on free ports), one `python -m functions.lake` process:
1. ingest: closed-loop clients POST distinct records of the three domains (binary-mode CloudEvents, as the Broker
   delivers them) for a few seconds per concurrency level; each request is answered once its batch is committed.
   rows_per_s counts the rows the lake committed (its /metrics), cpu_us_per_row the function process's CPU time per
   row (load-independent);
2. lag: open-loop senders at the producers' default rate (3 events/s per domain, `coelho up`'s) for a while; the
   time from sending an event to its answer is the time to its commit (p50/p99), beside the lake's own
   arrival-to-commit histogram.

    .venv/bin/python bench/lake.py [--levels 16,64,256] [--seconds 8] [--lag-seconds 20] [--batch-ms 1000]

Prints one JSON object on its last line (with the load average: the figures depend on what else runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

from function_harness import (
    Client,
    ce_request,
    cpu_seconds,
    function_process,
    load,
    load_average,
    percentile,
    private_platform,
)

import producers
from eventing.domains import DOMAINS, get_domain

DOMAIN_NAMES = list(DOMAINS)


def requests_for(count: int, seed: int) -> list[tuple[dict[str, str], bytes]]:
    """`count` distinct record CloudEvents, the three domains interleaved."""
    per_domain = count // len(DOMAIN_NAMES) + 1
    streams = {name: producers.records(name, per_domain, seed=seed + i) for i, name in enumerate(DOMAIN_NAMES)}
    out = []
    for k in range(per_domain):
        for name in DOMAIN_NAMES:
            d = get_domain(name)
            out.append(ce_request(d.type("record"), streams[name][k], source=d.source("producers")))
    return out[:count]


def lake_metrics(url: str) -> dict[str, float]:
    """Sums over the tables of the lake's counters and histograms."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("coelho_lake_") or "{" not in line:
            continue
        name = line.split("{", 1)[0]
        if name.endswith("_bucket"):
            continue
        out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def ingest(url: str, concurrency: int, seconds: float, seed: int) -> dict[str, Any]:
    # more distinct events than the level can send, so no request is a duplicate
    reqs = requests_for(max(2000, int(concurrency * seconds * 3)), seed)
    before, cpu_before = lake_metrics(url), cpu_seconds(url)
    result = load(url, reqs, concurrency, seconds)
    after, cpu_after = lake_metrics(url), cpu_seconds(url)
    rows = after.get("coelho_lake_rows_written_total", 0) - before.get("coelho_lake_rows_written_total", 0)
    commits = after.get("coelho_lake_commit_seconds_count", 0) - before.get("coelho_lake_commit_seconds_count", 0)
    commit_s = after.get("coelho_lake_commit_seconds_sum", 0) - before.get("coelho_lake_commit_seconds_sum", 0)
    return {
        **result,
        "rows": int(rows),
        "rows_per_s": round(rows / seconds, 1),
        "commits": int(commits),
        "rows_per_commit": round(rows / commits, 1) if commits else None,
        "commit_ms_mean": round(commit_s / commits * 1000, 1) if commits else None,
        "cpu_us_per_row": round((cpu_after - cpu_before) / rows * 1e6) if rows else None,
    }


def lag(url: str, rate_per_domain: float, seconds: float, seed: int) -> dict[str, Any]:
    """Open loop: each domain's events sent at `rate_per_domain`/s, each on its own thread (a request blocks until
    its commit); the send-to-answer time of each."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    count = int(rate_per_domain * seconds)
    before = lake_metrics(url)

    def send(headers: dict[str, str], body: bytes) -> None:
        nonlocal errors
        started = time.perf_counter()
        status, _ = Client(url).post("/", headers, body)
        with lock:
            latencies.append(time.perf_counter() - started)
            errors += status >= 300

    def domain_sender(name: str, offset: int) -> None:
        d = get_domain(name)
        events = producers.records(name, count, seed=seed + offset)
        threads = []
        start = time.perf_counter() + offset / (rate_per_domain * len(DOMAIN_NAMES))
        for i, event in enumerate(events):
            delay = start + i / rate_per_domain - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            headers, body = ce_request(d.type("record"), event, source=d.source("producers"))
            t = threading.Thread(target=send, args=(headers, body), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(60)

    senders = [threading.Thread(target=domain_sender, args=(n, i)) for i, n in enumerate(DOMAIN_NAMES)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    after = lake_metrics(url)
    flat = sorted(latencies)
    lag_count = after.get("coelho_lake_lag_seconds_count", 0) - before.get("coelho_lake_lag_seconds_count", 0)
    lag_sum = after.get("coelho_lake_lag_seconds_sum", 0) - before.get("coelho_lake_lag_seconds_sum", 0)
    commits = after.get("coelho_lake_commit_seconds_count", 0) - before.get("coelho_lake_commit_seconds_count", 0)
    return {
        "rate_per_domain": rate_per_domain,
        "events": len(flat),
        "errors": errors,
        "send_to_commit_p50_ms": round(percentile(flat, 50) * 1000, 1),
        "send_to_commit_p99_ms": round(percentile(flat, 99) * 1000, 1),
        "send_to_commit_max_ms": round(flat[-1] * 1000, 1) if flat else None,
        "lake_lag_mean_ms": round(lag_sum / lag_count * 1000, 1) if lag_count else None,
        "commits_per_s": round(commits / seconds, 2),
        "mean_ms": round(statistics.fmean(flat) * 1000, 1) if flat else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="16,64,256", help="client concurrency levels of the ingest runs")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per ingest level")
    parser.add_argument("--lag-seconds", type=float, default=20.0, help="seconds of the lag run")
    parser.add_argument(
        "--rate", type=float, default=None, help="events/s per domain of the lag run (default: coelho up's)"
    )
    parser.add_argument("--batch-ms", default="1000", help="COELHO_LAKE_BATCH_MS (comma-separated: one process each)")
    args = parser.parse_args()
    from coelho.settings import Settings

    levels = [int(x) for x in args.levels.split(",")]
    rate = args.rate or Settings().producer_rate
    out: dict[str, Any] = {"bench": "lake", "load_average_start": load_average(), "runs": []}
    with private_platform(["s3"]) as platform:
        for n, batch_ms in enumerate(args.batch_ms.split(",")):
            env = {"COELHO_LAKE_BATCH_MS": batch_ms, "COELHO_LAKE_THREADS": str(max(levels) + 32)}
            with function_process(platform.settings, "lake", server="waitress", extra_env=env) as url:
                run: dict[str, Any] = {"batch_ms": float(batch_ms), "ingest": []}
                for k, level in enumerate(levels):
                    run["ingest"].append(ingest(url, level, args.seconds, seed=1000 * n + 10 * k))
                run["lag"] = lag(url, rate, args.lag_seconds, seed=1000 * n + 500)
                out["runs"].append(run)
    out["load_average_end"] = load_average()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
