"""predict-one latency and throughput: p50/p99 at 1, 16 and 64 concurrent clients, predictions/s per process.

Starts a private Redis (the platform's own service, free ports), teaches each domain's model from a seeded stream
through the event log, then runs one predict-one process per HTTP server (gunicorn gthread, waitress, werkzeug
threaded) and drives it with closed-loop keep-alive clients sending `prediction.requested` CloudEvents (binary
mode). The client runs on the same 2-core machine, so figures are a lower bound of the server's capacity.
Targets: p50 <= 3 ms and p99 <= 15 ms at 16 concurrent, >= 1,500 predictions/s per process.

--compare-with DIR also runs predict-one from another checkout (e.g. `git worktree add /tmp/before HEAD~1`) in
the same run, so the ratio between two versions of the code is meaningful on a shared machine; --threads sets the server's worker threads (COELHO_THREADS). Per level: client-side p50/p99/mean, predictions/s,
server CPU per prediction and what one free core could serve (`capacity_per_core_per_s`). With closed-loop
clients, mean latency = clients / throughput (Little's law): 16 clients at <= 3 ms need >= ~5,300 answers/s.

    .venv/bin/python bench/predict.py [--servers granian,waitress,gunicorn,werkzeug] [--variants fast] [--threads 16]
        [--seconds 5] [--domain tfd] [--compare-with DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from function_harness import ce_request, cpu_seconds, function_process, load, load_average, private_platform


def teach(settings: object, n: int) -> dict[str, int]:
    """Fill each domain's log (and a snapshot) with `n` events, as learn-one would."""
    import redis

    from tests.functions.streams import teach as teach_log

    replicas = teach_log(redis.Redis.from_url(settings.redis_url), n, "/bench")  # type: ignore[attr-defined]
    out = {}
    for name, replica in replicas.items():
        replica.write_summary()
        out[name] = replica.state.events_learned
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="granian,waitress")
    parser.add_argument(
        "--compare-with",
        default=None,
        metavar="DIR",
        help="another checkout of the project, run in the same session (label '<server>-compared')",
    )
    parser.add_argument("--threads", type=int, default=16, help="server worker threads (COELHO_THREADS)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--domain", default="tfd", help="domain whose predictions are requested (or 'mixed')")
    parser.add_argument("--learned", type=int, default=3000, help="events each model learns first")
    args = parser.parse_args()

    from eventing.domains import DOMAINS
    from functions.middleware.auth import auth_headers
    from tests.functions.streams import events

    domains = list(DOMAINS) if args.domain == "mixed" else [args.domain]
    requests_ = []
    for name in domains:
        for event in events(name, 200, seed=9):
            headers, body = ce_request(DOMAINS[name].type("prediction.requested"), event, domain=name)
            requests_.append(({**headers, **auth_headers()}, body))  # predict-one's token, when set
    if args.domain == "mixed":
        requests_ = [requests_[i // len(domains) + (i % len(domains)) * 200] for i in range(len(requests_))]
    results: dict[str, list[dict[str, Any]]] = {}
    with private_platform(["redis"]) as platform:
        learned = teach(platform.settings, args.learned)
        trees = [None] + ([args.compare_with] if args.compare_with else [])
        runs = [(server, tree) for server in args.servers.split(",") for tree in trees]
        for server, tree in runs:
            label = server if tree is None else f"{server}-compared"
            if tree is not None:  # another version may not read this one's snapshots: let it replay the log
                import redis

                from functions.model_state.keys import model_key

                client = redis.Redis.from_url(platform.settings.redis_url)
                for key in client.scan_iter(match=model_key("*", "*", "snapshot")):
                    client.delete(key)
            with function_process(platform.settings, "predict", server=server, threads=args.threads, tree=tree) as url:
                load(url, requests_, 4, 1.0)  # warm-up
                rows = []
                for c in (int(x) for x in args.concurrency.split(",")):
                    cpu = cpu_seconds(url)
                    rows.append(load(url, requests_, c, args.seconds))
                    used = cpu_seconds(url) - cpu
                    # server CPU per prediction: what one free core could serve, whatever the machine's load
                    rows[-1]["server_cpu_us_per_request"] = round(used / max(rows[-1]["requests"], 1) * 1e6)
                    rows[-1]["capacity_per_core_per_s"] = round(rows[-1]["requests"] / used) if used else None
                    print(label, json.dumps(rows[-1]), flush=True)
                    time.sleep(0.5)
                results[label] = rows
    at16 = {s: next((float(r["per_s"]) for r in rows if r["concurrency"] == 16), 0.0) for s, rows in results.items()}
    summary = {
        "bench": "predict",
        "domain": args.domain,
        "events_learned": learned,
        "seconds_per_level": args.seconds,
        "threads": args.threads,
        "load_average": load_average(),
        "servers": results,
        "best_at_16": max(at16, key=lambda s: at16[s]) if at16 else None,
        "targets": {"p50_ms_at_16": 3, "p99_ms_at_16": 15, "per_s": 1500},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
