"""Drift detection on the producers' own streams: false alarms without drift, detection delay after `--drift-at`.

In-process, through the code learn-one runs for every event: `Domain.validate`, then `OnlineModel.apply`
(predict, score, watch the error with the model's `DriftWatch`, learn). For each domain's default model and
each seed:
- a stationary stream of --count records (the producer without --drift-at): every detection is a false alarm;
- the same seed with --drift-at N, --count records: detections at or before N are false alarms, the first one
  after N gives the detection delay (records after N), none = missed.

    .venv/bin/python bench/drift.py [--count 3000] [--drift-at 2000] [--seeds 1,2,3,4,5]

Prints per-run lines, then ONE JSON object on the last line (docs/adr/0071-drift-detection-on-producer-drift.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventing.domains import DOMAINS  # noqa: E402
from functions.model_state.online_model import OnlineModel  # noqa: E402
from functions.model_state.tasks import TASKS  # noqa: E402
from producers.generators import make_generator  # noqa: E402


def detections(domain: str, seed: int, count: int, drift_at: int | None) -> list[int]:
    """Record positions (1-based) at which the domain's default model reported a drift."""
    d = DOMAINS[domain]
    state = OnlineModel.fresh(d)
    found: list[int] = []
    seq = 0
    for event in make_generator(domain, seed=seed, drift_at=drift_at).take(count):
        if event.kind != "record":
            continue
        seq += 1
        applied = state.learn_one(seq, "record", d.validate(event.data), int(event.time * 1000))
        if applied.drift:
            found.append(seq)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="records per stream")
    parser.add_argument("--drift-at", type=int, default=2000)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out: dict[str, Any] = {
        "count": args.count,
        "drift_at": args.drift_at,
        "seeds": seeds,
        "settings": {name: vars(t.drift) for name, t in TASKS.items()},
        "false_alarms_per_1000": {},
        "detection_delay": {},
        "runs": {},
    }
    for domain in args.domains.split(","):
        false_alarms = 0
        events = 0
        delays: list[int | None] = []
        runs: dict[str, Any] = {}
        for seed in seeds:
            started = time.perf_counter()
            stationary = detections(domain, seed, args.count, None)
            drifted = detections(domain, seed, args.count, args.drift_at)
            before = [p for p in drifted if p <= args.drift_at]
            after = [p - args.drift_at for p in drifted if p > args.drift_at]
            false_alarms += len(stationary) + len(before)
            events += args.count + args.drift_at
            delays.append(after[0] if after else None)
            runs[str(seed)] = {"stationary": stationary, "with_drift": drifted}
            print(
                f"{domain} seed {seed}: stationary {stationary}, drift at {args.drift_at}: {drifted} "
                f"({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
        found = [d for d in delays if d is not None]
        out["false_alarms_per_1000"][domain] = round(1000 * false_alarms / events, 3)
        out["detection_delay"][domain] = {
            "per_seed": delays,
            "missed": sum(d is None for d in delays),
            "median": statistics.median(found) if found else None,
            "max": max(found) if found else None,
        }
        out["runs"][domain] = runs
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
