"""Startup benchmark: time from `up` to all healthy, memory per service and in all, time to the first learned event.

Runs the whole platform (same code as `coelho up`) on free ports in a temporary data directory, so it never touches
a running `coelho up`. A cold start (empty data dir: MLflow creates its database) is followed, unless --no-warm, by a
warm start on the same data (what `coelho down` + `coelho up` costs).

Memory: `rss` sums the resident set of every process of a service (a forked worker counts its shared pages
again); `pss` (proportional set size) splits shared pages between processes, so the `pss` total is what the
platform really occupies. Prints progress on stderr and ONE JSON object on the last line of stdout.

    .venv/bin/python bench/startup.py [--no-warm] [--no-producers]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coelho.cli import learned_per_domain  # noqa: E402
from coelho.runtime import Platform  # noqa: E402
from coelho.settings import Settings  # noqa: E402

TARGET_HEALTHY_S = 30.0
TARGET_RSS_BYTES = int(2.5 * 2**30)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def learned_total(plat: Platform) -> float:
    """Events learned so far over all domains, from the learn function's /metrics (0 when unreadable)."""
    return float(sum((learned_per_domain(plat) or {}).values()))


def memory(plat: Platform) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in plat.entries():
        rss = pss = 0
        cpu = 0.0
        for p in plat.processes(name):  # the same process set `status` uses
            with contextlib.suppress(psutil.Error):
                full = p.memory_full_info()
                rss += full.rss
                pss += getattr(full, "pss", full.rss)
                t = p.cpu_times()
                cpu += t.user + t.system
        out[name] = {"rss_mb": round(rss / 2**20), "pss_mb": round(pss / 2**20), "cpu_s": round(cpu, 1)}
    return out


def one_start(plat: Platform, producers: bool, wait_learned: bool) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    ready_in = plat.start(None, producers=producers)
    healthy_s = time.monotonic() - t0
    at_healthy = memory(plat)  # CPU-seconds each service spent to get healthy (independent of machine load)
    log(f"all healthy in {healthy_s:.1f} s")
    first_learned: float | None = None
    can_learn = {"learn", "router"} <= set(plat.entries()) and any(n.startswith("producer_") for n in plat.entries())
    if wait_learned and can_learn:
        base = learned_total(plat)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if learned_total(plat) > base:
                first_learned = time.monotonic() - t0
                break
            time.sleep(0.25)
        log(f"first learned event at {first_learned} s after up")
    time.sleep(3)  # let the processes settle before reading memory
    mem = memory(plat)
    return {
        "all_healthy_s": round(healthy_s, 2),
        "ready_in_s": ready_in,
        "first_learned_event_s": None if first_learned is None else round(first_learned, 2),
        "learn_pipeline_present": can_learn,
        "services": mem,
        "startup_cpu_s": {n: m["cpu_s"] for n, m in at_healthy.items()},
        "startup_cpu_s_total": round(sum(m["cpu_s"] for m in at_healthy.values()), 1),
        # all services start in parallel, so on an otherwise idle machine startup cannot beat total CPU / cores
        "cpu_bound_floor_s": round(sum(m["cpu_s"] for m in at_healthy.values()) / (psutil.cpu_count() or 1), 1),
        "rss_total_mb": sum(m["rss_mb"] for m in mem.values()),
        "pss_total_mb": sum(m["pss_mb"] for m in mem.values()),
        "load_avg_1m_before": round(load_before, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-warm", action="store_true", help="only the cold start")
    ap.add_argument("--no-producers", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="coelho-bench-") as tmp:
        settings = Settings.load().with_free_ports(Path(tmp) / "data")
        plat = Platform(settings, echo=log)
        result: dict[str, Any] = {"bench": "startup", "cpus": psutil.cpu_count()}
        try:
            log("cold start (empty data directory)")
            cold = one_start(plat, not args.no_producers, wait_learned=True)
            result["cold"] = cold
            t = time.monotonic()
            plat.stop()
            result["down_s"] = round(time.monotonic() - t, 2)
            if not args.no_warm:
                log("warm start (same data directory)")
                result["warm"] = one_start(plat, not args.no_producers, wait_learned=True)
        finally:
            plat.stop()
    cold = result["cold"]
    result["all_healthy_s"] = cold["all_healthy_s"]
    result["first_learned_event_s"] = cold["first_learned_event_s"]
    result["rss_total_mb"] = cold["rss_total_mb"]
    result["pss_total_mb"] = cold["pss_total_mb"]
    result["startup_cpu_s_total"] = cold["startup_cpu_s_total"]
    result["cpu_bound_floor_s"] = cold["cpu_bound_floor_s"]
    result["target_all_healthy_s"] = TARGET_HEALTHY_S
    result["target_rss_mb"] = TARGET_RSS_BYTES // 2**20
    result["meets_healthy_target"] = cold["all_healthy_s"] <= TARGET_HEALTHY_S
    result["meets_memory_target_pss"] = cold["pss_total_mb"] * 2**20 <= TARGET_RSS_BYTES
    result["meets_memory_target_rss"] = cold["rss_total_mb"] * 2**20 <= TARGET_RSS_BYTES
    print(json.dumps(result))


if __name__ == "__main__":
    main()
