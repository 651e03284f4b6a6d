"""learn-one end to end: events/s from producer to committed model state, beside River in one process.

For each domain, in one run on a private platform (real Kafka, router, Redis, learn-one on free ports):
1. in-process: River learning the same events in this process, test-then-train with the domain's metrics
   (`OnlineModel.apply`), and the bare `learn_one` of the model alone;
2. peak end to end: N records written to the domain's Kafka topic as fast as the producer can (producers/' own
   Kafka sink and config) -> router (KafkaSource -> Broker -> Trigger, ordered per key) ->
   learn-one -> appended to the event log and applied; the rate is N / (last commit - first send);
3. HTTP only: closed-loop clients POSTing the records straight to learn-one (no Kafka, no router);
4. latency at half the peak rate: records paced at peak/2 for a few seconds; produce-to-committed latency is the
   log entry's commit time (Redis TIME) minus the send time, produce-to-learned the first time learn-one's log
   position (its /metrics, sampled every 20 ms) covered the entry, minus the send time (p50/p95/p99).
`cpu_us_per_event` (end to end) is each service's CPU over the peak phase per event, from /proc/<pid>/stat of
each of its processes; "bench producer" is this process.

    .venv/bin/python bench/learn.py [--domains tfd,eta,ecci] [--events 3000]
    .venv/bin/python bench/learn.py --http-only [--compare-with DIR] [--server waitress]
    .venv/bin/python bench/learn.py --domains tfd --model adaptive_random_forest   # the forest ratio

--model NAME learns with that model of the domain (learn-one gets COELHO_MODEL_<DOMAIN>=NAME, the in-process
figure uses the same model); `end_to_end_vs_in_process` is the end-to-end rate over the in-process
test-then-train rate of the same events (target >= 0.8 for forests).

--http-only runs steps 1, 3 and 4 only; with --compare-with DIR, once for this checkout and once for another (e.g.
a `git worktree` of an earlier commit) in the same run. Redis is emptied before each so both learn the same events
from scratch. learn_cpu_us_per_event is the
function process's CPU time per event (load-independent); compare rates only within one run.

On a terminal each phase shows a progress line on stderr (events committed or sent so far, the rate), as the
`coelho` commands do; stdout keeps its lines and the JSON object on the last one.
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
    LearnedClock,
    ce_request,
    cpu_per_event,
    load_average,
    percentile,
    private_platform,
    produce_records,
    service_cpu,
    wait_learned,
)
from phase import phase

from eventing.domains import DOMAINS
from functions.model_state.keys import key


def in_process(domain_name: str, events: list[dict[str, Any]], model_name: str | None = None) -> dict[str, float]:
    from eventing.domains import get_domain
    from functions.model_state.online_model import OnlineModel

    domain = get_domain(domain_name)
    state = OnlineModel.fresh(domain, model_name)
    started = time.perf_counter()
    for i, event in enumerate(events, start=1):
        state.learn_one(i, "record", event, 0)
    with_metrics = len(events) / (time.perf_counter() - started)
    model = domain.make_model(model_name or domain.default_model)
    xs = [(domain.features(e), e.get(domain.target) if domain.target else None) for e in events]
    started = time.perf_counter()
    for x, y in xs:
        if domain.target:
            model.learn_one(x, y)
        else:
            model.learn_one(x)
    bare = len(events) / (time.perf_counter() - started)
    return {"test_then_train_per_s": round(with_metrics, 1), "learn_one_per_s": round(bare, 1)}


def generated(domain_name: str, n: int, seed: int) -> list[Any]:
    from producers.generators import make_generator

    return list(make_generator(domain_name, seed=seed).take(n))


def wait_committed(client: Any, domain_name: str, target: int, timeout: float) -> float | None:
    """Wall time when the domain's log head reached `target` (None on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(client.get(key(domain_name, "seq")) or 0) >= target:
            return time.time()
        time.sleep(0.01)
    return None


def commit_times(client: Any, domain_name: str, after: int, id_field: str) -> dict[str, float]:
    out = {}
    for _entry_id, fields in client.xrange(key(domain_name, "log"), min=f"{after + 1}-0"):
        out[str(json.loads(fields[b"d"])[id_field])] = int(fields[b"t"]) / 1000
    return out


def commit_seqs(client: Any, domain_name: str, after: int, id_field: str) -> dict[str, int]:
    """Log sequence number of each record id committed after `after`."""
    return {
        str(json.loads(fields[b"d"])[id_field]): int(entry_id.decode().split("-")[0])
        for entry_id, fields in client.xrange(key(domain_name, "log"), min=f"{after + 1}-0")
    }


