"""Batch studies: what training costs per domain, and the online-vs-batch gap, on the producers' seeded streams.

For every domain and row count, in a fresh process each (its peak memory is the study's): the domain's seeded
stream is generated and flattened as the lake stores it (nested fields joined with `_`), then one study runs on it
exactly as `coelho batch train` does after reading the table (functions/batch/study.py: time split 75/25, the
task's scikit-learn models, River replayed on the same events), without figures or MLflow:

- batch_fit_s: the registered model's fit (tfd and eta: HistGradientBoosting; ecci: the k search and the final
  k-means), batch_s: every batch model of the task with its scoring, river_s: River's replay (train + test);
- peak_rss_mb: the process's peak resident memory, and data_rss_mb the resident memory once the data is ready;
- the metrics of batch, River progressive and River frozen on the test window, and the gaps (batch minus River).

Rows above --online-max (default 100,000) skip the River replay (it learns one event at a time: minutes at 1M).

    .venv/bin/python bench/batch.py [--rows 100000] [--domains tfd,eta,ecci] [--seed 42] [--online-max 100000]

Prints one line per study, then ONE JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(domain_name: str, rows: int, seed: int, online: bool) -> dict[str, Any]:
    """One study in this process (see the module's docstring)."""
    sys.path.insert(0, ROOT)
    import pandas as pd

    from eventing.domains import get_domain
    from functions.batch.dataset import Dataset, prepared
    from functions.batch.study import run_study
    from producers.generators import make_generator

    domain = get_domain(domain_name)
    started = time.perf_counter()
    data, truth = [], {}
    for event in make_generator(domain.name, seed=seed).take(rows):
        if event.kind == "record":
            data.append(event.data)
            if "segment" in event.truth:
                truth[event.data[domain.id_field]] = event.truth["segment"]
    frame = prepared(domain, pd.json_normalize(data, sep="_"))
    del data
    generate_s = time.perf_counter() - started
    dataset = Dataset(domain, frame, f"generated:{domain.name}:seed{seed}", 0, 0, rows_read=len(frame))
    data_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = run_study(domain.name, dataset=dataset, online=online, figures=False, truth=truth or None)
    study_s = time.perf_counter() - started
    fit = result.metrics["batch"].get("fit_seconds")
    return {
        "domain": domain.name,
        "rows": len(frame),
        "model": result.model,
        "online_model": result.params.get("online_model"),
        "generate_s": round(generate_s, 2),
        "study_s": round(study_s, 2),
        "batch_fit_s": fit if fit is not None else result.timings.get("batch_s"),
        "batch_s": result.timings.get("batch_s"),
        "river_s": result.timings.get("river_s"),
        "data_rss_mb": round(data_rss, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "k": result.params.get("k"),
        "metrics": {
            k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in values.items()}
            for k, values in result.metrics.items()
        },
        "gap": result.gap,
        "notes": result.notes,
    }


def main() -> None:
    sys.path.insert(0, ROOT)
    from eventing.domains import DOMAINS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000", help="comma-separated row counts")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--online-max", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        domain, rows = args.child.split(":")
        print(json.dumps(child(domain, int(rows), args.seed, int(rows) <= args.online_max)))
        return
    results: list[dict[str, Any]] = []
    for rows in (int(r) for r in args.rows.split(",")):
        for domain in args.domains.split(","):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    f"{domain}:{rows}",
                    "--seed",
                    str(args.seed),
                    "--online-max",
                    str(args.online_max),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": ROOT, "MPLBACKEND": "Agg"},
            )
            if out.returncode != 0:
                results.append({"domain": domain, "rows": rows, "error": out.stderr.strip().splitlines()[-1:]})
                print(f"{domain} {rows}: failed: {out.stderr.strip()[-500:]}", flush=True)
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"{domain:<5} {result['rows']:>8} rows: fit {result['batch_fit_s']}s, study {result['study_s']}s, "
                f"River {result['river_s']}s, peak {result['peak_rss_mb']} MB, gap {result['gap']}",
                flush=True,
            )
    print(
        json.dumps(
            {
                "bench": "batch",
                "seed": args.seed,
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_1m": round(os.getloadavg()[0], 1),
                    "python": platform.python_version(),
                },
                "threads": int(os.environ.get("COELHO_BATCH_THREADS") or 1),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
