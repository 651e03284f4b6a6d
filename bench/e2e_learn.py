"""End-to-end learning throughput: producer -> Tansu -> router -> learn-one -> event log, per domain.

Starts an isolated platform (the real embedded services on free ports in a temporary data dir, as the tests
do), then for each domain:
1. peak: N records written with the producers' own Kafka sink (producers.producer.KafkaSink, the production
   producer config) as fast as it goes; `end_to_end_per_s` is N / (last entry committed to the domain's event
   log - first send), `learned_per_s` the same up to when every model in learn-one had applied the last entry
   (its /metrics log position, polled every 50 ms); `cpu_us_per_event` is each service's CPU time over the
   phase divided by N (its whole process group; "bench producer" is this process). The committed log is then checked: every record exactly once, and each partition key's
   records in the order they were produced.
2. latency: records paced at a fixed rate for a few seconds; produce-to-learned latency is the log entry's
   commit time (Redis TIME, ms) minus the send time (same clock, same machine).
Optionally (--concurrent) all domains at once, the way `coelho up` runs them.

    .venv/bin/python bench/e2e_learn.py [--domains tfd,eta,ecci] [--events 2000] [--rate 200] [--concurrent]

Prints progress lines, then ONE JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from function_harness import produce_records, wait_learned  # noqa: E402  (bench/ is on sys.path when run)

from functions.model_state.keys import key  # noqa: E402


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stream(domain_name: str, n: int, seed: int, prefix: str) -> list[Any]:
    """N records of the domain's generator, ids made unique per phase (the learner drops repeated ids)."""
    from dataclasses import replace

    from eventing.domains import get_domain
    from producers.generators import make_generator

    domain = get_domain(domain_name)
    out = []
    for i, event in enumerate(make_generator(domain_name, seed=seed).take(n)):
        if event.kind != "record":
            continue
        data = dict(event.data, **{domain.id_field: f"{prefix}-{i}"})
        out.append(replace(event, data=data, id=f"{prefix}-{i}"))
    return out


def head(client: Any, domain_name: str) -> int:
    return int(client.get(key(domain_name, "seq")) or 0)


