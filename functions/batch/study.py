"""One batch study: a domain's lake table at a recorded Delta version, split by time, scikit-learn models trained
on the earlier part and scored on the later one, beside the domain's River model on the very same test events.

The steps, in order; everything that can fail on the input is checked before MLflow hears of the study, so a bad
table, version or target leaves no run behind (`StudyError` says what is wrong):

1. read: the records table at `version` (the latest when None), only the columns the features, the event time,
   the id and the target need, columnar (`DeltaTable(...).to_pyarrow_table(columns=...)`). A record whose target
   is null (a delayed label) takes it from the `<table>_labels` table, joined on the domain's id; records still
   without a target are dropped and counted. `rows` keeps the most recent N rows.
2. split by the event's own time, never shuffled: the earliest 75% train, the rest test (`split_time` is the
   first test event's time; every train event is strictly before it).
3. features: the domain's `features(event)` computed on columns (`COLUMNAR_FEATURES`, checked equal to the
   per-event function by tests/functions/test_batch_units.py), then a ColumnTransformer: one-hot categories,
   numbers as they are (standardised for the linear models and k-means).
4. batch models per task (`BATCH_MODELS`): tfd HistGradientBoostingClassifier and LogisticRegression
   (class_weight balanced); eta HistGradientBoostingRegressor and Ridge; ecci KMeans whose k (2-8) has the best
   silhouette on a sample of the training part. The first model of the task (or `model`) is the study's model:
   the one registered, compared and drawn.
5. River on the same events (`OnlineModel.fresh(domain)`, the domain's default model): replayed test-then-train
   over the training part, then two answers for every test event: `online_progressive`, the prediction made
   before learning the event while it keeps learning (what the live model's progressive metrics score over that
   window), and `online_frozen`, the model as it was at the split, never learning the test part (trained on
   exactly what the batch model saw).
6. the gap: batch minus online, per metric (`GAP_METRICS`: ROC AUC and log loss for tfd, MAE for eta, ARI and
   silhouette for ecci).

ecci's latent customer segments are the generator's hidden truth: the lake table has no column for them. With
`truth_seed` (the seed of the producer that wrote the table) they are regenerated and matched by event id, and
the ARI of both models against them is reported; without it the study says that ARI is not available.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from eventing.domain import Domain
from eventing.domains import get_domain
from functions.lake.rows import event_time_path, flat_name, lake_table
from functions.lake.service import uri_of
from functions.lake.tables import storage_options

MIN_ROWS = 200  # fewer usable rows than this: no study (each part must hold enough events to score)
MIN_TEST_ROWS = 50
TEST_FRACTION = 0.25
SAMPLE = 2000  # rows of the silhouette estimates and the permutation importance
K_RANGE = range(2, 9)
SEED = 0
PROBA_CLIP = 1e-6

# Metrics whose batch-minus-online difference is the study's headline, per task (higher is better unless below).
GAP_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("roc_auc", "log_loss"),
    "regression": ("mae",),
    "clustering": ("ari", "silhouette"),
}
LOWER_IS_BETTER = {"log_loss", "mae", "rmse", "brier"}

Progress = Callable[[str], None]


class StudyError(ValueError):
    """The input cannot make a study (no table, no such version, too few rows, no target): nothing was logged."""


# --- the domain's features, on columns ----------------------------------------------------------------------------
def _tfd_features(frame: pd.DataFrame) -> pd.DataFrame:
    when = pd.to_datetime(frame["timestamp"], utc=True)
    hour = when.dt.hour
    amount = frame["amount"].astype(float)
    age = frame["account_age_days"].astype(float)
    return pd.DataFrame(
        {
            "amount": amount,
            "log_amount": np.log1p(amount),
            "account_age_days": age,
            "new_account": (age < 30).astype(float),
            "cvv_provided": frame["cvv_provided"].astype(float),
            "billing_address_match": frame["billing_address_match"].astype(float),
            "currency": frame["currency"].astype(str),
            "product_category": frame["product_category"].astype(str),
            "transaction_type": frame["transaction_type"].astype(str),
            "payment_method": frame["payment_method"].astype(str),
            "os": frame["device_info_os"].fillna("unknown").astype(str),
            "browser": frame["device_info_browser"].fillna("unknown").astype(str),
            "hour_of_day": "h" + hour.map("{:02d}".format),
            "night": ((hour < 6) | (hour >= 23)).astype(float),
        },
        index=frame.index,
    )


def _eta_features(frame: pd.DataFrame) -> pd.DataFrame:
    hour = frame["hour_of_day"].astype(int)
    day = frame["day_of_week"].astype(str)
    weekday = ~day.isin(["Saturday", "Sunday"])
    rush = weekday & (hour.between(7, 9) | hour.between(16, 19))
    return pd.DataFrame(
        {
            "estimated_distance_km": frame["estimated_distance_km"].astype(float),
            "initial_estimated_travel_time_seconds": frame["initial_estimated_travel_time_seconds"].astype(float),
            "temperature_celsius": frame["temperature_celsius"].astype(float),
            "driver_rating": frame["driver_rating"].astype(float),
            "hour_of_day": hour.astype(float),
            "rush_hour": rush.astype(float),
            "weekday": weekday.astype(float),
            "origin_lat": frame["origin_lat"].astype(float),
            "origin_lon": frame["origin_lon"].astype(float),
            "destination_lat": frame["destination_lat"].astype(float),
            "destination_lon": frame["destination_lon"].astype(float),
            "weather": frame["weather"].astype(str),
            "vehicle_type": frame["vehicle_type"].astype(str),
            "day_of_week": day,
            "hour_bucket": "h" + hour.map("{:02d}".format),
        },
        index=frame.index,
    )


def _ecci_features(frame: pd.DataFrame) -> pd.DataFrame:
    kind = frame["event_type"].astype(str)
    out = {
        "log_price": np.log1p(frame["price"].astype(float)),
        "quantity": frame["quantity"].astype(float),
        "log_time_on_page": np.log1p(frame["time_on_page_seconds"].astype(float)),
        "session_event_sequence": frame["session_event_sequence"].astype(float).clip(upper=50),
    }
    for name in ("search", "add_to_cart", "purchase"):
        out[f"is_{name}"] = (kind == name).astype(float)
    out["is_mobile"] = (frame["device_info_device_type"].astype(str) == "mobile").astype(float)
    return pd.DataFrame(out, index=frame.index)


COLUMNAR_FEATURES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "tfd": _tfd_features,
    "eta": _eta_features,
    "ecci": _ecci_features,
}


def feature_frame(domain: Domain, frame: pd.DataFrame) -> pd.DataFrame:
    """`domain.features(event)` of every row of `frame` (flat lake columns), as columns."""
    return COLUMNAR_FEATURES[domain.name](frame)


def categorical_columns(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]


# --- the batch models ---------------------------------------------------------------------------------------------
def _preprocessor(categorical: list[str], numeric: list[str], scale: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = []
    if categorical:
        parts.append(("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    if numeric:
        parts.append(("numbers", StandardScaler() if scale else "passthrough", numeric))
    return ColumnTransformer(parts, verbose_feature_names_out=False)


def _ordinal(categorical: list[str], numeric: list[str]) -> Any:
    """Categories as ordinal codes (unknown: missing) first, then the numbers: the trees split on categories
    natively (`categorical_features`), with far fewer columns than one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    return ColumnTransformer(
        [("categories", encoder, categorical), ("numbers", "passthrough", numeric)], verbose_feature_names_out=False
    )


