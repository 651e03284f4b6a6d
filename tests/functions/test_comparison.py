"""The paired statistics of functions/model_state/comparison.py on synthetic pairs whose truth is known."""

from __future__ import annotations

import random

import pytest

from functions.model_state.comparison import (
    adjusted_rand_index,
    compare_classification,
    compare_clustering,
    compare_outcomes,
    compare_regression,
    mcnemar,
    silhouette,
    t_interval,
)


def test_a_clearly_better_classifier_wins_and_equal_ones_tie() -> None:
    rng = random.Random(1)
    y = [rng.random() < 0.3 for _ in range(2000)]
    good = [min(max((0.8 if t else 0.2) + rng.gauss(0, 0.15), 0.0), 1.0) for t in y]
    poor = [min(max((0.6 if t else 0.4) + rng.gauss(0, 0.25), 0.0), 1.0) for t in y]
    result = compare_classification([int(t) for t in y], good, poor)
    assert result["verdict"].startswith("A is better") and "n=2000" in result["verdict"]
    assert result["accuracy_diff_ci"][0] > 0 and result["mcnemar_p"] < 0.001
    assert result["log_loss_diff"] < 0 and result["log_loss_diff_ci"][1] < 0
    swapped = compare_classification([int(t) for t in y], poor, good)
    assert swapped["verdict"].startswith("B is better")
    same = compare_classification([int(t) for t in y], good, good)
    assert same["verdict"].startswith("no significant difference") and same["only_a_correct"] == 0


def test_equal_models_are_rarely_called_different() -> None:
    """Two equally good, independent regressors: the 95% interval covers 0 in about 95% of samples."""
    rng = random.Random(4)
    covered = 0
    for _ in range(200):
        y = [rng.uniform(300, 3000) for _ in range(100)]
        a = [t + rng.gauss(0, 100) for t in y]
        b = [t + rng.gauss(0, 100) for t in y]
        low, high = compare_regression(y, a, b)["mean_abs_error_diff_ci"]
        covered += low <= 0 <= high
    assert 180 <= covered <= 200


def test_a_better_regressor_wins_with_its_margin() -> None:
    rng = random.Random(2)
    y = [rng.uniform(300, 3000) for _ in range(500)]
    a = [t + rng.gauss(0, 50) for t in y]
    b = [t + rng.gauss(0, 200) for t in y]
    result = compare_regression(y, a, b)
    assert result["verdict"].startswith("A is better") and result["mae_a"] < result["mae_b"]
    assert result["mean_abs_error_diff_ci"][0] < result["mae_a"] - result["mae_b"] < result["mean_abs_error_diff_ci"][1]


def test_too_few_pairs_give_no_verdict() -> None:
    assert compare_regression([1.0] * 5, [1.0] * 5, [2.0] * 5)["verdict"].startswith("not enough paired events")
    assert compare_outcomes("classification", {1: [1, 0.9]}, {2: [1, 0.8]})["n"] == 0


def test_statistics_against_reference_values() -> None:
    assert mcnemar(5, 5) == pytest.approx(1.0)
    assert mcnemar(0, 10) == pytest.approx(2 * 0.5**10)
    t = t_interval([0.1, -0.2, 0.3, 0.05, -0.1, 0.2])
    assert t["low"] < t["mean"] < t["high"]
    assert adjusted_rand_index([0, 1, 2, 0, 1, 2], [2, 0, 1, 2, 0, 1]) == pytest.approx(1.0)
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(3)
    a = [rng.randrange(4) for _ in range(300)]
    b = [x if rng.random() < 0.7 else rng.randrange(4) for x in a]
    assert adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b))
    points = [[rng.gauss(c * 3, 1), rng.gauss(-c, 1)] for c in a]
    import numpy as np

    x = np.asarray(points)
    scaled = (x - x.mean(axis=0)) / x.std(axis=0)
    assert silhouette(points, a) == pytest.approx(metrics.silhouette_score(scaled, a))


def test_clusterings_compared_on_the_same_events() -> None:
    rng = random.Random(5)
    truth = [rng.randrange(3) for _ in range(300)]
    points = [[rng.gauss(c * 5, 1), rng.gauss(c * 5, 1)] for c in truth]
    renamed = [{0: 7, 1: 8, 2: 9}[c] for c in truth]
    assert compare_clustering(truth, renamed, points)["verdict"].startswith("the same clustering")
    noisy = [rng.randrange(3) for _ in truth]
    result = compare_clustering(truth, noisy, points)
    assert (
        result["verdict"].startswith("different clusterings")
        and "A's clusters are better separated" in result["verdict"]
    )
    assert result["silhouette_a"] > result["silhouette_b"]
