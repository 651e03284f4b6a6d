"""How fast each producer goes when asked to go as fast as it can: generation + CloudEvent record + kafka-python
into the real embedded broker (Tansu), through the same `producers.produce` the CLI runs.

    .venv/bin/python bench/producers.py [--events 30000] [--bootstrap-servers HOST:PORT]

Without --bootstrap-servers (or KAFKA_BOOTSTRAP_SERVERS) it starts the platform's Kafka service on free ports in a
temporary directory and stops it at the end. Also measured, for the record format and producer settings ADRs:
generation alone, and tfd with acks=1 (no idempotence) against the default acks=all + idempotence.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is called producers.py too: make `import producers` find the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import producers  # noqa: E402
from eventing.domains import DOMAINS  # noqa: E402
from producers.kafka_record import to_kafka_message  # noqa: E402
from producers.producer import produce  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process, all threads (kafka-python's sender included): independent of other load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generation_rate(domain: str, events: int) -> float:
    started = time.perf_counter()
    for _ in producers.generate(domain, seed=1, count=events):
        pass
    return events / (time.perf_counter() - started)


def record_rate(domain: str, events: int) -> float:
    """Generation + CloudEvent Kafka message (no network)."""
    started = time.perf_counter()
    for event in producers.generate(domain, seed=1, count=events):
        to_kafka_message(domain, event)
    return events / (time.perf_counter() - started)


def produce_rate(domain: str, events: int, bootstrap: str, config: dict[str, Any] | None = None) -> tuple[float, float]:
    """(events/s, producer CPU µs per event) for `events` records sent as fast as possible and acknowledged."""
    started = cpu_seconds()
    stats = produce(
        domain, rate=0, count=events, seed=int(time.time()), bootstrap_servers=bootstrap, producer_config=config
    )
    cpu_us = (cpu_seconds() - started) / events * 1e6
    assert stats.acknowledged == stats.sent == events, (stats.acknowledged, stats.sent, stats.errors)
    return stats.events_per_second, cpu_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()

    platform = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        from coelho.runtime import Platform
        from coelho.settings import Settings

        settings = Settings.load().with_free_ports(Path(tempfile.mkdtemp(prefix="coelho-bench-producers-")))
        platform = Platform(settings)
        platform.start(["kafka"])
        bootstrap = settings.kafka_bootstrap
    results: dict[str, Any] = {
        "events": args.events,
        "bootstrap_servers": bootstrap,
        "loadavg_at_start": round(os.getloadavg()[0], 1),
    }
    try:
        generated, records, produced, cpu = {}, {}, {}, {}
        for domain in DOMAINS:
            generated[domain] = round(generation_rate(domain, args.events))
            records[domain] = round(record_rate(domain, args.events))
            rate, cpu_us = produce_rate(domain, args.events, bootstrap)
            produced[domain], cpu[domain] = round(rate), round(cpu_us, 1)
            print(
                f"{domain}: generate {generated[domain]:,} ev/s, + CloudEvent record {records[domain]:,} ev/s, "
                f"+ Kafka {produced[domain]:,} ev/s ({cpu_us:.0f} µs producer CPU per event)",
                flush=True,
            )
        acks1, acks1_cpu = produce_rate("tfd", args.events, bootstrap, {"acks": 1, "enable_idempotence": False})
        again, again_cpu = produce_rate("tfd", args.events, bootstrap)
        print(
            f"tfd acks=1: {acks1:,.0f} ev/s ({acks1_cpu:.0f} µs CPU/event); acks=all + idempotence again: "
            f"{again:,.0f} ev/s ({again_cpu:.0f} µs CPU/event)",
            flush=True,
        )
        results.update(
            {
                "produce_events_per_second": produced,
                "producer_cpu_us_per_event": cpu,
                "events_per_producer_cpu_second": {d: round(1e6 / c) for d, c in cpu.items()},
                "generate_events_per_second": generated,
                "generate_and_encode_events_per_second": records,
                "tfd_acks_1_events_per_second": round(acks1),
                "tfd_acks_1_cpu_us_per_event": round(acks1_cpu, 1),
                "tfd_acks_all_idempotent_repeat_events_per_second": round(again),
                "tfd_acks_all_idempotent_repeat_cpu_us_per_event": round(again_cpu, 1),
                "target_events_per_second": 5000,
                "meets_target": all(v >= 5000 for v in produced.values()),
                "one_free_core_meets_target": all(1e6 / c >= 5000 for c in cpu.values()),
                "loadavg_at_end": round(os.getloadavg()[0], 1),
            }
        )
    finally:
        if platform is not None:
            platform.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
