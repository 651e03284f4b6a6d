"""The figures of a batch study, as PNG bytes: scikit-learn's display classes drawn with matplotlib (Agg).

YellowBrick 1.5 does not work with scikit-learn 1.9 (its visualizers reject plain estimators), so every figure is
made with scikit-learn's own displays (RocCurveDisplay, PrecisionRecallDisplay, CalibrationDisplay,
ConfusionMatrixDisplay, PredictionErrorDisplay, LearningCurveDisplay) or plain matplotlib:

- classification (tfd): roc, precision_recall and calibration (batch and River's progressive answers on the same
  test events), confusion_matrix (threshold 0.5), class_balance (train and test), permutation_importance (ROC AUC
  drop on a test sample), learning_curve (time-ordered folds of the training part);
- regression (eta): residuals and prediction_error (batch and River), both in minutes;
- clustering (ecci): elbow (inertia and silhouette per k), silhouette (per-event silhouettes by cluster), and
  intercluster_distance (the centres placed by MDS, bubbles sized by cluster size).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

FIGURES: dict[str, tuple[str, ...]] = {
    "classification": (
        "roc",
        "precision_recall",
        "calibration",
        "confusion_matrix",
        "class_balance",
        "permutation_importance",
        "learning_curve",
    ),
    "regression": ("residuals", "prediction_error"),
    "clustering": ("elbow", "silhouette", "intercluster_distance"),
}
SAMPLE = 2000
LEARNING_ROWS = 20_000  # the learning curve refits the model 3 x 3 times: on at most this many training rows


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _figure(width: float = 6.0, height: float = 4.5, ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height))


def draw(task: str, context: dict[str, Any]) -> dict[str, bytes]:
    """Every figure of `task` ({name: PNG bytes}) from the study's context (functions/batch/study.py)."""
    drawers: dict[str, Callable[[dict[str, Any]], bytes]] = {name: globals()[f"_{name}"] for name in FIGURES[task]}
    return {name: drawer(context) for name, drawer in drawers.items()}


