"""End-to-end learning throughput: producer -> Tansu -> router -> learn-one -> event log, per domain.

Starts an isolated platform (the real embedded services on free ports in a temporary data dir, as the tests
do), then for each domain:
1. peak: N records written with the producers' own Kafka sink (producers.producer.KafkaSink, the production
   producer config) as fast as it goes; `end_to_end_per_s` is N / (last entry committed to the domain's event
   log - first send), `learned_per_s` the same up to when every model in learn-one had applied the last entry
   (its /metrics log position, polled every 50 ms); `cpu_us_per_event` is each service's CPU time over the
   phase divided by N (its whole process group; "bench producer" is this process). The committed log is then
   checked: every record exactly once, and each partition key's records in the order they were produced.
2. latency: records paced at a fixed rate for a few seconds (--rate; --half-peak adds a run at half the peak
   just measured): produce->committed is the log entry's commit time (Redis TIME, ms) minus the send time (same
   clock, same machine), produce->learned the first sample (every 20 ms) of learn-one's log position covering
   it; p50/p95/p99/max of both, and CPU per event per service over the phase (/proc/<pid>/stat of every process).
`end_to_end_vs_in_process` is the learned rate over River's in-process test-then-train rate of the same model
(with --model adaptive_random_forest: the forest ratio). Optionally (--concurrent) all domains at once, the way
`coelho up` runs them. --compare-with DIR first runs the same bench from another checkout (a `git worktree` of an
earlier commit) and adds `current_vs_compared` ratios: compare within one run, the machine is shared.

    .venv/bin/python bench/e2e_learn.py [--domains tfd,eta,ecci] [--events 2000] [--rate 100] [--half-peak]
        [--model NAME] [--concurrent] [--compare-with DIR]

Prints progress lines, then ONE JSON object on the last line; on a terminal each phase also shows a progress line on
stderr (records committed to the log so far, the rate), as the `coelho` commands do.
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

import function_harness  # noqa: E402  (bench/ is on sys.path when run)
from function_harness import (  # noqa: E402  (bench/ is on sys.path when run)
    LearnedClock,
    cpu_per_event,
    in_process_rate,
    percentiles,
    produce_records,
    service_cpu,
    wait_learned,
)
from phase import phase  # noqa: E402  (bench/ is on sys.path when run)

from eventing.domains import DOMAINS  # noqa: E402
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
    total = sum(len(s) for s in streams.values())
    with phase(
        f"peak {','.join(names)}",
        total=total,
        unit="committed",
        count=lambda: sum(min(head(client, n) - heads[n], len(streams[n])) for n in names),
    ):
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
                round(len(streams[name]) / (learned - min(first_send, started)), 1)
                if (learned := learned_at[name]) is not None
                else None
            ),
            "seconds": round(finished - first_send, 2) if finished else None,
            "latency_ms": percentiles(latencies),
            **check(name, streams[name], entries),
        }
    return out


BREAKDOWN = ("coelho_router_fetch_age_seconds", "coelho_router_delivery_latency_seconds")


def router_sums(settings: Any) -> dict[str, tuple[float, float]]:
    """(sum, count) of the router's latency histograms by series: the broker hop (records' age when the router
    reads them, per consumer group) and the delivery (per Trigger). Empty when the router does not serve them."""
    import urllib.request

    try:
        with urllib.request.urlopen(settings.url("router_metrics") + "/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for family in BREAKDOWN:
            for suffix, index in (("_sum", 0), ("_count", 1)):
                if line.startswith(family + suffix + "{"):
                    labels, value = line[len(family + suffix) :].rsplit(" ", 1)
                    out.setdefault(family.split("_")[2] + labels, [0.0, 0.0])[index] = float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def breakdown(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean milliseconds per series over one phase (series that saw no event left out)."""
    means = {}
    for series, (total, count) in after.items():
        old_total, old_count = before.get(series, (0.0, 0.0))
        if count > old_count:
            means[series] = round((total - old_total) / (count - old_count) * 1000, 1)
    return means


def paced(
    settings: Any, client: Any, name: str, rate: float, seconds: float, timeout: float, platform: Any = None
) -> dict[str, Any]:
    """Records at a steady `rate`: produce->committed (the log entry's Redis time) and produce->learned (every
    model of learn-one applied it: its log position, sampled every 20 ms) latency, and CPU per event per service."""
    events = stream(name, int(rate * seconds), seed=202, prefix=f"paced{time.monotonic_ns()}")
    start_head = head(client, name)
    clock = LearnedClock(settings.url("learn"), name)
    clock.start()
    cpu_before = dict(service_cpu(platform), **{"bench producer": time.process_time()}) if platform else {}
    sums_before = router_sums(settings)
    label = f"paced {name} {rate:,.0f}/s"
    with phase(label, total=len(events), unit="committed", count=lambda: head(client, name) - start_head):
        sent = produce_records(settings, name, events, rate=rate)
        wait_head(client, name, start_head + len(events), timeout)
        clock.wait_for(start_head + len(events), timeout)
    cpu_after = dict(service_cpu(platform), **{"bench producer": time.process_time()}) if platform else {}
    sums_after = router_sums(settings)
    clock.stop()
    entries = committed(client, name, start_head)
    latencies = [(t - sent[str(d[_id(name)])]) * 1000 for _s, d, t in entries if str(d[_id(name)]) in sent]
    learned = [
        (at - sent[str(d[_id(name)])]) * 1000
        for seq, d, _t in entries
        if str(d[_id(name)]) in sent and (at := clock.learned_at(seq)) is not None
    ]
    committed_ms = percentiles(latencies)
    out: dict[str, Any] = {
        "rate_per_s": rate,
        "events": len(events),
        "learned": len(entries),
        "p50_ms": committed_ms["p50"],
        "p95_ms": committed_ms["p95"],
        "p99_ms": committed_ms["p99"],
        "committed_ms": committed_ms,
        "learned_ms": percentiles(learned),
        # where the time goes, means in ms: each broker hop (fetch: a record's age when the router reads it, per
        # consumer group) and each delivery (queue excluded: from a lane taking the event to the answer)
        "router_mean_ms": breakdown(sums_before, sums_after),
        **check(name, events, entries),
    }
    if platform is not None:
        out["cpu_us_per_event"] = cpu_per_event(cpu_before, cpu_after, len(events))
    return out