def _hgb_classifier(categorical: list[str], numeric: list[str], **_: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    mask = [True] * len(categorical) + [False] * len(numeric)
    return Pipeline(
        [
            ("features", _ordinal(categorical, numeric)),
            ("model", HistGradientBoostingClassifier(categorical_features=mask, random_state=SEED)),
        ]
    )


def _logreg(categorical: list[str], numeric: list[str], **_: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("features", _preprocessor(categorical, numeric, True)),
            ("model", LogisticRegression(class_weight="balanced", max_iter=2000)),
        ]
    )


def _hgb_regressor(categorical: list[str], numeric: list[str], **_: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    mask = [True] * len(categorical) + [False] * len(numeric)
    return Pipeline(
        [
            ("features", _ordinal(categorical, numeric)),
            ("model", HistGradientBoostingRegressor(categorical_features=mask, random_state=SEED)),
        ]
    )


def _ridge(categorical: list[str], numeric: list[str], **_: Any) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    return Pipeline([("features", _preprocessor(categorical, numeric, True)), ("model", Ridge(alpha=1.0))])


def _kmeans(categorical: list[str], numeric: list[str], k: int = 5, **_: Any) -> Any:
    from sklearn.cluster import KMeans
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("features", _preprocessor(categorical, numeric, True)),
            ("model", KMeans(n_clusters=k, n_init=4, random_state=SEED)),
        ]
    )


BATCH_MODELS: dict[str, dict[str, Callable[..., Any]]] = {
    "classification": {"hist_gradient_boosting": _hgb_classifier, "logistic_regression": _logreg},
    "regression": {"hist_gradient_boosting": _hgb_regressor, "ridge": _ridge},
    "clustering": {"kmeans": _kmeans},
}


