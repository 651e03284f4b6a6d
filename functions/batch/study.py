"""One batch study: a domain's lake table at a recorded Delta version, split by time, scikit-learn models trained
on the earlier part and scored on the later one, beside the domain's River model on the very same test events.

The steps, in order; everything that can fail on the input is checked before MLflow hears of the study, so a bad
table, version or target leaves no run behind (`StudyError` says what is wrong):

1. read (functions/batch/dataset.py): the records table at `version` (the latest when None), only the columns the
   features, the event time, the id and the target need, columnar (`DeltaTable(...).to_pyarrow_table(columns=...)`).
   A record whose target is null (a delayed label) takes it from the `<table>_labels` table, joined on the domain's
   id; records still without a target are dropped and counted. `rows` keeps the most recent N rows.
2. split (dataset.py) by the event's own time, never shuffled: the earliest 75% train, the rest test (`split_time`
   is the first test event's time; every train event is strictly before it).
3. features (features.py): the domain's `features(event)` computed on columns (`COLUMNAR_FEATURES`, checked equal
   to the per-event function by tests/functions/test_batch_units.py), then a ColumnTransformer: one-hot categories,
   numbers as they are (standardised for the linear models and k-means).
4. batch models per task (`BATCH_MODELS`, models.py): tfd HistGradientBoostingClassifier (frauds weighted by the
   square root of the training part's class ratio) and LogisticRegression (class_weight balanced); eta HistGradientBoostingRegressor and Ridge; ecci KMeans whose k (2-8) has the best
   silhouette on a sample of the training part. The first model of the task (or `model`) is the study's model:
   the one registered, compared and drawn.
5. River on the same events (online.py; `OnlineModel.fresh(domain)`, the domain's default model): replayed
   test-then-train over the training part, then two answers for every test event: `online_progressive`, the
   prediction made before learning the event while it keeps learning (what the live model's progressive metrics
   score over that window), and `online_frozen`, the model as it was at the split, never learning the test part
   (trained on exactly what the batch model saw).
6. the gap (scores.py): batch minus online, per metric (`GAP_METRICS`: ROC AUC and log loss for tfd, MAE for eta,
   ARI and silhouette for ecci).

ecci's latent customer segments are the generator's hidden truth: the lake table has no column for them. With
`truth_seed` (the seed of the producer that wrote the table) they are regenerated and matched by event id, and
the ARI of both models against them is reported; without it the study says that ARI is not available.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eventing.domains import get_domain
from functions.batch.dataset import MIN_ROWS, TEST_FRACTION, Dataset, Progress, StudyError, read_dataset, time_split
from functions.batch.features import categorical_columns, feature_frame
from functions.batch.models import BATCH_MODELS, SEED, kmeans_by_silhouette
from functions.batch.online import river_answers
from functions.batch.scores import classification_metrics, clustering_metrics, finite, gaps, regression_metrics
from functions.lake.rows import flat_name

MIN_TEST_ROWS = 50


def truth_segments(seed: int, ids: set[str], limit: int) -> dict[str, str]:
    """The generator's latent segment of every event id in `ids`, regenerating the seeded stream (up to `limit`
    records) that wrote them."""
    from producers.generators import make_generator

    found: dict[str, str] = {}
    for event in make_generator("ecci", seed=seed).take(limit):
        event_id = event.data.get("event_id")
        if event_id in ids:
            found[event_id] = event.truth["segment"]
            if len(found) == len(ids):
                break
    return found


@dataclass
class StudyResult:
    """Everything a study measured and drew, before (and after) MLflow logs it."""

    domain: str
    task: str
    model: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, float | None]]  # batch, batch.<other model>, online_progressive, online_frozen
    gap: dict[str, dict[str, float | None]]  # vs_progressive, vs_frozen
    notes: list[str]
    timings: dict[str, float]
    figures: dict[str, bytes] = field(default_factory=dict)
    pipeline: Any = None
    input_example: Any = None
    run_id: str | None = None
    model_version: int | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "task": self.task,
            "model": self.model,
            "params": self.params,
            "metrics": self.metrics,
            "gap": self.gap,
            "notes": self.notes,
            "timings": self.timings,
            "figures": sorted(self.figures),
            "run_id": self.run_id,
            "model_version": self.model_version,
        }


def threads(environ: Mapping[str, str] | None = None) -> int:
    """Native threads (OpenMP, BLAS) a study uses: COELHO_BATCH_THREADS, default 1. On a busy 2-CPU machine,
    HistGradientBoosting with OpenMP's default threads took 240 s where one thread took 9 s (docs/adr/0083)."""
    env = os.environ if environ is None else environ
    return max(1, int(env.get("COELHO_BATCH_THREADS") or 1))


