"""The cost of the append's duplicate checks: Broker deliveries (CloudEvent id + event id keys with a TTL) against
KafkaSource deliveries (event id key + the partition's offset mark), one private Redis, one client
(docs/adr/0091-dedup-windows.md).

Run: `.venv/bin/python bench/dedup.py [--events 5000]`; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from eventing.domains import get_domain  # noqa: E402
from functions.model_state.event_log import EventLog, KafkaPosition  # noqa: E402
from tests.functions.function_testkit import throwaway_redis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, throwaway_redis(Path(workdir)) as url:
        client = redis.Redis.from_url(url)
        domain = get_domain("tfd")
        event = {"transaction_id": "x", "amount": 1.0}
        results: dict[str, float] = {}
        for mode in ("broker", "kafka", "broker", "kafka"):  # interleaved twice, the best of each kept
            client.flushall()
            log = EventLog(client, domain)
            started = time.perf_counter()
            for i in range(args.events):
                data = dict(event, transaction_id=f"t{i}")
                if mode == "kafka":
                    at = KafkaPosition("tfd", str(i % 3), i // 3, f"{1_700_000_000_000 + i:015d}")
                    log.append("record", data, log.dedup_keys("/s", f"p/{i}", data, "record", kafka=at), kafka=at)
                else:
                    log.append("record", data, log.dedup_keys("/s", f"e{i}", data, "record"))
            per_event_us = (time.perf_counter() - started) / args.events * 1e6
            results[mode] = min(results.get(mode, per_event_us), per_event_us)
            memory = client.info("memory")["used_memory"]
            results[f"{mode}_redis_bytes"] = memory
        print(json.dumps({"bench": "dedup", "events": args.events, **{k: round(v, 1) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