def http_only(url: str, domain_name: str, records: list[dict[str, Any]], concurrency: int = 4) -> float:
    from eventing.domains import get_domain

    domain = get_domain(domain_name)
    bodies = [ce_request(domain.type("record"), r) for r in records]
    lock = threading.Lock()
    position = [0]

    def worker() -> None:
        client = Client(url)
        while True:
            with lock:
                i = position[0]
                position[0] += 1
            if i >= len(bodies):
                return
            status, body = client.post("/", *bodies[i])
            assert status == 200, body

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    label = f"HTTP {domain_name} x{concurrency}"
    with phase(label, total=len(bodies), unit="events", count=lambda: min(position[0], len(bodies))):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return len(bodies) / (time.perf_counter() - started)


CLIENTS = [4]  # concurrent HTTP clients of --http-only (--clients)


def http_only_domain(
    url: str, name: str, events: int, latency_seconds: float, model: str | None = None
) -> dict[str, Any]:
    """One domain against one learn-one process: HTTP peak, CPU per event, latency at half the peak."""
    from function_harness import cpu_seconds

    from eventing.domains import get_domain

    domain = get_domain(name)
    clean = [domain.validate(e.data) for e in generated(name, events, seed=101) if e.kind == "record"]
    row: dict[str, Any] = {"model": model or domain.default_model, "in_process": in_process(name, clean, model)}
    cpu = cpu_seconds(url)
    row["http_per_s"] = round(http_only(url, name, clean, CLIENTS[0]), 1)
    row["http_clients"] = CLIENTS[0]
    used = cpu_seconds(url) - cpu
    row["learn_cpu_us_per_event"] = round(used / len(clean) * 1e6)
    row["capacity_per_core_per_s"] = round(len(clean) / used) if used else None
    rate = row["http_per_s"] / 2
    paced = [dict(r, **{domain.id_field: f"paced-{i}"}) for i, r in enumerate(clean[: int(rate * latency_seconds)])]
    client = Client(url)
    latencies: list[float] = []
    started = time.perf_counter()
    with phase(f"paced {name} {rate:,.0f}/s", total=len(paced), unit="events") as bar:
        for i, record in enumerate(paced):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            status, body = client.post("/", *ce_request(domain.type("record"), record))
            assert status == 200, body
            latencies.append((time.perf_counter() - t0) * 1000)
            bar.update(i + 1)
    latencies.sort()
    row["latency_at_half_peak"] = {
        "rate_per_s": round(rate, 1),
        "events": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }
    row["http_vs_in_process"] = round(row["http_per_s"] / row["in_process"]["test_then_train_per_s"], 2)
    return row


