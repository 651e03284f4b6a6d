"""Model comparison on the producers' own streams: quality by progressive validation, and what each model costs.

In one process, for every model of every domain (`Domain.model_factories`), on the same seeded stream of the
domain's generator (records validated with `Domain.validate`, features from `Domain.features`):
- progressive validation (test-then-train): predict the event, update the domain's own metrics
  (`Domain.metric_factories`, scored as learn-one scores them), then learn it;
- learn and predict µs per event (p50/p99 of each call, features computed beforehand, metrics not counted);
  events/s = events / (predict + learn time), learn/s = events / learn time;
- the model's state after the stream: pickle (protocol 5) bytes, the same with lz4, and with lz4 and without the
  unused random state of River's distributions (what the platform's snapshots store);
- beside the domain's metrics: tfd the exact ROC AUC (River's ROCAUC interpolates 10 thresholds) and the best F1
  over all thresholds; eta the median absolute error and the predictions above the target's declared maximum (a
  model that diverges), the routing engine's own estimate (no learning) as the baseline; ecci the adjusted Rand
  index against the generator's hidden customer segments on the --holdout records that follow the stream,
  predicted by the final model without learning.

30,000 records by default: a seeded stream starts on a Monday and its first weekend trip comes after about 20,000
records; the default covers that weekend (a feature constant until then, which a linear model must survive).

The run is repeatable: the stream is seeded (--seed) and the script re-runs itself under PYTHONHASHSEED=--hash-seed,
because tfd's Hoeffding adaptive tree learns differently with the hash seed of strings (its exact ROC AUC ranged
.73-.83 over hash seeds 0-5 on 20,000 records of the default stream).

The batch reference (tfd and eta): the task's first batch model of a batch study (functions/batch/models.py,
HistGradientBoosting) fitted on the first 1 - --test-fraction of the same records' features (`Domain.features`) and
scored on the rest, the test window; every model's progressive answers on that window are scored the same way
(functions/batch/scores.py) and `gap` is how much worse than batch each is on the task's headline metric, in %
(`test_window`). --candidates also runs models measured as alternatives (`CANDIDATES`) that the domain does not
declare.

Forests learn at several hundred events/s and take most of the run: --forest-events N stops models whose name
contains "forest" after N events for a quicker run; every other model of that domain then also reports its quality
at N events (`quality_at_forest_events`).

    .venv/bin/python bench/models.py [--events 30000] [--domains tfd,eta,ecci] [--seed 42] [--forest-events N]
                                     [--test-fraction 0.3] [--candidates]

Prints one line per model, then ONE JSON object on the last line (docs/models.md).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import lz4.frame
from function_harness import load_average, percentile

from eventing.domain import Domain
from eventing.domains import DOMAINS
from producers.generators import make_generator

HOLDOUT = 2000


def _eta_candidates() -> dict[str, Callable[[], Any]]:
    """eta's alternatives to its declared models, measured for docs/models.md and
    docs/adr/0124-eta-online-features.md."""
    from river import compose, ensemble, forest, preprocessing, tree

    from eventing.domains import eta

    physics_numeric = (*eta.NUMERIC, "log_distance_km", "center_km", "downtown")
    physics_categorical = (*eta.CATEGORICAL, "day_hour", "motorbike_day_hour", "downtown_day_hour")

    def physics() -> Any:
        return (compose.Select(*physics_numeric) | preprocessing.StandardScaler()) + (
            compose.Select(*physics_categorical) | preprocessing.OneHotEncoder()
        )

    def log_encoded() -> Any:
        return (compose.Select(*eta.LOG_NUMERIC) | preprocessing.StandardScaler()) + (
            compose.Select(*eta.LOG_CATEGORICAL) | preprocessing.OneHotEncoder()
        )

    def log_target(regressor: Any) -> Any:
        return compose.TargetTransformRegressor(regressor, func=math.log1p, inverse_func=math.expm1)

    crosses = ("motorbike_day_hour", "downtown_day_hour")
    return {
        "log_linear_regression_sgd_0.01": lambda: eta.log_linear_regression(learning_rate=0.01),
        "log_linear_regression_sgd_0.002": lambda: eta.log_linear_regression(learning_rate=0.002),
        "log_linear_regression_fields_only": lambda: eta.log_linear_regression(
            categorical=("weather", "vehicle_type", "day_of_week", "hour_bucket")
        ),
        "log_linear_regression_no_crosses": lambda: eta.log_linear_regression(
            categorical=tuple(c for c in eta.LOG_CATEGORICAL if c not in crosses)
        ),
        "log_linear_regression_no_downtown": lambda: eta.log_linear_regression(
            categorical=tuple(c for c in eta.LOG_CATEGORICAL if c != "downtown_day_hour")
        ),
        "hoeffding_adaptive_tree_physics": lambda: physics() | tree.HoeffdingAdaptiveTreeRegressor(seed=42),
        "hoeffding_adaptive_tree_physics_log_target": lambda: (
            physics() | log_target(tree.HoeffdingAdaptiveTreeRegressor(seed=42))
        ),
        "bagging_5_hoeffding_trees_log_target": lambda: (
            log_encoded() | log_target(ensemble.BaggingRegressor(tree.HoeffdingTreeRegressor(), n_models=5, seed=42))
        ),
        "adaptive_random_forest_physics": lambda: physics() | forest.ARFRegressor(n_models=10, seed=42),
    }


CANDIDATES: dict[str, Callable[[], dict[str, Callable[[], Any]]]] = {"eta": _eta_candidates}


def stream(domain: Domain, seed: int, count: int) -> list[tuple[dict[str, Any], Any, dict[str, Any], dict[str, Any]]]:
    """`count` records of the domain's seeded stream: (features, target, clean event, hidden truth)."""
    out = []
    for event in make_generator(domain.name, seed=seed).take(count):
        if event.kind != "record":
            continue
        clean = domain.validate(event.data)
        out.append((domain.features(clean), clean.get(domain.target) if domain.target else None, clean, event.truth))
    return out[:count]


