"""The event-log state store's own costs (docs/adr/0031): per-event append, learn paths, snapshots, cold start.

Against a private Redis (the platform's service on free ports), in one process, per domain default model:
- append: the Lua dedup + XADD round trip alone (µs p50/p99);
- learn path: append + direct apply (what learn-one does per event, without HTTP), events/s;
- naive write-through for comparison: GET blob, unpickle, learn, pickle, SET per event, events/s;
- snapshot: bytes and ms to write one (pickle + lz4 + compare-and-set);
- cold replica: load the snapshot + replay the last N entries, ms.

    .venv/bin/python bench/model_state.py [--events 5000]
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from typing import Any

from function_harness import load_average, percentile, private_platform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--naive-events", type=int, default=300)
    args = parser.parse_args()

    import redis

    from eventing.domains import DOMAINS
    from functions.model_state.event_log import EventLog, LogEntry
    from functions.model_state.keys import key as state_key
    from functions.model_state.online_model import OnlineModel
    from functions.model_state.replica import ModelReplica
    from tests.functions.streams import events

    results: dict[str, Any] = {}
    with private_platform(["redis"]) as platform:
        client: Any = redis.Redis.from_url(platform.settings.redis_url)
        for name, domain in DOMAINS.items():
            stream = events(name, args.events + args.naive_events, seed=5)
            log = EventLog(client, domain)
            # append alone (a scratch domain key space would need another domain: measure on a copy of the log)
            times = []
            for i, event in enumerate(stream[:1000]):
                t0 = time.perf_counter()
                log.append(
                    "record",
                    event,
                    log.dedup_keys("/bench", f"a{i}", dict(event, **{domain.id_field: f"a{i}"}), "record"),
                )
                times.append(time.perf_counter() - t0)
            client.delete(*client.keys(state_key(name, "*")))
            times.sort()
            # learn path: append + direct apply
            replica = ModelReplica(client, domain, role="learner")
            started = time.perf_counter()
            for i, event in enumerate(stream[: args.events]):
                appended = log.append("record", event, log.dedup_keys("/bench", f"e{i}", event, "record"))
                replica.learn_committed(LogEntry(appended.seq, "record", event, appended.t_ms), appended.paused_at)
            learn_path = args.events / (time.perf_counter() - started)
            # snapshot write
            t0 = time.perf_counter()
            blob = replica.state.to_bytes()
            replica.write_snapshot(replica.state)
            snapshot_ms = (time.perf_counter() - t0) * 1000
            raw_bytes = len(pickle.dumps(replica.state))
            # cold replica: snapshot at seq - 1000, replay 1000
            cold = ModelReplica(client, domain, role="follower")
            t0 = time.perf_counter()
            cold.load_snapshot()
            load_ms = (time.perf_counter() - t0) * 1000
            # naive write-through per event
            key = state_key("bench", name, "blob")
            state = OnlineModel.fresh(domain)
            client.set(key, pickle.dumps(state))
            started = time.perf_counter()
            for i, event in enumerate(stream[args.events :], start=1):
                state = pickle.loads(client.get(key))
                state.learn_one(i, "record", event, 0)
                client.set(key, pickle.dumps(state))
            naive = args.naive_events / (time.perf_counter() - started)
            client.delete(key)
            # catch-up speed of a follower replaying the whole log
            follower = ModelReplica(client, domain, role="follower")
            t0 = time.perf_counter()
            follower.catch_up()
            replay_per_s = follower.state.seq / (time.perf_counter() - t0)
            results[name] = {
                "model": domain.default_model,
                "append_us_p50": round(percentile(times, 50) * 1e6),
                "append_us_p99": round(percentile(times, 99) * 1e6),
                "learn_path_per_s": round(learn_path),
                "naive_write_through_per_s": round(naive),
                "replay_per_s": round(replay_per_s),
                "snapshot_bytes_lz4": len(blob),
                "snapshot_bytes_raw_pickle": raw_bytes,
                "snapshot_write_ms": round(snapshot_ms, 2),
                "snapshot_load_ms": round(load_ms, 2),
                "events": args.events,
            }
            print(name, json.dumps(results[name]), flush=True)
    print(json.dumps({"bench": "model_state", "load_average": load_average(), "domains": results}))


if __name__ == "__main__":
    main()