# --- the data -----------------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A domain's rows as read for a study: sorted by event time, with the columns the study needs."""

    domain: Domain
    frame: pd.DataFrame
    uri: str
    version: int
    latest_version: int
    labels_version: int | None = None
    rows_read: int = 0
    dropped_unlabeled: int = 0


def _open_table(uri: str, options: Mapping[str, str], version: int | None, what: str) -> tuple[Any, int]:
    from deltalake import DeltaTable

    try:
        latest = DeltaTable(uri, storage_options=dict(options))
    except Exception as exc:
        raise StudyError(
            f"no Delta table at {uri} ({what}): has the lake function written any event? "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None
    newest = int(latest.version())
    if version is None:
        return latest, newest
    if version < 0 or version > newest:
        raise StudyError(f"{what} {uri} has no version {version}: its versions are 0 to {newest}")
    try:
        return DeltaTable(uri, storage_options=dict(options), version=version), newest
    except Exception as exc:  # a version whose log files were cleaned up (log retention)
        raise StudyError(
            f"{what} {uri} cannot be read at version {version}: {str(exc).splitlines()[0][:200]}"
        ) from None


def needed_columns(domain: Domain) -> list[str]:
    paths = [domain.id_field, *domain.field_names("feature")]
    time_path = event_time_path(domain)
    if time_path:
        paths.append(time_path)
    if domain.target:
        paths.append(domain.target)
    return list(dict.fromkeys(flat_name(p) for p in paths))


def prepared(domain: Domain, frame: pd.DataFrame, rows: int | None = None) -> pd.DataFrame:
    """`frame` sorted by event time (column `_time`), one row per event id, the most recent `rows` only."""
    time_column = flat_name(event_time_path(domain) or "")
    frame = frame.assign(_time=pd.to_datetime(frame[time_column], utc=True))
    frame = frame.sort_values(["_time", flat_name(domain.id_field)], kind="stable")
    frame = frame.drop_duplicates(flat_name(domain.id_field), keep="first")
    if rows is not None:
        frame = frame.tail(rows)
    return frame.reset_index(drop=True)


def read_dataset(
    domain_name: str,
    version: int | None = None,
    rows: int | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """The domain's lake rows at `version` (see the module's docstring, step 1), or StudyError."""
    say = progress or (lambda _msg: None)
    domain = get_domain(domain_name)
    env = os.environ if environ is None else environ
    options = storage_options(env)
    records = lake_table(domain.name, "record")
    uri = uri_of(records, env)
    dt, newest = _open_table(uri, options, version, "lake table")
    read_version = int(dt.version())
    schema_names = {f.name for f in dt.schema().fields}
    wanted = needed_columns(domain)
    target = flat_name(domain.target) if domain.target else None
    if target and target not in schema_names:
        raise StudyError(f"{records.name} has no target column {target!r}: a {domain.task} study needs it")
    missing = [c for c in wanted if c not in schema_names]
    if missing:
        raise StudyError(f"{records.name} lacks the columns {missing} that the {domain.name} features need")
    say(f"reading {uri} at version {read_version} (latest {newest}): {len(wanted)} columns")
    arrow = dt.to_pyarrow_table(columns=wanted)
    frame = arrow.to_pandas()
    rows_read = len(frame)
    if rows_read == 0:
        raise StudyError(f"{records.name} is empty at version {read_version}: a study needs at least {MIN_ROWS} rows")
    labels_version = None
    dropped = 0
    if target:
        if frame[target].isna().any():
            labels_version, frame = _join_labels(domain, frame, options, env, say)
        before = len(frame)
        frame = frame[frame[target].notna()]
        dropped = before - len(frame)
        if len(frame) == 0:
            raise StudyError(
                f"{records.name} version {read_version} has no row with its target {target!r} "
                f"({rows_read} rows read, none labelled): nothing to learn from"
            )
    frame = prepared(domain, frame, rows)
    if len(frame) < MIN_ROWS:
        raise StudyError(
            f"{records.name} version {read_version} has {len(frame)} usable rows"
            f"{f' ({dropped} without a label)' if dropped else ''}: a study needs at least {MIN_ROWS}"
        )
    return Dataset(domain, frame, uri, read_version, newest, labels_version, rows_read, dropped)


def _join_labels(
    domain: Domain, frame: pd.DataFrame, options: Mapping[str, str], env: Mapping[str, str], say: Progress
) -> tuple[int | None, pd.DataFrame]:
    """Fill the null targets from the labels table (its latest version), joined on the domain's id."""
    from deltalake import DeltaTable

    labels = lake_table(domain.name, "label")
    uri = uri_of(labels, env)
    target, id_column = flat_name(domain.target or ""), flat_name(domain.id_field)
    try:
        dt = DeltaTable(uri, storage_options=dict(options))
    except Exception:
        say(f"no labels table at {uri}: rows without a target are dropped")
        return None, frame
    found = dt.to_pyarrow_table(columns=[id_column, target]).to_pandas().dropna()
    found = found.drop_duplicates(id_column, keep="first").set_index(id_column)[target]
    filled = frame[target].astype(object).where(frame[target].notna(), frame[id_column].map(found))
    say(
        f"joined {int(frame[target].isna().sum() - filled.isna().sum())} labels from {labels.name} "
        f"version {dt.version()}"
    )
    return int(dt.version()), frame.assign(**{target: filled})


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    split_time: pd.Timestamp
    split_index: int


def time_split(frame: pd.DataFrame, test_fraction: float = TEST_FRACTION) -> Split:
    """Train on the earlier events, test on the later ones: every train event strictly before `split_time`.

    >>> f = pd.DataFrame({"_time": pd.to_datetime([1, 2, 2, 3, 4, 5, 6, 7], unit="s", utc=True)})
    >>> s = time_split(f, 0.25); len(s.train), len(s.test), s.split_time.second
    (6, 2, 6)
    """
    n = len(frame)
    first_test = max(1, n - max(1, round(n * test_fraction)))
    split_time = frame["_time"].iloc[first_test]
    train_mask = frame["_time"] < split_time
    return Split(frame[train_mask], frame[~train_mask], split_time, int(train_mask.sum()))


# --- River on the same events ------------------------------------------------------------------------------------
def clean_events(domain: Domain, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as the clean (nested) events learn-one takes: the inverse of the lake's flattening."""
    paths = [path for path, _f in domain.leaf_fields() if flat_name(path) in frame.columns]
    columns: dict[str, list[Any]] = {}
    for path in paths:
        column = frame[flat_name(path)]
        if str(column.dtype).startswith("datetime64"):
            columns[path] = [t.isoformat() for t in column]
        else:
            columns[path] = column.tolist()
    if domain.target and domain.task == "classification":
        columns[domain.target] = [bool(v) for v in columns[domain.target]]
    events: list[dict[str, Any]] = []
    for i in range(len(frame)):
        event: dict[str, Any] = {}
        for path in paths:
            value = columns[path][i]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            head, _, leaf = path.rpartition(".")
            (event.setdefault(head, {}) if head else event)[leaf] = value
        events.append(event)
    return events


def river_answers(domain: Domain, split: Split, progress: Progress | None = None) -> dict[str, Any]:
    """The River model's answers on the test events: progressive (test-then-train, it keeps learning) and frozen
    (the model at the split). Replays the training part first; also returns its events/s."""
    from functions.model_state.online_model import OnlineModel

    say = progress or (lambda _msg: None)
    state = OnlineModel.fresh(domain)
    train_events = clean_events(domain, split.train)
    test_events = clean_events(domain, split.test)
    train_ms = (split.train["_time"].astype("int64") // 1_000_000).tolist()
    test_ms = (split.test["_time"].astype("int64") // 1_000_000).tolist()
    started = time.perf_counter()
    seq = 0
    for event, t_ms in zip(train_events, train_ms, strict=True):
        seq += 1
        state.learn_one(seq, "record", event, int(t_ms))
        if seq % 20_000 == 0:
            say(f"River {state.model_name}: {seq}/{len(train_events)} training events replayed")
    frozen = copy.deepcopy(state)
    progressive: list[Any] = []
    for event, t_ms in zip(test_events, test_ms, strict=True):
        seq += 1
        progressive.append(state.learn_one(seq, "record", event, int(t_ms)).prediction)
    frozen_answers = [frozen.predict_one(domain.features(e)) for e in test_events]
    elapsed = time.perf_counter() - started
    return {
        "model": state.model_name,
        "progressive": progressive,
        "frozen": frozen_answers,
        "learn_errors": state.learn_errors,
        "seconds": elapsed,
        "events_per_s": (len(train_events) + len(test_events)) / elapsed if elapsed > 0 else None,
        "live_metrics": {k: v for k, v in state.metric_values().items() if isinstance(v, int | float)},
    }


# --- metrics -----------------------------------------------------------------------------------------------------
def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, log_loss, roc_auc_score

    p = np.clip(np.asarray(proba, dtype=float), PROBA_CLIP, 1 - PROBA_CLIP)
    both = len(set(y.tolist())) == 2
    return {
        "roc_auc": _finite(roc_auc_score(y, p)) if both else None,
        "log_loss": _finite(log_loss(y, p, labels=[False, True])),
        "average_precision": _finite(average_precision_score(y, p)) if both else None,
        "f1": _finite(f1_score(y, p >= 0.5, zero_division=0)),
        "brier": _finite(brier_score_loss(y, p)),
    }


def regression_metrics(y: np.ndarray, prediction: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "mae": _finite(mean_absolute_error(y, prediction)),
        "rmse": _finite(math.sqrt(mean_squared_error(y, prediction))),
        "r2": _finite(r2_score(y, prediction)),
    }


def clustering_metrics(
    scaled: np.ndarray, labels: np.ndarray, truth: np.ndarray | None, rng: np.random.Generator
) -> dict[str, float | None]:
    """ARI against the latent segments (when known), silhouette on a sample in the batch model's scaled space.
    Unassigned events (label -1: River before its first cluster) count in the ARI, not in the silhouette."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    out: dict[str, float | None] = {"n_clusters": float(len(set(labels.tolist()) - {-1}))}
    out["ari"] = _finite(adjusted_rand_score(truth, labels)) if truth is not None else None
    assigned = np.flatnonzero(labels >= 0)
    if len(assigned) > SAMPLE:
        assigned = rng.choice(assigned, SAMPLE, replace=False)
    sample_labels = labels[assigned]
    if 2 <= len(set(sample_labels.tolist())) < len(assigned):
        out["silhouette"] = _finite(silhouette_score(scaled[assigned], sample_labels))
    else:
        out["silhouette"] = None
    return out


def gaps(task: str, batch: Mapping[str, Any], online: Mapping[str, Any]) -> dict[str, float | None]:
    """batch minus online for the task's headline metrics (for a loss, negative means batch is better)."""
    out: dict[str, float | None] = {}
    for name in GAP_METRICS[task]:
        b, o = batch.get(name), online.get(name)
        out[name] = None if b is None or o is None else round(float(b) - float(o), 6)
    return out


# --- ecci's hidden truth ------------------------------------------------------------------------------------------
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


# --- the study ---------------------------------------------------------------------------------------------------
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
        chosen_pipeline, chosen_answers, scaled_test, k_search = _cluster(
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
        metrics["batch"]["inertia_per_event"] = _finite(
            k_search["inertia"][k_search["ks"].index(k_search["k"])] / max(1, len(x_train))
        )
    else:
        for name, factory in candidates.items():
            started = time.perf_counter()
            say(f"training {name} on {len(x_train)} rows")
            pipeline = factory(categorical, numeric)
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
        metrics["online_progressive"]["events_per_s"] = _finite(river["events_per_s"])
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


def _cluster(
    x_train: pd.DataFrame,
    x_test: pd.DataFrame,
    categorical: list[str],
    numeric: list[str],
    rng: np.random.Generator,
    say: Progress,
) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """k-means with the k of K_RANGE whose silhouette (on a training sample) is best; the elbow's inertias."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    scaler = _preprocessor(categorical, numeric, True).fit(x_train)
    scaled_train = np.asarray(scaler.transform(x_train), dtype=float)
    sample = rng.choice(len(scaled_train), min(SAMPLE, len(scaled_train)), replace=False)
    ks, inertias, silhouettes = [], [], []
    for k in K_RANGE:
        if k >= len(sample):
            break
        fitted = KMeans(n_clusters=k, n_init=4, random_state=SEED).fit(scaled_train)
        ks.append(k)
        inertias.append(float(fitted.inertia_))
        silhouettes.append(float(silhouette_score(scaled_train[sample], fitted.labels_[sample])))
        say(f"k-means k={k}: silhouette {silhouettes[-1]:.4f}, inertia {inertias[-1]:.0f}")
    best = ks[int(np.argmax(silhouettes))]
    pipeline = _kmeans(categorical, numeric, k=best).fit(x_train)
    labels = pipeline.predict(x_test)
    scaled_test = np.asarray(pipeline.named_steps["features"].transform(x_test), dtype=float)
    return (
        pipeline,
        np.asarray(labels),
        scaled_test,
        {"k": best, "ks": ks, "inertia": inertias, "silhouette": silhouettes},
    )


def is_better(metric: str, gap: float) -> bool:
    """Whether a batch-minus-online gap favours batch."""
    return gap < 0 if metric in LOWER_IS_BETTER else gap > 0