def http_only_run(args: Any) -> None:
    """HTTP -> learn-one -> committed, beside in-process River, and latency at half that peak, per variant."""
    import redis
    from function_harness import function_process

    variants: dict[str, dict[str, Any]] = {}
    with private_platform(["redis"]) as platform:
        client = redis.Redis.from_url(platform.settings.redis_url)
        trees = {"current": None, **({"compared": args.compare_with} if args.compare_with else {})}
        for variant, tree in trees.items():
            client.flushall()  # the same events, learned from scratch, for every version of the code
            env = {"COELHO_RESTORE": "0"}
            with function_process(platform.settings, "learn", server=args.server, extra_env=env, tree=tree) as url:
                results: dict[str, Any] = {}
                for name in args.domains.split(","):
                    results[name] = http_only_domain(url, name, args.events, args.latency_seconds, args.model)
                    print(variant, name, json.dumps(results[name]), flush=True)
            variants[variant] = results
    out: dict[str, Any] = {
        "bench": "learn",
        "path": "HTTP -> learn-one -> committed (no Kafka/router)",
        "server": args.server,
        "load_average": load_average(),
        "variants": variants,
    }
    if "compared" in variants:
        out["current_vs_compared"] = {
            name: {
                "http_per_s": round(
                    variants["current"][name]["http_per_s"] / variants["compared"][name]["http_per_s"], 2
                ),
                "cpu_per_event": round(
                    variants["current"][name]["learn_cpu_us_per_event"]
                    / variants["compared"][name]["learn_cpu_us_per_event"],
                    2,
                ),
            }
            for name in variants["current"]
        }
    out["targets"] = {"linear_and_dbstream_per_s": 2000, "forests_vs_in_process": 0.8}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--events", type=int, default=3000, help="records per domain for the peak run")
    parser.add_argument("--latency-seconds", type=float, default=6.0)
    parser.add_argument(
        "--http-only",
        action="store_true",
        help="skip Kafka and the router: HTTP -> learn-one -> committed only (quick)",
    )
    parser.add_argument(
        "--compare-with",
        default=None,
        metavar="DIR",
        help="with --http-only: also run learn-one from another checkout of the project, same session",
    )
    parser.add_argument("--server", default="granian", help="with --http-only: the function server (COELHO_SERVER)")
    parser.add_argument("--clients", type=int, default=4, help="with --http-only: concurrent HTTP clients")
    parser.add_argument("--model", default=None, help="the model to learn (one domain; default: the domain's default)")
    args = parser.parse_args()
    if args.model:
        import os

        if "," in args.domains:
            parser.error("--model takes one domain (--domains NAME)")
        os.environ[f"COELHO_MODEL_{args.domains.upper()}"] = args.model  # learn-one inherits it
    if args.http_only:
        CLIENTS[0] = args.clients
        http_only_run(args)
        return

    import redis

    from eventing.domains import get_domain

    results: dict[str, Any] = {}
    with private_platform(["router", "learn"]) as platform:
        settings = platform.settings
        client = redis.Redis.from_url(settings.redis_url)
        for name in args.domains.split(","):
            domain = get_domain(name)
            stream = generated(name, args.events, seed=101)
            clean = [domain.validate(e.data) for e in stream if e.kind == "record"]
            row: dict[str, Any] = {"in_process": in_process(name, clean, args.model)}
            # peak, end to end through Kafka and the router
            head = int(client.get(key(name, "seq")) or 0)
            sender = threading.Thread(
                target=lambda r=row, n=name, s=stream: r.update(sent=produce_records(settings, n, s))
            )
            cpu_before = dict(service_cpu(platform), **{"bench producer": time.process_time()})
            started = time.time()

            def committed(n: str = name, h: int = head) -> int:
                return int(client.get(key(n, "seq")) or 0) - h

            with phase(f"peak {name}", total=len(stream), unit="committed", count=committed):
                sender.start()
                done = wait_committed(client, name, head + len(stream), timeout=600)
                learned_at = wait_learned(settings.url("learn"), name, head + len(stream), timeout=600)
                sender.join()
            cpu_after = dict(service_cpu(platform), **{"bench producer": time.process_time()})
            # CPU per event per service (/proc/<pid>/stat of each process) over the peak phase
            row["cpu_us_per_event"] = cpu_per_event(cpu_before, cpu_after, len(stream))
            sent: dict[str, float] = row.pop("sent")
            row["end_to_end_per_s"] = round(len(stream) / (done - started), 1) if done else None  # committed
            row["learned_per_s"] = round(len(stream) / (learned_at - started), 1) if learned_at else None
            row["end_to_end_events"] = len(stream)
            if not done:
                row["end_to_end_committed"] = int(client.get(key(name, "seq")) or 0) - head
            # HTTP straight to learn-one (no Kafka, no router)
            extra = [dict(r, **{domain.id_field: f"http-{i}"}) for i, r in enumerate(clean[:1500])]
            row["http_only_per_s"] = round(http_only(settings.url("learn"), name, extra), 1)
            # latency at half the peak rate
            peak = row["end_to_end_per_s"] or 100.0
            rate = max(peak / 2, 5.0)
            paced = generated(name, int(rate * args.latency_seconds), seed=202)
            head = int(client.get(key(name, "seq")) or 0)
            clock = LearnedClock(settings.url("learn"), name)
            clock.start()

            def committed_paced(n: str = name, h: int = head) -> int:
                return int(client.get(key(n, "seq")) or 0) - h

            with phase(f"paced {name} {rate:,.0f}/s", total=len(paced), unit="committed", count=committed_paced):
                sent = produce_records(settings, name, paced, rate=rate)
                wait_committed(client, name, head + len(paced), timeout=120)
                clock.wait_for(head + len(paced), timeout=120)  # the clock polls learn-one already
            clock.stop()
            commits = commit_times(client, name, head, domain.id_field)
            seqs = commit_seqs(client, name, head, domain.id_field)
            latencies = sorted((commits[i] - t) * 1000 for i, t in sent.items() if i in commits)
            learned = sorted(
                (at - t) * 1000 for i, t in sent.items() if i in seqs and (at := clock.learned_at(seqs[i])) is not None
            )
            row["latency_at_half_peak"] = {
                "rate_per_s": round(rate, 1),
                "events": len(latencies),
                # produce -> committed to the log (Redis time of the entry)
                "p50_ms": round(percentile(latencies, 50), 1),
                "p95_ms": round(percentile(latencies, 95), 1),
                "p99_ms": round(percentile(latencies, 99), 1),
                "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
                # produce -> applied by every model in learn-one (its log position, sampled every 20 ms)
                "learned_p50_ms": round(percentile(learned, 50), 1),
                "learned_p95_ms": round(percentile(learned, 95), 1),
                "learned_p99_ms": round(percentile(learned, 99), 1),
            }
            row["model"] = args.model or domain.default_model
            if row["learned_per_s"]:
                row["end_to_end_vs_in_process"] = round(
                    row["learned_per_s"] / row["in_process"]["test_then_train_per_s"], 2
                )
            results[name] = row
            print(name, json.dumps(row), flush=True)
    print(
        json.dumps(
            {
                "bench": "learn",
                "load_average": load_average(),
                "domains": results,
                "targets": {"linear_and_dbstream_per_s": 2000, "forests_vs_in_process": 0.8},
            }
        )
    )


if __name__ == "__main__":
    main()
