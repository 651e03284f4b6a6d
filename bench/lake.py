"""The lake function: events/s it ingests, and how long an event waits for its commit at the producers' rates.

On a private S3 server (SeaweedFS on free ports), one `python -m functions.lake` process:
1. ingest: closed-loop clients POST distinct records of the three domains (binary-mode CloudEvents, as the Broker
   delivers them) for a few seconds per concurrency level; each request is answered once its batch is committed.
   rows_per_s counts the rows the lake committed (its /metrics), cpu_us_per_row the function process's CPU time per
   row (load-independent);
2. lag: open-loop senders at the producers' default rate (3 events/s per domain, `coelho up`'s) for a while; the
   time from sending an event to its answer is the time to its commit (p50/p99), beside the lake's own
   arrival-to-commit histogram.

`--mode trigger` measures the lake as the platform feeds it instead: on a private platform (Tansu, the router,
learn-one and the lake on free ports; learn-one because the same records' Triggers deliver to it too), N records
per domain written with the producers' own Kafka sink, the three domains at once and flat out, go through the
Broker and the lake's Triggers (`<domain>-lake-records`); `lake_per_s` is N / (the time the lake's table holds all
of the domain's records - its first send), `producers_per_s` the rate the sink wrote them at, on the same machine
at the same time. The table is read back (every record once), and the time is broken down: the router's broker
hop and delivery per Trigger, the lake's batches (rows per commit, commit time, arrival-to-commit) and the CPU
each service spent per record.

    .venv/bin/python bench/lake.py [--levels 16,64,256] [--seconds 8] [--lag-seconds 20] [--batch-ms 1000]
    .venv/bin/python bench/lake.py --mode trigger [--events 20000]

On a terminal each phase shows a progress line (rows committed so far, the rate) on stderr.

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
    cpu_per_event,
    cpu_seconds,
    function_process,
    load,
    load_average,
    percentile,
    private_platform,
    produce_records,
    service_cpu,
)
from phase import phase

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


def rows_written(url: str) -> float:
    return lake_metrics(url).get("coelho_lake_rows_written_total", 0.0)


def ingest(url: str, concurrency: int, seconds: float, seed: int) -> dict[str, Any]:
    # more distinct events than the level can send, so no request is a duplicate
    reqs = requests_for(max(2000, int(concurrency * seconds * 3)), seed)
    before, cpu_before = lake_metrics(url), cpu_seconds(url)
    rows_before = before.get("coelho_lake_rows_written_total", 0)
    with phase(f"ingest x{concurrency}", unit="rows", count=lambda: int(rows_written(url) - rows_before)):
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
    label = f"lag {rate_per_domain:g}/s per domain"
    with phase(label, total=count * len(DOMAIN_NAMES), unit="committed", count=lambda: len(latencies)):
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


# The producers' full speed on this machine, per domain (bench/producers.py, the README's producers row): the rate
# the lake should keep up with.
PRODUCERS_PER_S = 8_000


def record_rows(url: str) -> dict[str, float]:
    """Rows the lake has committed to each domain's records table since it started (its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("coelho_lake_rows_written_total{") and 'kind="record"' in line:
            domain = line.split('domain="', 1)[1].split('"', 1)[0]
            out[domain] = out.get(domain, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def generated_records(name: str, n: int, seed: int, prefix: str) -> list[Any]:
    """`n` records of the domain's generator (its labels left out), ids unique to this run."""
    from dataclasses import replace

    from producers.generators import make_generator

    domain = get_domain(name)
    out = []
    for i, event in enumerate(make_generator(name, seed=seed).take(n)):
        if event.kind == "record":
            ident = f"{prefix}-{i}"
            out.append(replace(event, data=dict(event.data, **{domain.id_field: ident}), id=ident))
    return out


def table_ids(settings: Any, name: str, prefix: str) -> list[str]:
    """The ids of this run's records in the domain's Delta table, read back from the store."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    from coelho.services import python_service_env
    from functions.lake.rows import lake_table
    from functions.lake.service import uri_of
    from functions.lake.tables import storage_options

    env = python_service_env(settings, "lake")
    table = lake_table(name, "record")
    data = DeltaTable(uri_of(table, env), storage_options=storage_options(env)).to_pyarrow_table(
        columns=[table.id_column]
    )
    ids = data.column(0)
    return [str(x) for x in ids.filter(pc.starts_with(ids, prefix)).to_pylist()]


def produce_all(settings: Any, streams: dict[str, list[Any]], url: str, timeout: float, label: str) -> dict[str, Any]:
    """Every domain's stream written at once, flat out, with the producers' Kafka sink; waits until the lake has
    committed all of them: {sent: {domain: {id: send time}}, done: {domain: time its last row was committed}}."""
    before = record_rows(url)
    sent: dict[str, dict[str, float]] = {}
    failed: list[str] = []

    def produce(name: str) -> None:
        try:
            sent[name] = produce_records(settings, name, streams[name])
        except Exception as exc:  # reported, and the wait below ends at its timeout
            failed.append(f"{name}: {exc}")

    threads = [threading.Thread(target=produce, args=(name,)) for name in streams]
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    total = sum(len(v) for v in streams.values())
    with phase(label, total=total, unit="rows") as bar:
        for t in threads:
            t.start()
        while len(done) < len(streams) and time.monotonic() < deadline and not failed:
            now = record_rows(url)
            counts = {name: now.get(name, 0.0) - before.get(name, 0.0) for name in streams}
            for name, count in counts.items():
                if name not in done and count >= len(streams[name]):
                    done[name] = time.time()
            bar.update(int(sum(min(c, len(streams[n])) for n, c in counts.items())))
            time.sleep(0.05)
        for t in threads:
            t.join()
    if failed:
        raise RuntimeError("; ".join(failed))
    return {"sent": sent, "done": done}


def through_trigger(platform: Any, events: int, timeout: float, seed: int) -> dict[str, Any]:
    """N records per domain, the three at once and flat out, producer -> Kafka -> router -> `<domain>-lake-records`
    -> lake -> Delta commit: the rate the lake's tables take them at, against the rate the producers wrote them."""
    from e2e_learn import breakdown, router_sums

    settings = platform.settings
    url = settings.url("lake")
    warm_prefix = f"warm{time.monotonic_ns()}"
    warm = {n: generated_records(n, 5, seed + 7 + i, f"{warm_prefix}-{n}") for i, n in enumerate(DOMAIN_NAMES)}
    produce_all(settings, warm, url, timeout, "warm-up")  # tables created, consumer groups assigned
    prefix = f"trigger{time.monotonic_ns()}"
    streams = {n: generated_records(n, events, seed + i, f"{prefix}-{n}") for i, n in enumerate(DOMAIN_NAMES)}
    metrics_before = lake_metrics(url)
    cpu_before = dict(service_cpu(platform), **{"bench producer": time.process_time()})
    sums_before = router_sums(settings)
    run = produce_all(settings, streams, url, timeout, "lake through its Triggers")
    cpu_after = dict(service_cpu(platform), **{"bench producer": time.process_time()})
    sums_after = router_sums(settings)
    metrics_after = lake_metrics(url)
    time.sleep(2.0)  # a duplicate would be committed in a later batch
    total = sum(len(v) for v in streams.values())
    domains: dict[str, Any] = {}
    for name in DOMAIN_NAMES:
        sent = run["sent"][name]
        first, last = min(sent.values()), max(sent.values())
        finished = run["done"].get(name)
        ids = table_ids(settings, name, f"{prefix}-{name}-")
        lake_per_s = round(len(streams[name]) / (finished - first), 1) if finished else None
        domains[name] = {
            "records": len(streams[name]),
            "producers_per_s": round(len(sent) / max(last - first, 1e-3), 1),
            "lake_per_s": lake_per_s,
            "seconds_to_all_committed": round(finished - first, 2) if finished else None,
            "produce_seconds": round(last - first, 2),
            "lost": len(set(sent) - set(ids)),
            "duplicates": len(ids) - len(set(ids)),
            "meets_producers_speed": bool(lake_per_s and lake_per_s >= PRODUCERS_PER_S),
        }
    done_times = list(run["done"].values())
    first_send = min(min(s.values()) for s in run["sent"].values())

    def delta(name: str) -> float:
        return metrics_after.get(name, 0.0) - metrics_before.get(name, 0.0)

    commits = delta("coelho_lake_commit_seconds_count")
    lag_count = delta("coelho_lake_lag_seconds_count")
    return {
        "records_per_domain": events,
        "producers_reference_per_s": PRODUCERS_PER_S,
        "lake_per_s_all_domains": (
            round(total / (max(done_times) - first_send), 1) if len(done_times) == len(DOMAIN_NAMES) else None
        ),
        "domains": domains,
        # where the time goes: the broker hop (a record's age when the router reads it, per consumer group) and
        # each delivery (the lake answers once the batch holding the event is committed), means in ms
        "router_mean_ms": breakdown(sums_before, sums_after),
        "lake_commits": int(commits),
        "lake_rows_per_commit": round(delta("coelho_lake_rows_written_total") / commits, 1) if commits else None,
        "lake_commit_ms_mean": (
            round(delta("coelho_lake_commit_seconds_sum") / commits * 1000, 1) if commits else None
        ),
        "lake_arrival_to_commit_ms_mean": (
            round(delta("coelho_lake_lag_seconds_sum") / lag_count * 1000, 1) if lag_count else None
        ),
        "cpu_us_per_record": cpu_per_event(cpu_before, cpu_after, total),
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
    parser.add_argument(
        "--mode",
        choices=("direct", "trigger"),
        default="direct",
        help="direct: clients POST to the lake; trigger: producers -> Kafka -> router -> the lake's Triggers",
    )
    parser.add_argument("--events", type=int, default=3000, help="with --mode trigger: records per domain")
    parser.add_argument("--timeout", type=float, default=900.0, help="with --mode trigger: seconds to wait")
    args = parser.parse_args()
    if args.mode == "trigger":
        out_t: dict[str, Any] = {"bench": "lake", "mode": "trigger", "load_average_start": load_average()}
        # learn-one too: the same records' Triggers deliver to it, as on the running platform
        with private_platform(["router", "learn", "lake"]) as platform:
            out_t["trigger"] = through_trigger(platform, args.events, args.timeout, seed=4242)
        out_t["load_average_end"] = load_average()
        print(json.dumps(out_t))
        return
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
