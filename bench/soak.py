"""A soak run: the platform under its producers for a while; do memory, logs and lag stay flat? Prints slopes.

A private platform (free ports, temporary data directory) with the producers at their default rate (or --rate),
supervised as `coelho up` runs it. Every --every seconds it samples: the resident memory of every service (sum and
the largest), Redis' used memory, the size of the log files, the length of each domain's event log in Redis, and
the lag (events committed to a domain's log that its models have not applied yet). At the end: the least-squares
slope of each per minute, over the second half of the run (the first half is warm-up: caches, JIT-free Python
imports, the first snapshots), and the JSON line.

    .venv/bin/python bench/soak.py [--minutes 3] [--every 10] [--rate 3]
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

from function_harness import load_average

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute.

    >>> slope_per_minute([(0, 1.0), (60, 2.0), (120, 3.0)])
    1.0
    """
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if den == 0 else 60.0 * sum((t - mx) * (v - my) for t, v in points) / den


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=None, help="events/s per producer (default: the platform's)")
    args = parser.parse_args()
    if args.rate is not None:
        os.environ["COELHO_PRODUCER_RATE"] = str(args.rate)

    import redis

    from coelho.runtime import Platform
    from coelho.settings import Settings
    from coelho.supervisor import Supervisor
    from eventing.domains import DOMAINS
    from functions.model_state.keys import as_text, key, log_behind, model_key

    services = ["router", "learn", "predict", "checkpoint", *(f"producer_{d}" for d in DOMAINS)]
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="coelho-soak-") as tmp:
        plat = Platform(Settings.load().with_free_ports(Path(tmp)), echo=lambda _line: None)
        sup = Supervisor(plat)
        plat.start(services)
        sup.start_thread()
        client: Any = redis.Redis.from_url(plat.settings.redis_url)
        begin = time.monotonic()
        try:
            while time.monotonic() - begin < args.minutes * 60:
                rss = {name: plat.rss(name) for name in plat.entries()}
                lag = 0
                log_len = 0
                for d in DOMAINS:
                    head = client.get(key(d, "seq"))
                    log_len += int(client.xlen(key(d, "log")))
                    for model in client.smembers(key(d, "models")):
                        raw = client.hget(model_key(d, as_text(model), "summary"), "json")
                        applied = json.loads(raw).get("seq", 0) if raw else 0
                        lag = max(lag, log_behind(head, applied))
                sample = {
                    "t": round(time.monotonic() - begin, 1),
                    "rss_total_bytes": sum(rss.values()),
                    "rss_max_service": max(rss, key=lambda n: rss[n]) if rss else None,
                    "rss_max_bytes": max(rss.values(), default=0),
                    "redis_used_bytes": int(client.info("memory")["used_memory"]),
                    "log_files_bytes": sum(p.stat().st_size for p in plat.settings.log_dir.glob("*.log*")),
                    "event_log_entries": log_len,
                    "lag_events": lag,
                    "restarts": sum(int(e.get("restarts", 0)) for e in plat.entries().values()),
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                time.sleep(args.every)
        finally:
            sup.stop()
            plat.stop()
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2] if samples else []
    keys = [
        "rss_total_bytes",
        "rss_max_bytes",
        "redis_used_bytes",
        "log_files_bytes",
        "event_log_entries",
        "lag_events",
    ]
    slopes = {f"{k}_per_min": round(slope_per_minute([(s["t"], float(s[k])) for s in half]), 1) for k in keys}
    last = samples[-1] if samples else {}
    print(
        json.dumps(
            {
                "bench": "soak",
                "minutes": args.minutes,
                "samples": len(samples),
                "load_average": load_average(),
                "slopes_second_half": slopes,
                "last": {k: last.get(k) for k in [*keys, "rss_max_service", "restarts"]},
            }
        )
    )


if __name__ == "__main__":
    main()
