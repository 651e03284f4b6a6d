"""The fraud map's cost: the page refresh that draws it, and the scoring of its transactions by the live champion.

- refresh_new_map_ms: the fraud page's periodic refresh (`FraudPage.refresh`, the Map tab built) when the map
  thread handed over a new reading of 300 transactions (once every 5 s); refresh_same_map_ms: the refreshes in
  between (the model moved on, the map did not). Medians over --refreshes.
- score_warm_ms: the map thread's scoring of 300 transactions by the champion it follows (ui/risk.py), after
  --new entries were logged since the last scoring (the replay included); cold_start_ms: the first scoring of a
  dashboard (the snapshot loaded, the log after it replayed, 300 scored). Needs a redis-server (started here).

With --root DIR the refresh is measured on another checkout's dashboard (e.g. `git worktree add /tmp/old HEAD~1`:
the version before the map was coloured by risk), which does no scoring. Prints one JSON object on the last line.

    .venv/bin/python bench/fraud_map.py [--refreshes 200] [--root /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def measure_refresh(refreshes: int, transactions: list[dict[str, Any]]) -> dict[str, float]:
    from coelho.settings import Settings
    from ui.live import DomainLive, LiveData
    from ui.pages.tfd import FraudPage

    live = LiveData(Settings())  # not started: the bench hands over the snapshots
    LiveData._instance = live
    page = FraudPage(live.settings)
    page._build_map_tab()
    new_map: list[float] = []
    same_map: list[float] = []
    for i in range(refreshes):
        fresh = i % 5 == 0
        rows = [dict(t) for t in transactions] if fresh else live.domains["tfd"].transactions
        snapshot = DomainLive("tfd", model="logreg_rus", available=True, events_learned=1000 + i, transactions=rows)
        snapshot.updated = time.time() + i
        live.domains["tfd"] = snapshot
        t0 = time.perf_counter()
        page.refresh()
        (new_map if fresh else same_map).append((time.perf_counter() - t0) * 1000)
    return {
        "refresh_new_map_ms": round(statistics.median(new_map), 3),
        "refresh_same_map_ms": round(statistics.median(same_map), 3),
    }


def measure_scoring(new: int, rounds: int) -> dict[str, Any]:
    import redis

    from eventing.domains import TFD
    from functions.model_state.event_log import EventLog
    from functions.model_state.replica import ModelReplica
    from producers.generators import make_generator
    from tests.functions.function_testkit import throwaway_redis
    from ui import state_reader
    from ui.risk import ChampionRisk

    workdir = Path(tempfile.mkdtemp(prefix="fraud-map-bench-"))
    os.environ["COELHO_DATA_DIR"] = str(workdir)  # a model-state key of its own
    try:
        with throwaway_redis(workdir) as url:
            client = redis.Redis.from_url(url)
            log = EventLog(client, TFD)
            events = make_generator("tfd", seed=11).take(None)

            def append(count: int) -> None:
                for _ in range(count):
                    event = next(events)
                    clean = TFD.validate(event.data)
                    log.append("record", clean, log.dedup_keys("/bench", event.id, clean, "record"))

            learner = ModelReplica(client, TFD, role="learner")
            append(1999)  # a snapshot at 1000, then 999 entries to replay
            learner.catch_up()
            scorer = ChampionRisk(client)
            shown = state_reader.recent_transactions(client, "tfd")
            t0 = time.perf_counter()
            risks = scorer.score([t["event"] for t in shown])
            cold = (time.perf_counter() - t0) * 1000
            warm = []
            for _ in range(rounds):
                append(new)
                shown = state_reader.recent_transactions(client, "tfd")
                t0 = time.perf_counter()
                risks = scorer.score([t["event"] for t in shown])
                warm.append((time.perf_counter() - t0) * 1000)
            for row, risk in zip(shown, risks, strict=True):
                row["risk"] = risk
            client.close()
            return {
                "cold_start_ms": round(cold, 1),
                "score_warm_ms": round(statistics.median(warm), 2),
                "new_entries_per_scoring": new,
                "scored": len(shown),
                "model": scorer.model,
                "transactions": shown,
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refreshes", type=int, default=200)
    parser.add_argument("--new", type=int, default=50, help="entries logged between two scorings (10 events/s)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--root", type=Path, default=None, help="measure the refresh of this checkout's dashboard")
    args = parser.parse_args()
    os.environ.pop("COELHO_TILE_URL", None)
    sys.path.insert(0, str(ROOT))
    scoring = measure_scoring(args.new, args.rounds)
    transactions = scoring.pop("transactions")
    if args.root is not None:  # the other checkout's ui package, imported fresh
        for name in [m for m in sys.modules if m == "ui" or m.startswith("ui.")]:
            del sys.modules[name]
        sys.path.insert(0, str(args.root.resolve()))
    result = {"root": str(args.root or ROOT), **measure_refresh(args.refreshes, transactions)}
    if args.root is None:
        result.update(scoring)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
