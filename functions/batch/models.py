"""The batch models of a study, per task (`BATCH_MODELS`): scikit-learn pipelines from the study's feature columns.

tfd: HistGradientBoostingClassifier (categories ordinal-coded, split natively; frauds weighted by the square root of
the training part's legitimate-to-fraud ratio, `positive_weight`) and LogisticRegression (class_weight balanced); eta: HistGradientBoostingRegressor and Ridge; ecci: KMeans whose k (`K_RANGE`) has the best silhouette
on a sample of the training part (`kmeans_by_silhouette`). Categories are one-hot encoded and numbers standardised
for the linear models and k-means. The first model of a task is the study's model unless the study names another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from functions.batch.scores import SAMPLE

K_RANGE = range(2, 9)
SEED = 0


def preprocessor(categorical: list[str], numeric: list[str], scale: bool) -> Any:
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


def positive_weight(y: Any) -> float:
    """The weight of the rare positive class (a fraud) for the gradient boosting trees: the square root of the
    negative-to-positive ratio of `y` (1 when a class is absent). Full balance (the ratio itself, class_weight
    'balanced') ranked no better and quadrupled the log loss at 100,000 rows: its probabilities are no longer
    calibrated (docs/adr/0083-batch-studies.md).

    >>> positive_weight([True] + [False] * 49)
    7.0
    """
    labels = np.asarray(y, dtype=bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    return float(np.sqrt(negatives / positives)) if positives and negatives else 1.0


def _hgb_classifier(categorical: list[str], numeric: list[str], y: Any = None, **_: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    mask = [True] * len(categorical) + [False] * len(numeric)
    # {True: w} only: the negative class keeps weight 1 (and skops round-trips a one-key dict of a bool key).
    weight = {True: positive_weight(y)} if y is not None else None
    return Pipeline(
        [
            ("features", _ordinal(categorical, numeric)),
            (
                "model",
                HistGradientBoostingClassifier(categorical_features=mask, random_state=SEED, class_weight=weight),
            ),
        ]
    )


def _logreg(categorical: list[str], numeric: list[str], **_: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("features", preprocessor(categorical, numeric, True)),
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

    return Pipeline([("features", preprocessor(categorical, numeric, True)), ("model", Ridge(alpha=1.0))])


def _kmeans(categorical: list[str], numeric: list[str], k: int = 5, **_: Any) -> Any:
    from sklearn.cluster import KMeans
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("features", preprocessor(categorical, numeric, True)),
            ("model", KMeans(n_clusters=k, n_init=4, random_state=SEED)),
        ]
    )


BATCH_MODELS: dict[str, dict[str, Callable[..., Any]]] = {
    "classification": {"hist_gradient_boosting": _hgb_classifier, "logistic_regression": _logreg},
    "regression": {"hist_gradient_boosting": _hgb_regressor, "ridge": _ridge},
    "clustering": {"kmeans": _kmeans},
}


def kmeans_by_silhouette(
    x_train: pd.DataFrame,
    x_test: pd.DataFrame,
    categorical: list[str],
    numeric: list[str],
    rng: np.random.Generator,
    say: Callable[[str], None],
) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """k-means with the k of K_RANGE whose silhouette (on a training sample) is best; the elbow's inertias."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    scaler = preprocessor(categorical, numeric, True).fit(x_train)
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
