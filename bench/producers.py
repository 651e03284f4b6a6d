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
from producers.producer import produce  # noqa: E402
from producers.kafka_record import to_kafka_message  # noqa: E402


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


def produce_rate(domain: str, events: int, bootstrap: str, config: dict[str, Any] | None = None) -> tuple[float, int]:
    stats = produce(domain, rate=0, count=events, seed=int(time.time()), bootstrap_servers=bootstrap, producer_config=config)
    assert stats.acknowledged == stats.sent == events, (stats.acknowledged, stats.sent, stats.errors)
    return stats.events_per_second, stats.errors


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
    results: dict[str, Any] = {"events": args.events, "bootstrap_servers": bootstrap,
                               "loadavg_at_start": round(os.getloadavg()[0], 1)}
    try:
        generated, records, produced = {}, {}, {}
        for domain in DOMAINS:
            generated[domain] = round(generation_rate(domain, args.events))
            records[domain] = round(record_rate(domain, args.events))
            rate, _ = produce_rate(domain, args.events, bootstrap)
            produced[domain] = round(rate)
            print(f"{domain}: generate {generated[domain]:,} ev/s, + CloudEvent record {records[domain]:,} ev/s, "
                  f"+ Kafka {produced[domain]:,} ev/s", flush=True)
        acks1, _ = produce_rate("tfd", args.events, bootstrap, {"acks": 1, "enable_idempotence": False})
        again, _ = produce_rate("tfd", args.events, bootstrap)
        print(f"tfd acks=1: {acks1:,.0f} ev/s; acks=all + idempotence again: {again:,.0f} ev/s", flush=True)
        results.update({
            "produce_events_per_second": produced,
            "generate_events_per_second": generated,
            "generate_and_encode_events_per_second": records,
            "tfd_acks_1_events_per_second": round(acks1),
            "tfd_acks_all_idempotent_repeat_events_per_second": round(again),
            "target_events_per_second": 5000,
            "meets_target": all(v >= 5000 for v in produced.values()),
            "loadavg_at_end": round(os.getloadavg()[0], 1),
        })
    finally:
        if platform is not None:
            platform.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