def predict(domain: Domain, model: Any, x: dict[str, Any], learned: int) -> Any:
    """The model's answer as learn-one gives it: P(fraud), seconds (never negative), a cluster id or None."""
    if domain.task == "classification":
        proba = model.predict_proba_one(x) or {}
        total = sum(proba.values())
        return float(proba.get(True, 0.0) / total) if total > 0 else 0.0
    if domain.task == "regression":
        y = model.predict_one(x)
        return max(float(y), 0.0) if y is not None and math.isfinite(float(y)) else 0.0
    if learned == 0:
        return None
    try:
        cluster = model.predict_one(x)
    except (ValueError, KeyError, ZeroDivisionError, IndexError):  # DBSTREAM before its first macro-cluster
        return None
    return int(cluster) if cluster is not None else None


def clusterer_and_scaled(model: Any, x: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The pipeline's last step and `x` as that step sees it (through the steps before it)."""
    steps = list(getattr(model, "steps", {}).values())
    if not steps:
        return model, x
    for step in steps[:-1]:
        x = step.transform_one(x)
    return steps[-1], x


def score(
    domain: Domain,
    metrics: dict[str, Any],
    model: Any,
    x: dict[str, Any],
    y: Any,
    prediction: Any,
    clean: dict[str, Any],
) -> None:
    """Update the domain's metrics with one prediction, as learn-one does."""
    from river import utils

    if domain.task == "classification":
        proba = {True: prediction, False: 1.0 - prediction}
        for metric in metrics.values():
            metric.update(bool(y), prediction >= 0.5 if getattr(metric, "requires_labels", True) else proba)
    elif domain.task == "regression":
        when = datetime.fromisoformat(clean["timestamp"]).astimezone(UTC).replace(tzinfo=None)  # as learn-one
        for metric in metrics.values():
            if isinstance(metric, utils.TimeRolling):
                metric.update(float(y), prediction, t=when)
            else:
                metric.update(float(y), prediction)
    elif prediction is not None:
        clusterer, scaled = clusterer_and_scaled(model, x)
        centers = getattr(clusterer, "centers", None)
        if centers and len(centers) >= 2:
            for metric in metrics.values():
                metric.update(scaled, prediction, centers)


def metric_values(domain: Domain, metrics: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in domain.main_metrics:
        try:
            value = float(metrics[name].get())
        except (TypeError, ValueError, ZeroDivisionError):
            value = float("nan")
        out[name] = round(value, 4) if math.isfinite(value) else None
    return out


def exact_roc_auc(ys: list[bool], scores: list[float]) -> float | None:
    """Mann-Whitney ROC AUC, ties counted half."""
    positives = sum(ys)
    negatives = len(ys) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        average_rank = (i + j) / 2 + 1
        rank_sum += average_rank * sum(ys[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def best_f1(ys: list[bool], scores: list[float]) -> float:
    """The highest F1 of the fraud class over every threshold."""
    positives = sum(ys)
    best = 0.0
    tp = fp = 0
    pairs = sorted(zip(scores, ys, strict=True), reverse=True)
    for i, (s, y) in enumerate(pairs):
        tp += y
        fp += not y
        if i + 1 < len(pairs) and pairs[i + 1][0] == s:
            continue
        best = max(best, 2 * tp / (tp + fp + positives))
    return best


def extra_quality(domain: Domain, ys: list[Any], predictions: list[Any]) -> dict[str, Any]:
    if domain.task == "classification":
        auc = exact_roc_auc(ys, predictions)
        return {
            "exact_ROCAUC": round(auc, 4) if auc is not None else None,
            "best_F1": round(best_f1(ys, predictions), 4),
        }
    if domain.task == "regression":
        errors = sorted(abs(float(y) - p) for y, p in zip(ys, predictions, strict=True))
        target = next(f for f in domain.fields if f.name == domain.target)
        wild = [i for i, p in enumerate(predictions, start=1) if target.maximum is not None and p > target.maximum]
        return {
            "median_AE": round(percentile(errors, 50), 1),
            "predictions_above_max": len(wild),
            "first_above_max_at": wild[0] if wild else None,
        }
    return {}


def slim_lz4_bytes(model: Any) -> int:
    """pickle + lz4 without `_rng` of River's distributions (never used to learn or predict), as snapshots are."""
    from river.proba.base import Distribution

    class Slim(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, Distribution) and "_rng" in getattr(obj, "__dict__", {}):
                return _restore, (type(obj), {k: v for k, v in obj.__dict__.items() if k != "_rng"})
            return NotImplemented

    buffer = io.BytesIO()
    Slim(buffer, protocol=5).dump(model)
    return len(lz4.frame.compress(buffer.getvalue()))


def _restore(cls: Any, state: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    obj._rng = random.Random(state.get("seed"))
    return obj


def run_model(
    domain: Domain,
    name: str,
    events: list[Any],
    holdout: list[Any],
    limit: int,
    checkpoint: int | None,
    factory: Callable[[], Any] | None = None,
    window: Callable[[list[Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Progressive validation of one model over the first `limit` events; quality also after `checkpoint`.
    factory: the model when it is not one the domain declares; window: scores the progressive answers on the
    batch reference's test window."""
    model = factory() if factory is not None else domain.make_model(name)
    metrics = domain.metric_factories()
    learn_us: list[float] = []
    predict_us: list[float] = []
    ys: list[Any] = []
    predictions: list[Any] = []
    at_checkpoint: dict[str, Any] | None = None
    clock = time.perf_counter_ns
    started = time.perf_counter()
    for i, (x, y, clean, _truth) in enumerate(events[:limit]):
        t0 = clock()
        prediction = predict(domain, model, x, i)
        t1 = clock()
        score(domain, metrics, model, x, y, prediction, clean)
        t2 = clock()
        if domain.target:
            model.learn_one(x, y)
        else:
            model.learn_one(x)
        t3 = clock()
        predict_us.append((t1 - t0) / 1000)
        learn_us.append((t3 - t2) / 1000)
        ys.append(y)
        predictions.append(prediction)
        if checkpoint is not None and i + 1 == checkpoint < limit:
            at_checkpoint = {**metric_values(domain, metrics), **extra_quality(domain, ys, predictions)}
    seconds = time.perf_counter() - started
    quality: dict[str, Any] = {**metric_values(domain, metrics), **extra_quality(domain, ys, predictions)}
    if domain.task == "clustering":
        from river import metrics as river_metrics

        clusterer, _ = clusterer_and_scaled(model, {})
        micro = getattr(clusterer, "micro_clusters", None)
        quality["n_clusters"] = int(getattr(clusterer, "n_clusters", len(getattr(clusterer, "centers", {}) or {})))
        quality["n_micro_clusters"] = len(micro) if micro is not None else None
        ari = river_metrics.AdjustedRand()
        for x, _y, _clean, truth in holdout:
            cluster = predict(domain, model, x, limit)
            ari.update(truth["segment"], -1 if cluster is None else cluster)
        quality["holdout_ARI"] = round(ari.get(), 4)
    learn_us.sort()
    predict_us.sort()
    raw = pickle.dumps(model, protocol=5)
    row: dict[str, Any] = {
        "events": limit,
        "quality": quality,
        "learn_us_p50": round(percentile(learn_us, 50), 1),
        "learn_us_p99": round(percentile(learn_us, 99), 1),
        "predict_us_p50": round(percentile(predict_us, 50), 1),
        "predict_us_p99": round(percentile(predict_us, 99), 1),
        "events_per_s": round(limit / ((sum(learn_us) + sum(predict_us)) / 1e6)),
        "learn_per_s": round(limit / (sum(learn_us) / 1e6)),
        "state_bytes": len(raw),
        "state_lz4_bytes": len(lz4.frame.compress(raw)),
        "state_slim_lz4_bytes": slim_lz4_bytes(model),
        "seconds": round(seconds, 1),
    }
    if at_checkpoint is not None:
        row["quality_at_forest_events"] = at_checkpoint
    if window is not None and limit == len(events):
        row["test_window"] = window(predictions)
    return row


def batch_reference(domain: Domain, events: list[Any], test_fraction: float) -> dict[str, Any] | None:
    """The batch study's first model for the task fitted on the first 1 - test_fraction of `events`' features,
    scored on the rest (None for clustering); `cut` is where the test window starts."""
    if domain.task not in ("classification", "regression"):
        return None
    import numpy as np
    import pandas as pd

    from functions.batch.features import categorical_columns
    from functions.batch.models import BATCH_MODELS
    from functions.batch.scores import GAP_METRICS

    cut = len(events) - max(1, round(len(events) * test_fraction))
    frame = pd.DataFrame([x for x, _y, _c, _t in events])
    categorical = categorical_columns(frame)
    numeric = [c for c in frame.columns if c not in categorical]
    frame = frame[categorical + numeric]
    ys = [y for _x, y, _c, _t in events]
    name, make = next(iter(BATCH_MODELS[domain.task].items()))
    model = make(categorical, numeric, y=ys[:cut])
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime: threadpoolctl limits loaded libraries only)
    from threadpoolctl import threadpool_limits

    from functions.batch.study import threads

    with threadpool_limits(limits=threads()):  # as a study: one native thread unless COELHO_BATCH_THREADS
        started = time.perf_counter()
        model.fit(frame.iloc[:cut], ys[:cut])
        fit_s = time.perf_counter() - started
        if domain.task == "classification":
            answers = model.predict_proba(frame.iloc[cut:])[:, list(model.classes_).index(True)]
        else:
            answers = model.predict(frame.iloc[cut:])
    truth = np.asarray(ys[cut:])
    return {
        "model": name,
        "train_events": cut,
        "test_events": len(events) - cut,
        "fit_s": round(fit_s, 1),
        "metrics": window_metrics(domain, truth, np.asarray(answers, dtype=float)),
        "gap_metrics": list(GAP_METRICS[domain.task]),
        "cut": cut,
    }


def window_metrics(domain: Domain, truth: Any, answers: Any) -> dict[str, float | None]:
    from functions.batch.scores import classification_metrics, regression_metrics

    scores = classification_metrics if domain.task == "classification" else regression_metrics
    return {k: round(v, 4) if v is not None else None for k, v in scores(truth, answers).items()}


def window_scorer(
    domain: Domain, events: list[Any], reference: dict[str, Any]
) -> Callable[[list[Any]], dict[str, Any]]:
    """Scores a model's progressive answers on the reference's test window, with the gap to batch in %: how much
    worse online is (positive: batch is better) on each of the task's headline metrics."""
    import numpy as np

    from functions.batch.scores import LOWER_IS_BETTER

    cut = reference["cut"]
    truth = np.asarray([y for _x, y, _c, _t in events[cut:]])

    def score_window(predictions: list[Any]) -> dict[str, Any]:
        answers = np.asarray([float(p) for p in predictions[cut:]], dtype=float)
        metrics = window_metrics(domain, truth, answers)
        gap: dict[str, float | None] = {}
        for name in reference["gap_metrics"]:
            batch, online = reference["metrics"].get(name), metrics.get(name)
            if batch is None or online is None or batch == 0:
                gap[name] = None
            else:
                worse = online - batch if name in LOWER_IS_BETTER else batch - online
                gap[name] = round(100 * worse / abs(batch), 1)
        return {**metrics, "gap_pct": gap}

    return score_window


def baseline(domain: Domain, events: list[Any]) -> dict[str, Any]:
    """What the stream gives without a model: the fraud rate, the routing engine's MAE."""
    if domain.task == "classification":
        return {"positive_rate": round(sum(bool(y) for _x, y, _c, _t in events) / len(events), 4)}
    if domain.task == "regression":
        errors = [abs(float(y) - c["initial_estimated_travel_time_seconds"]) for _x, y, c, _t in events]
        return {"routing_estimate_MAE": round(sum(errors) / len(errors), 1)}
    return {"segments": len({t["segment"] for _x, _y, _c, t in events})}


def short(quality: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in quality.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30000, help="records per domain")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--forest-events", type=int, default=0, help="records a forest learns (0: all of --events)")
    parser.add_argument("--holdout", type=int, default=HOLDOUT, help="ecci: records after the stream for the ARI")
    parser.add_argument("--hash-seed", type=int, default=0, help="PYTHONHASHSEED the models run under")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="the batch reference's test window")
    parser.add_argument("--candidates", action="store_true", help="also the models in CANDIDATES")
    args = parser.parse_args()
    if os.environ.get("PYTHONHASHSEED") != str(args.hash_seed):  # string hashing orders sets: see the docstring
        env = {**os.environ, "PYTHONHASHSEED": str(args.hash_seed)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    import river

    cap = args.forest_events or None
    results: dict[str, Any] = {}
    for domain_name in args.domains.split(","):
        domain = DOMAINS[domain_name]
        started = time.perf_counter()
        extra = args.holdout if domain.task == "clustering" else 0
        everything = stream(domain, args.seed, args.events + extra)
        events, holdout = everything[: args.events], everything[args.events :]
        out: dict[str, Any] = {
            "default_model": domain.default_model,
            "events": len(events),
            "baseline": baseline(domain, events),
            "models": {},
        }
        print(
            f"{domain_name}: {len(events)} records (seed {args.seed}) in {time.perf_counter() - started:.1f} s, "
            f"{short(out['baseline'])}",
            flush=True,
        )
        reference = batch_reference(domain, events, args.test_fraction)
        window = None
        if reference is not None:
            window = window_scorer(domain, events, reference)
            out["batch"] = {k: v for k, v in reference.items() if k != "cut"}
            print(f"  batch {reference['model']}: {short(reference['metrics'])}", flush=True)
        factories: dict[str, Callable[[], Any] | None] = dict.fromkeys(domain.model_factories)
        if args.candidates and domain_name in CANDIDATES:
            factories.update(CANDIDATES[domain_name]())
        forests = [name for name in factories if "forest" in name]
        checkpoint = cap if forests and cap and cap < len(events) else None
        if checkpoint:
            out["forest_events"] = checkpoint
        for name, factory in factories.items():
            forest = name in forests
            row = run_model(
                domain,
                name,
                events,
                holdout,
                checkpoint if forest and checkpoint else len(events),
                None if forest else checkpoint,
                factory,
                window,
            )
            if factory is not None:
                row["candidate"] = True
            out["models"][name] = row
            mark = " (default)" if name == domain.default_model else ""
            print(
                f"  {name}{mark}: {row['events']} events, {short(row['quality'])}; learn p50 {row['learn_us_p50']} µs, "
                f"predict p50 {row['predict_us_p50']} µs, {row['events_per_s']} events/s, "
                f"state {row['state_bytes']:,} B ({row['state_slim_lz4_bytes']:,} B slim+lz4); "
                f"{row['seconds']} s" + (f"; test window {short(row['test_window'])}" if "test_window" in row else ""),
                flush=True,
            )
        results[domain_name] = out
    print(
        json.dumps(
            {
                "bench": "models",
                "events": args.events,
                "seed": args.seed,
                "forest_events": cap,
                "test_fraction": args.test_fraction,
                "candidates": args.candidates,
                "python": platform.python_version(),
                "python_hash_seed": args.hash_seed,
                "river": river.__version__,
                "load_average": load_average(),
                "domains": results,
            }
        )
    )


if __name__ == "__main__":
    main()