def wait_head(client: Any, domain_name: str, target: int, timeout: float) -> float | None:
    """Wall time when the domain's log head reached `target` (None on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head(client, domain_name) >= target:
            return time.time()
        time.sleep(0.005)
    return None


def committed(client: Any, domain_name: str, after: int) -> list[tuple[int, dict[str, Any], float]]:
    """(seq, clean event, commit time in s) of every log entry after `after`."""
    out = []
    for entry_id, fields in client.xrange(key(domain_name, "log"), min=f"{after + 1}-0"):
        seq = int(entry_id.decode().split("-")[0])
        out.append((seq, json.loads(fields[b"d"]), int(fields[b"t"]) / 1000))
    return out


def check(domain_name: str, events: list[Any], entries: list[tuple[int, dict[str, Any], float]]) -> dict[str, Any]:
    """Exactly once (no loss, no duplicate) and per-key order (the keys' records in produce order)."""
    from eventing.domains import get_domain

    domain = get_domain(domain_name)
    wanted = [str(e.data[domain.id_field]) for e in events]
    got = [str(d[domain.id_field]) for _s, d, _t in entries]
    position = {ident: i for i, ident in enumerate(wanted)}
    last_by_key: dict[str, int] = {}
    out_of_order = 0
    for _s, data, _t in entries:
        i = position.get(str(data[domain.id_field]), -1)
        k = str(data.get(domain.key_field))
        if i < last_by_key.get(k, -1):
            out_of_order += 1
        last_by_key[k] = max(i, last_by_key.get(k, -1))
    return {
        "lost": len(set(wanted) - set(got)),
        "duplicates": len(got) - len(set(got)),
        "out_of_order_per_key": out_of_order,
        "keys": len(last_by_key),
    }


def service_cpu(platform: Any) -> dict[str, float]:
    """CPU seconds used so far by each running service (its whole process group: Granian's worker too)."""
    out: dict[str, float] = {}
    for name in platform.entries():
        total = 0.0
        for proc in platform.processes(name):
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except Exception:  # gone meanwhile
                continue
        out[name] = total
    return out


def cpu_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """Microseconds of CPU per event, by service, over one phase (start-up excluded)."""
    rows = {name: (after.get(name, 0.0) - before.get(name, 0.0)) * 1e6 / max(events, 1) for name in after}
    rows["total"] = sum(rows.values())
    return {k: round(v) for k, v in sorted(rows.items(), key=lambda kv: -kv[1])}


def peak(settings: Any, client: Any, names: list[str], n: int, timeout: float) -> dict[str, Any]:
    """All `names` produced at once (one producer thread each); per domain: rate, latency, correctness."""
    streams = {name: stream(name, n, seed=101, prefix=f"peak{time.monotonic_ns()}") for name in names}
    heads = {name: head(client, name) for name in names}
    sent: dict[str, dict[str, float]] = {}
    threads = [
        threading.Thread(target=lambda nm=name: sent.__setitem__(nm, produce_records(settings, nm, streams[nm])))
        for name in names
    ]
    started = time.time()
    for t in threads:
        t.start()
    done = {name: wait_head(client, name, heads[name] + len(streams[name]), timeout) for name in names}
    learned_at = {
        name: wait_learned(settings.url("learn"), name, heads[name] + len(streams[name]), timeout) for name in names
    }
    for t in threads:
        t.join()
    out = {}
    for name in names:
        time.sleep(0.3)  # a duplicate would append after the head reached the target
        entries = committed(client, name, heads[name])
        first_send = min(sent[name].values())
        last_send = max(sent[name].values())
        finished = done[name]
        latencies = [
            (t - sent[name][str(d[_id(name)])]) * 1000 for _s, d, t in entries if str(d[_id(name)]) in sent[name]
        ]
        out[name] = {
            "events": len(streams[name]),
            "learned": len(entries),
            "produce_per_s": round(len(streams[name]) / max(last_send - first_send, 1e-3), 1),
            "end_to_end_per_s": round(len(streams[name]) / (finished - min(first_send, started)), 1)
            if finished
            else None,
            # committed = in the log (durable, exactly once from there); learned = applied by every model in learn-one
            "learned_per_s": (
                round(len(streams[name]) / (learned_at[name] - min(first_send, started)), 1)
                if learned_at[name]
                else None
            ),
            "seconds": round(finished - first_send, 2) if finished else None,
            "latency_ms": {
                "p50": _r(percentile(latencies, 50)),
                "p99": _r(percentile(latencies, 99)),
                "max": _r(max(latencies) if latencies else None),
            },
            **check(name, streams[name], entries),
        }
    return out


def paced(settings: Any, client: Any, name: str, rate: float, seconds: float, timeout: float) -> dict[str, Any]:
    events = stream(name, int(rate * seconds), seed=202, prefix=f"paced{time.monotonic_ns()}")
    start_head = head(client, name)
    sent = produce_records(settings, name, events, rate=rate)
    wait_head(client, name, start_head + len(events), timeout)
    entries = committed(client, name, start_head)
    latencies = [(t - sent[str(d[_id(name)])]) * 1000 for _s, d, t in entries if str(d[_id(name)]) in sent]
    return {
        "rate_per_s": rate,
        "events": len(events),
        "learned": len(entries),
        "p50_ms": _r(percentile(latencies, 50)),
        "p99_ms": _r(percentile(latencies, 99)),
        **check(name, events, entries),
    }


def _id(name: str) -> str:
    from eventing.domains import get_domain

    return get_domain(name).id_field


def _r(x: float | None) -> float | None:
    return round(x, 1) if x is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", default="tfd,eta,ecci")
    parser.add_argument("--events", type=int, default=2000, help="records per domain for the peak run")
    parser.add_argument("--rate", type=float, default=100.0, help="ev/s of the latency run (0: skip it)")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--concurrent", action="store_true", help="also run every domain's peak at once")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one phase")
    args = parser.parse_args()

    import redis

    from coelho.runtime import Platform
    from coelho.settings import Settings

    names = args.domains.split(",")
    # Keep the whole log: the check reads every record of the run back from it (the learner trims the log 10,000
    # entries below its oldest snapshot, which made long runs look lossy).
    os.environ.setdefault("COELHO_LOG_KEEP", str(10 * (args.events + 1000)))
    result: dict[str, Any] = {
        "bench": "e2e_learn",
        "events_per_domain": args.events,
        "load_average_start": load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="coelho-e2e-") as tmp:
        settings = Settings.load().with_free_ports(Path(tmp))
        platform = Platform(settings, echo=lambda _line: None)
        try:
            t0 = time.monotonic()
            platform.start(["router", "learn"], producers=False)
            result["startup_s"] = round(time.monotonic() - t0, 1)
            result["kafka_storage"] = settings.kafka_storage
            client = redis.Redis.from_url(settings.redis_url)
            # one warm-up record per domain: consumer groups assigned, connections open, models loaded
            warm = peak(settings, client, names, 5, args.timeout)
            print("warm-up", json.dumps(warm), flush=True)
            domains: dict[str, Any] = {}
            for name in names:
                cpu_before = dict(service_cpu(platform), **{"bench producer": time.process_time()})
                row = {"peak": peak(settings, client, [name], args.events, args.timeout)[name]}
                cpu_after = dict(service_cpu(platform), **{"bench producer": time.process_time()})
                row["peak"]["cpu_us_per_event"] = cpu_per_event(cpu_before, cpu_after, args.events)
                if args.rate > 0:
                    row["paced"] = paced(settings, client, name, args.rate, args.latency_seconds, args.timeout)
                domains[name] = row
                print(name, json.dumps(row), flush=True)
            result["domains"] = domains
            if args.concurrent:
                result["concurrent"] = peak(settings, client, names, args.events, args.timeout)
                print("concurrent", json.dumps(result["concurrent"]), flush=True)
        finally:
            result["stop_problems"] = platform.stop()
    result["load_average_end"] = load_average()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