def run_study(domain_name: str, **kwargs: Any) -> StudyResult:
    """Read, split, train, score and draw (see the module's docstring) within the study's thread limit;
    StudyError on a bad input. Logs nothing."""
    import sklearn.cluster
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime: threadpoolctl limits loaded libraries only)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads(kwargs.get("environ"))):
        return _run_study(domain_name, **kwargs)


def _run_study(
    domain_name: str,
    *,
    version: int | None = None,
    model: str | None = None,
    rows: int | None = None,
    environ: Mapping[str, str] | None = None,
    online: bool = True,
    figures: bool = True,
    truth_seed: int | None = None,
    truth: Mapping[str, str] | None = None,
    dataset: Dataset | None = None,
    progress: Progress | None = None,
) -> StudyResult:
    say = progress or (lambda _msg: None)
    domain = get_domain(domain_name)
    candidates = BATCH_MODELS[domain.task]
    chosen = model or next(iter(candidates))
    if chosen not in candidates:
        raise StudyError(f"unknown batch model {chosen!r} for {domain.name}: one of {', '.join(candidates)}")
    if rows is not None and rows < MIN_ROWS:
        raise StudyError(f"--rows {rows}: a study needs at least {MIN_ROWS} rows")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    data = dataset if dataset is not None else read_dataset(domain.name, version, rows, environ, say)
    split = time_split(data.frame)
    if len(split.test) < MIN_TEST_ROWS or len(split.train) < MIN_TEST_ROWS:
        raise StudyError(
            f"the time split leaves {len(split.train)} train and {len(split.test)} test rows "
            f"(many events share one time?): each part needs at least {MIN_TEST_ROWS}"
        )
    target = flat_name(domain.target) if domain.target else None
    notes: list[str] = []
    if domain.task == "classification" and target:
        for part, frame in (("train", split.train), ("test", split.test)):
            if frame[target].astype(bool).nunique() < 2:
                raise StudyError(
                    f"the {part} part ({len(frame)} rows) holds one class only: "
                    "a fraud study needs frauds and legitimate transactions in both parts"
                )
    timings["read_s"] = time.perf_counter() - clock
    say(
        f"{len(data.frame)} rows: train {len(split.train)} before {split.split_time.isoformat()}, "
        f"test {len(split.test)}"
    )

    clock = time.perf_counter()
    x_train, x_test = feature_frame(domain, split.train), feature_frame(domain, split.test)
    categorical = categorical_columns(x_train)
    numeric = [c for c in x_train.columns if c not in categorical]
    y_train = split.train[target].to_numpy() if target else None
    y_test = split.test[target].to_numpy() if target else None
    if domain.task == "classification":
        y_train, y_test = y_train.astype(bool), y_test.astype(bool)  # type: ignore[union-attr]
    elif domain.task == "regression":
        y_train, y_test = y_train.astype(float), y_test.astype(float)  # type: ignore[union-attr]
    timings["features_s"] = time.perf_counter() - clock
    rng = np.random.default_rng(SEED)

    metrics: dict[str, dict[str, float | None]] = {}
    context: dict[str, Any] = {
        "domain": domain,
        "x_train": x_train,
        "x_test": x_test,
        "y_train": y_train,
        "y_test": y_test,
        "categorical": categorical,
        "numeric": numeric,
    }
    params: dict[str, Any] = {
        "domain": domain.name,
        "model": chosen,
        "table_uri": data.uri,
        "table_version": data.version,
        "table_latest_version": data.latest_version,
        "labels_version": data.labels_version,
        "rows_read": data.rows_read,
        "rows": len(data.frame),
        "rows_limit": rows,
        "dropped_unlabeled": data.dropped_unlabeled,
        "train_rows": len(split.train),
        "test_rows": len(split.test),
        "split_time": split.split_time.isoformat(),
        "split_index": split.split_index,
        "train_start": split.train["_time"].iloc[0].isoformat(),
        "test_end": split.test["_time"].iloc[-1].isoformat(),
        "test_fraction": TEST_FRACTION,
        "features": ",".join(x_train.columns),
    }
    chosen_pipeline: Any = None
    chosen_answers: Any = None
    clock = time.perf_counter()
    if domain.task == "clustering":
        chosen_pipeline, chosen_answers, scaled_test, k_search = kmeans_by_silhouette(
            x_train, x_test, categorical, numeric, rng, say
        )
        context.update(k_search=k_search, scaled_test=scaled_test, labels=chosen_answers, pipeline=chosen_pipeline)
        params["k"] = k_search["k"]
        known: np.ndarray | None = None
        ids = split.test[flat_name(domain.id_field)].astype(str).tolist()
        if truth is not None:
            known = np.array([truth.get(i, "unknown") for i in ids])
        elif truth_seed is not None:
            say(f"regenerating the latent segments of seed {truth_seed}")
            found = truth_segments(truth_seed, set(ids), limit=3 * data.rows_read + 10_000)
            if len(found) == len(ids):
                known = np.array([found[i] for i in ids])
                params["truth_seed"] = truth_seed
            else:
                notes.append(
                    f"ARI not available: the stream of seed {truth_seed} holds {len(found)} of the "
                    f"{len(ids)} test events (the table was not written by that producer)"
                )
        else:
            notes.append(
                "ARI not available: the lake table holds no latent segments (they are the generator's "
                "hidden truth); --truth-seed SEED regenerates them for a table written by the producer "
                "of that seed"
            )
        context["truth"] = known
        metrics["batch"] = clustering_metrics(scaled_test, chosen_answers, known, rng)
        metrics["batch"]["inertia_per_event"] = finite(
            k_search["inertia"][k_search["ks"].index(k_search["k"])] / max(1, len(x_train))
        )
    else:
        for name, factory in candidates.items():
            started = time.perf_counter()
            say(f"training {name} on {len(x_train)} rows")
            pipeline = factory(categorical, numeric, y=y_train)
            pipeline.fit(x_train, y_train)
            fit_s = time.perf_counter() - started
            if domain.task == "classification":
                answers = pipeline.predict_proba(x_test)[:, list(pipeline.classes_).index(True)]
                scores = classification_metrics(y_test, answers)  # type: ignore[arg-type]
            else:
                answers = np.maximum(pipeline.predict(x_test), 0.0)
                scores = regression_metrics(y_test, answers)  # type: ignore[arg-type]
            scores["fit_seconds"] = round(fit_s, 3)
            metrics["batch" if name == chosen else f"batch.{name}"] = scores
            say(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if v is not None))
            if name == chosen:
                chosen_pipeline, chosen_answers = pipeline, answers
        context.update(pipeline=chosen_pipeline, answers=chosen_answers)
    timings["batch_s"] = time.perf_counter() - clock

    if online:
        clock = time.perf_counter()
        say(f"replaying River ({domain.default_model}) over {len(split.train)} training events")
        river = river_answers(domain, split, say)
        timings["river_s"] = time.perf_counter() - clock
        params["online_model"] = river["model"]
        for kind in ("progressive", "frozen"):
            raw = river[kind]
            if domain.task == "classification":
                scores = classification_metrics(y_test, np.array(raw, dtype=float))  # type: ignore[arg-type]
            elif domain.task == "regression":
                scores = regression_metrics(y_test, np.array(raw, dtype=float))  # type: ignore[arg-type]
            else:
                labels = np.array([-1 if c is None else int(c) for c in raw])
                scores = clustering_metrics(context["scaled_test"], labels, context["truth"], rng)
                context[f"online_{kind}_labels"] = labels
            metrics[f"online_{kind}"] = scores
            context[f"online_{kind}"] = raw
        metrics["online_progressive"]["events_per_s"] = finite(river["events_per_s"])
        if river["learn_errors"]:
            notes.append(f"River could not learn {river['learn_errors']} events")
        gap = {
            "vs_progressive": gaps(domain.task, metrics["batch"], metrics["online_progressive"]),
            "vs_frozen": gaps(domain.task, metrics["batch"], metrics["online_frozen"]),
        }
    else:
        gap = {}
        notes.append("online comparison skipped")

    drawn: dict[str, bytes] = {}
    if figures:
        from functions.batch.diagnostics import draw

        clock = time.perf_counter()
        say("drawing the diagnostics")
        drawn = draw(domain.task, context)
        timings["figures_s"] = time.perf_counter() - clock
    example = x_test.head(5).reset_index(drop=True)
    return StudyResult(
        domain.name,
        domain.task,
        chosen,
        params,
        metrics,
        gap,
        notes,
        {k: round(v, 3) for k, v in timings.items()},
        drawn,
        chosen_pipeline,
        example,
    )
