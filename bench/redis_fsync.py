"""What `appendfsync always` costs learn-one against `everysec` (docs/adr/0101-redis-memory-and-fsync.md).

One private Redis (the platform's service on free ports, AOF on, in a temporary data directory); the two modes are
switched with CONFIG SET and measured in alternating rounds in the same run, so the machine's load weighs on both
alike. Per round and mode, on fresh keys of the tfd domain:
- append: the dedup + XADD round trip alone (what an acknowledged event costs Redis), events/s;
- learn path: append + direct apply (what learn-one does per event, without HTTP), events/s.
The ratio always/everysec is the figure to read; absolute rates depend on the disk and the load.

    .venv/bin/python bench/redis_fsync.py [--events 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from function_harness import load_average, private_platform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--domain", default="tfd")
    args = parser.parse_args()

    import redis

    from eventing.domains import get_domain
    from functions.model_state.event_log import EventLog, LogEntry
    from functions.model_state.replica import ModelReplica
    from tests.functions.streams import events

    domain = get_domain(args.domain)
    stream = events(domain.name, args.events, seed=11)
    rates: dict[str, dict[str, list[float]]] = {m: {"append": [], "learn": []} for m in ("everysec", "always")}
    with private_platform(["redis"]) as platform:
        client: Any = redis.Redis.from_url(platform.settings.redis_url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        for round_ in range(args.rounds):
            for mode in ("everysec", "always") if round_ % 2 == 0 else ("always", "everysec"):
                client.config_set("appendfsync", mode)
                for part in ("append", "learn"):
                    client.flushall()
                    log = EventLog(client, domain)
                    replica = ModelReplica(client, domain, role="learner") if part == "learn" else None
                    started = time.perf_counter()
                    for i, event in enumerate(stream):
                        data = dict(event, **{domain.id_field: f"{round_}-{i}"})
                        appended = log.append("record", data, log.dedup_keys("/bench", f"{round_}-{i}", data, "record"))
                        if replica is not None:
                            replica.learn_committed(
                                LogEntry(appended.seq, "record", data, appended.t_ms), appended.paused_at
                            )
                    rates[mode][part].append(len(stream) / (time.perf_counter() - started))
                print(mode, {p: round(r[-1]) for p, r in rates[mode].items()}, flush=True)
        client.config_set("appendfsync", "everysec")
    result: dict[str, Any] = {"bench": "redis_fsync", "load_average": load_average(), "events": args.events}
    for part in ("append", "learn"):
        every = statistics.median(rates["everysec"][part])
        always = statistics.median(rates["always"][part])
        result[part] = {
            "everysec_per_s": round(every),
            "always_per_s": round(always),
            "always_over_everysec": round(always / every, 3),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
