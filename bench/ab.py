"""A/B testing's costs (docs/adr/0082-ab-testing.md), in one process against a private Redis:

- learning with 1, 2 and 3 live models of a domain: events/s of the learn path (append + every learner replica
  applies the entry, paired outcomes written), and of the in-process replay alone (OnlineModel.learn_one);
- predict-one's latency (Predictor.predict in-process, µs p50/p99) with the champion only and with a 90/10 split;
- promotion switch time: from `promote` returning to the first prediction answered by the new champion (ms), with
  predict-one's routing refresh at its default;
- the comparison of every pair of live models on their paired outcomes (ms);
- with --mlflow: a checkpoint's time now that it logs a pyfunc model, and mlflow.pyfunc's load and predict.

    .venv/bin/python bench/ab.py [--domain tfd] [--events 3000] [--mlflow]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from typing import Any

from function_harness import load_average, percentile, private_platform

MODELS = {
    "tfd": ("logreg_rus", "logreg", "hoeffding_adaptive_tree"),
    "eta": ("hoeffding_adaptive_tree", "linear_regression", "adaptive_random_forest"),
    "ecci": ("dbstream", "dbstream_default", "kmeans"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domain", default="tfd", choices=sorted(MODELS))
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--predictions", type=int, default=3000)
    parser.add_argument("--promotions", type=int, default=10)
    parser.add_argument("--mlflow", action="store_true", help="also time checkpoints and pyfunc loads (starts MLflow)")
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # aliases in Redis only: the switch itself, not MLflow's API

    import redis

    from eventing.domains import get_domain
    from functions.model_state import ab, ab_outcomes
    from functions.model_state.event_log import LogEntry
    from functions.model_state.online_model import OnlineModel
    from functions.model_state.replica import sync_replicas
    from functions.predict import ROUTING_REFRESH_S, Predictor
    from tests.functions.streams import events

    domain = get_domain(args.domain)
    stream = events(domain.name, args.events, seed=5)
    requests = [
        {k: v for k, v in e.items() if k not in (domain.target, domain.id_field)}
        for e in events(domain.name, 500, seed=6)
    ]
    out: dict[str, Any] = {"bench": "ab", "domain": domain.name, "events": args.events, "load_average": load_average()}
    with private_platform(["redis", "s3", "mlflow"] if args.mlflow else ["redis"]) as platform:
        client: Any = redis.Redis.from_url(platform.settings.redis_url)
        for name in MODELS[domain.name]:  # warm-up: imports and first-call costs out of the measurement
            warm = OnlineModel.fresh(domain, name)
            for seq, event in enumerate(stream[:300], start=1):
                warm.learn_one(seq, "record", event, 0)
        learned: dict[str, float] = {}
        replayed: dict[str, float] = {}
        for count in (1, 2, 3):
            names = MODELS[domain.name][:count]
            client.flushall()
            ab.live_models(client, domain, names)
            replicas = sync_replicas(client, domain, "learner", [])
            log = replicas[0].log
            started = time.perf_counter()
            for i, event in enumerate(stream):
                appended = log.append("record", event, log.dedup_keys("/bench", f"e{i}", event, "record"))
                entry = LogEntry(appended.seq, "record", event, appended.t_ms)
                for replica in replicas:
                    replica.learn_committed(entry, appended.paused_at)
            for replica in replicas:
                replica.write_summary()
            learned[str(count)] = round(args.events / (time.perf_counter() - started), 1)
            states = [OnlineModel.fresh(domain, n) for n in names]
            started = time.perf_counter()
            for seq, event in enumerate(stream, start=1):
                for state in states:
                    state.learn_one(seq, "record", event, 0)
            replayed[str(count)] = round(args.events / (time.perf_counter() - started), 1)
        out["learn_path_events_per_s"] = learned
        out["replay_events_per_s"] = replayed
        out["models"] = list(MODELS[domain.name])

        started = time.perf_counter()
        compared = ab_outcomes.compare(client, domain)
        out["compare_ms"] = round(1000 * (time.perf_counter() - started), 1)
        out["compare_pairs"] = [
            {"a": p["a"], "b": p["b"], "n": p["n"], "verdict": p["verdict"]} for p in compared["pairs"]
        ]

        predictor = Predictor(client)
        predictor.load()
        try:
            for label, split in (
                ("champion_only", None),
                ("split_90_10", {"champion": 90, MODELS[domain.name][1]: 10}),
            ):
                ab.set_split(client, domain, split)
                predictor.refresh_routing()
                for request in requests[:200]:  # warm-up
                    predictor.predict(domain, request)
                times = []
                served: dict[str, int] = {}
                for i in range(args.predictions):
                    request = dict(requests[i % len(requests)], **{domain.key_field: f"entity-{i}"})
                    t0 = time.perf_counter()
                    reply = predictor.predict(domain, request)
                    times.append(time.perf_counter() - t0)
                    served[reply["model"]] = served.get(reply["model"], 0) + 1
                times.sort()
                out[f"predict_{label}_us"] = {
                    "p50": round(1e6 * percentile(times, 50), 1),
                    "p99": round(1e6 * percentile(times, 99), 1),
                }
                out[f"predict_{label}_served"] = served
            ab.set_split(client, domain, None)
            predictor.refresh_routing()
            switches = []
            rng = random.Random(0)
            request = requests[0]
            for i in range(args.promotions):
                target = MODELS[domain.name][1] if i % 2 == 0 else MODELS[domain.name][0]
                time.sleep(rng.uniform(0, ROUTING_REFRESH_S))  # not in phase with predict-one's routing refresh
                ab.promote(client, domain, target)
                t0 = time.perf_counter()
                while predictor.predict(domain, request)["model"] != target:
                    time.sleep(0.001)
                switches.append(time.perf_counter() - t0)
            switches.sort()
            out["promotion_switch_ms"] = {
                "p50": round(1000 * percentile(switches, 50), 1),
                "max": round(1000 * switches[-1], 1),
                "promotions": len(switches),
            }
        finally:
            predictor.stop()
        if args.mlflow:
            out.update(registry_costs(platform, client, domain))
    print(json.dumps(out))


def registry_costs(platform: Any, client: Any, domain: Any) -> dict[str, Any]:
    """A checkpoint (catch up, pickle, MLflow run, pyfunc model, registered version, aliases), then the champion
    loaded with mlflow.pyfunc and a dataframe of 100 events answered."""
    import mlflow
    import pandas as pd

    from functions.checkpoint import Checkpointer
    from functions.model_state.pyfunc import input_schema
    from tests.functions.streams import events

    os.environ["MLFLOW_TRACKING_URI"] = platform.settings.mlflow_uri
    checkpointer = Checkpointer(client)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        checkpointer.checkpoint(domain.name, MODELS[domain.name][0])
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/coelho-{domain.name}@champion")
    loaded = time.perf_counter() - t0
    columns = [str(c.name) for c in input_schema(domain).inputs]
    rows = []
    for event in events(domain.name, 100, seed=9):
        row = {}
        for path in columns:
            value: Any = event
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            row[path] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    t0 = time.perf_counter()
    model.predict(frame)
    predicted = time.perf_counter() - t0
    return {
        "checkpoint_with_pyfunc_s": [round(t, 2) for t in times],
        "pyfunc_load_s": round(loaded, 2),
        "pyfunc_predict_100_rows_ms": round(1000 * predicted, 1),
    }


if __name__ == "__main__":
    main()