# --- classification -----------------------------------------------------------------------------------------------
def _with_online(ctx: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    out = [("batch", np.asarray(ctx["answers"], dtype=float))]
    if ctx.get("online_progressive") is not None:
        out.append(("River progressive", np.asarray(ctx["online_progressive"], dtype=float)))
    return out


def _roc(ctx: dict[str, Any]) -> bytes:
    from sklearn.metrics import RocCurveDisplay

    fig, ax = _figure()
    for name, answers in _with_online(ctx):
        RocCurveDisplay.from_predictions(ctx["y_test"], answers, name=name, ax=ax)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_title("ROC on the test window")
    return _png(fig)


def _precision_recall(ctx: dict[str, Any]) -> bytes:
    from sklearn.metrics import PrecisionRecallDisplay

    fig, ax = _figure()
    for name, answers in _with_online(ctx):
        PrecisionRecallDisplay.from_predictions(ctx["y_test"], answers, name=name, ax=ax)
    ax.set_title("Precision-recall on the test window")
    return _png(fig)


def _calibration(ctx: dict[str, Any]) -> bytes:
    from sklearn.calibration import CalibrationDisplay

    fig, ax = _figure()
    for name, answers in _with_online(ctx):
        CalibrationDisplay.from_predictions(
            ctx["y_test"], np.clip(answers, 0, 1), n_bins=10, strategy="quantile", name=name, ax=ax
        )
    ax.set_title("Calibration (quantile bins)")
    return _png(fig)


def _confusion_matrix(ctx: dict[str, Any]) -> bytes:
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = _figure(5, 4.5)
    ConfusionMatrixDisplay.from_predictions(
        ctx["y_test"], np.asarray(ctx["answers"]) >= 0.5, ax=ax, display_labels=["legit", "fraud"], colorbar=False
    )
    ax.set_title("Confusion matrix at 0.5 (batch)")
    return _png(fig)


def _class_balance(ctx: dict[str, Any]) -> bytes:
    fig, ax = _figure(5, 4)
    parts = [("train", np.asarray(ctx["y_train"])), ("test", np.asarray(ctx["y_test"]))]
    width = 0.38
    for i, (label, cls) in enumerate(((False, "legit"), (True, "fraud"))):
        counts = [int((y == label).sum()) for _part, y in parts]
        bars = ax.bar(np.arange(2) + (i - 0.5) * width, counts, width, label=cls)
        ax.bar_label(
            bars,
            labels=[f"{c} ({c / max(1, len(y)):.1%})" for c, (_p, y) in zip(counts, parts, strict=True)],
            fontsize=8,
        )
    ax.set_xticks(np.arange(2), [p for p, _y in parts])
    ax.set_yscale("log")
    ax.set_ylabel("transactions (log scale)")
    ax.set_title("Class balance")
    ax.legend()
    return _png(fig)


def _permutation_importance(ctx: dict[str, Any]) -> bytes:
    from sklearn.inspection import permutation_importance

    x_test, y_test = ctx["x_test"], np.asarray(ctx["y_test"])
    rows = np.random.default_rng(0).choice(len(x_test), min(SAMPLE, len(x_test)), replace=False)
    if len(set(y_test[rows].tolist())) < 2:
        rows = np.arange(len(x_test))
    result = permutation_importance(
        ctx["pipeline"], x_test.iloc[rows], y_test[rows], scoring="roc_auc", n_repeats=3, random_state=0
    )
    order = np.argsort(result.importances_mean)
    fig, ax = _figure(6, 5)
    ax.barh(np.asarray(x_test.columns)[order], result.importances_mean[order], xerr=result.importances_std[order])
    ax.set_xlabel("ROC AUC drop when the feature is shuffled")
    ax.set_title("Permutation feature importance (test sample)")
    return _png(fig)


def _learning_curve(ctx: dict[str, Any]) -> bytes:
    from sklearn.base import clone
    from sklearn.model_selection import LearningCurveDisplay, TimeSeriesSplit

    x_train, y_train = ctx["x_train"], np.asarray(ctx["y_train"])
    x_train, y_train = x_train.tail(LEARNING_ROWS), y_train[-LEARNING_ROWS:]
    fig, ax = _figure()
    LearningCurveDisplay.from_estimator(
        clone(ctx["pipeline"]),
        x_train,
        y_train,
        cv=TimeSeriesSplit(3),
        train_sizes=np.linspace(0.3, 1.0, 3),
        scoring="roc_auc",
        ax=ax,
        score_name="ROC AUC",
        error_score=np.nan,
    )
    ax.set_title("Learning curve (time-ordered folds)")
    return _png(fig)


# --- regression ---------------------------------------------------------------------------------------------------
def _prediction_panels(ctx: dict[str, Any], kind: str, title: str) -> bytes:
    from sklearn.metrics import PredictionErrorDisplay

    panels = [("batch", np.asarray(ctx["answers"], dtype=float))]
    if ctx.get("online_progressive") is not None:
        panels.append(("River progressive", np.asarray(ctx["online_progressive"], dtype=float)))
    fig, axes = _figure(5.5 * len(panels), 4.5, ncols=len(panels))
    axes = np.atleast_1d(axes)
    y = np.asarray(ctx["y_test"], dtype=float) / 60
    for ax, (name, answers) in zip(axes, panels, strict=True):
        PredictionErrorDisplay.from_predictions(
            y, answers / 60, kind=kind, ax=ax, subsample=SAMPLE, random_state=0, scatter_kwargs={"alpha": 0.3, "s": 6}
        )
        ax.set_title(f"{title}: {name} (minutes)")
    return _png(fig)


def _residuals(ctx: dict[str, Any]) -> bytes:
    return _prediction_panels(ctx, "residual_vs_predicted", "Residuals")


def _prediction_error(ctx: dict[str, Any]) -> bytes:
    return _prediction_panels(ctx, "actual_vs_predicted", "Prediction error")


# --- clustering ---------------------------------------------------------------------------------------------------
def _elbow(ctx: dict[str, Any]) -> bytes:
    search = ctx["k_search"]
    fig, ax = _figure()
    ax.plot(search["ks"], search["inertia"], marker="o", label="inertia")
    ax.axvline(search["k"], linestyle=":", color="grey")
    ax.set_xlabel("k")
    ax.set_ylabel("inertia (training part)")
    right = ax.twinx()
    right.plot(search["ks"], search["silhouette"], marker="s", color="tab:orange", label="silhouette")
    right.set_ylabel("silhouette (training sample)")
    ax.set_title(f"Elbow and silhouette per k (chosen k={search['k']})")
    return _png(fig)


def _silhouette(ctx: dict[str, Any]) -> bytes:
    from sklearn.metrics import silhouette_samples

    scaled, labels = ctx["scaled_test"], np.asarray(ctx["labels"])
    rows = np.random.default_rng(0).choice(len(scaled), min(SAMPLE, len(scaled)), replace=False)
    values = silhouette_samples(scaled[rows], labels[rows])
    fig, ax = _figure(6, 5)
    lower = 0
    for cluster in sorted(set(labels[rows].tolist())):
        mine = np.sort(values[labels[rows] == cluster])
        ax.fill_betweenx(np.arange(lower, lower + len(mine)), 0, mine, alpha=0.7)
        ax.text(-0.05, lower + len(mine) / 2, str(cluster))
        lower += len(mine) + 10
    ax.axvline(float(values.mean()), color="red", linestyle="--", label=f"mean {values.mean():.3f}")
    ax.set_xlabel("silhouette")
    ax.set_yticks([])
    ax.set_title("Silhouette per test event, by cluster")
    ax.legend()
    return _png(fig)


def _intercluster_distance(ctx: dict[str, Any]) -> bytes:
    from sklearn.manifold import MDS

    kmeans = ctx["pipeline"].named_steps["model"]
    centers = np.asarray(kmeans.cluster_centers_)
    sizes = np.bincount(np.asarray(ctx["labels"]), minlength=len(centers))
    if len(centers) > 2:
        placed = MDS(n_components=2, random_state=0, n_init=4, init="random").fit_transform(centers)
    else:
        placed = np.column_stack([np.linalg.norm(centers - centers[0], axis=1), np.zeros(len(centers))])
    fig, ax = _figure(6, 5)
    ax.scatter(placed[:, 0], placed[:, 1], s=200 + 3000 * sizes / max(1, sizes.sum()), alpha=0.5)
    for i, (x, y) in enumerate(placed):
        ax.annotate(f"{i} ({sizes[i]})", (x, y), ha="center", va="center")
    ax.set_title("Intercluster distance map (MDS of the centres)")
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)