def _id(name: str) -> str:
    from eventing.domains import get_domain

    return get_domain(name).id_field


def _r(x: float | None) -> float | None:
    return round(x, 1) if x is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--events", type=int, default=2000, help="records per domain for the peak run")
    parser.add_argument("--rate", type=float, default=100.0, help="ev/s of the latency run (0: skip it)")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--concurrent", action="store_true", help="also run every domain's peak at once")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one phase")
    parser.add_argument("--half-peak", action="store_true", help="also a paced run at half the measured peak rate")
    parser.add_argument("--model", default=None, help="the model learn-one learns (one domain), e.g. a forest")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of each domain topic (created here)")
    parser.add_argument(
        "--compare-with",
        default=None,
        metavar="DIR",
        help="first run this bench from another checkout (e.g. a git worktree of an earlier commit), same args",
    )
    args = parser.parse_args()
    function_harness.TOPIC_PARTITIONS = args.partitions
    if args.model:
        if "," in args.domains:
            parser.error("--model takes one domain (--domains NAME)")
        os.environ[f"COELHO_MODEL_{args.domains.upper()}"] = args.model  # learn-one inherits it
    compared = run_compared(args.compare_with) if args.compare_with else None

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
    # River's in-process test-then-train rate of the same events and model, before any service runs (measured
    # later it would share the CPU with learn-one still applying the peak's backlog)
    in_process = {
        name: round(
            in_process_rate(name, [e.data for e in stream(name, args.events, seed=101, prefix="in")], args.model), 1
        )
        for name in names
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
                row["in_process_test_then_train_per_s"] = in_process[name]
                if row["peak"]["learned_per_s"]:
                    # the forest ratio with --model adaptive_random_forest (target >= 0.8)
                    row["end_to_end_vs_in_process"] = round(
                        row["peak"]["learned_per_s"] / row["in_process_test_then_train_per_s"], 2
                    )
                if args.rate > 0:
                    row["paced"] = paced(
                        settings, client, name, args.rate, args.latency_seconds, args.timeout, platform
                    )
                if args.half_peak and row["peak"]["end_to_end_per_s"]:
                    half = round(row["peak"]["end_to_end_per_s"] / 2, 1)
                    row["paced_half_peak"] = paced(
                        settings, client, name, half, args.latency_seconds, args.timeout, platform
                    )
                domains[name] = row
                print(name, json.dumps(row), flush=True)
            result["domains"] = domains
            if args.concurrent:
                result["concurrent"] = peak(settings, client, names, args.events, args.timeout)
                print("concurrent", json.dumps(result["concurrent"]), flush=True)
        finally:
            result["stop_problems"] = platform.stop()
    result["load_average_end"] = load_average()
    result["model"] = args.model
    result["partitions"] = args.partitions
    if compared is not None:
        result["compared"] = compared
        result["current_vs_compared"] = ratios(result, compared)
    print(json.dumps(result))


def run_compared(tree: str) -> dict[str, Any]:
    """This bench, same arguments, run from another checkout: its JSON (last line)."""
    import subprocess

    argv = [a for a in sys.argv[1:]]
    i = argv.index("--compare-with")
    del argv[i : i + 2]
    bench = Path(tree) / "bench" / "e2e_learn.py"
    proc = subprocess.run([sys.executable, str(bench), *argv], cwd=tree, capture_output=True, text=True, check=False)
    print("compared", proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:], flush=True)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def ratios(current: dict[str, Any], compared: dict[str, Any]) -> dict[str, Any]:
    """current / compared for each domain's rates, latencies and CPU per event (same run, same machine)."""

    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None

    out: dict[str, Any] = {}
    for name, row in current.get("domains", {}).items():
        old = compared.get("domains", {}).get(name, {})
        out[name] = {
            "peak_learned_per_s": ratio(row["peak"].get("learned_per_s"), old.get("peak", {}).get("learned_per_s")),
            "peak_cpu_us_per_event": ratio(
                row["peak"]["cpu_us_per_event"].get("total"),
                old.get("peak", {}).get("cpu_us_per_event", {}).get("total"),
            ),
            "paced_p50_ms": ratio(row.get("paced", {}).get("p50_ms"), old.get("paced", {}).get("p50_ms")),
            "paced_p99_ms": ratio(row.get("paced", {}).get("p99_ms"), old.get("paced", {}).get("p99_ms")),
        }
    return out


if __name__ == "__main__":
    main()
