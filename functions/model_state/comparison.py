"""A fair comparison of two live models of a domain: paired statistics on the same events.

Both models learn the same log (docs/adr/0031), test-then-train, so at every log position each made its answer
before learning that event, from the same past. Their learners keep each scored answer by log position
(`model:<name>:outcomes`, functions/model_state/ab_outcomes.py); a comparison takes the positions both hold and
tests the paired differences, which removes the event-to-event variation two unpaired metrics would carry:

- classification (tfd): McNemar's test on correct/incorrect at the 0.5 threshold (exact binomial below 25
  discordant pairs, chi-square with continuity correction above), the accuracy difference with a paired Wald
  interval, and the paired log-loss differences with a t interval;
- regression (eta): the paired absolute-error differences with a t interval;
- clustering (ecci): no truth to score, so the agreement of the two clusterings (adjusted Rand index) and each
  one's silhouette on the same events (standardized features).

Each result ends with a plain verdict that names the sample size. Differences are A minus B; for errors and log
loss lower is better.

    >>> r = compare_regression([10.0] * 50, [11.0, 12.0] * 25, [14.0, 13.0] * 25)
    >>> r["n"], r["mean_abs_error_diff"], r["verdict"]
    (50, -2.0, 'A is better: its absolute error is lower by 2 on average (95% CI 1.71 to 2.29, p < 0.001, n=50 paired events)')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MIN_PAIRS = 30  # below this, no verdict: too few paired events
CONFIDENCE = 0.95
LOG_LOSS_CLIP = 1e-12


# --- the tests ----------------------------------------------------------------------------------------------------------
def mcnemar(b: int, c: int) -> float:
    """Two-sided p-value of McNemar's test: b events only A got right, c only B. Exact (binomial) below 25
    discordant pairs, else chi-square with continuity correction.

    >>> mcnemar(0, 0)
    1.0
    >>> round(mcnemar(2, 10), 4)
    0.0386
    >>> round(mcnemar(40, 20), 4)
    0.0142
    """
    n = b + c
    if n == 0:
        return 1.0
    if n < 25:
        from scipy.stats import binomtest

        return float(binomtest(min(b, c), n, 0.5).pvalue)
    from scipy.stats import chi2

    statistic = (abs(b - c) - 1) ** 2 / n
    return float(chi2.sf(statistic, 1))


def t_interval(diffs: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean of paired differences, its t confidence interval and the two-sided p-value of mean 0.

    >>> t = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> t["mean"], round(t["low"], 3), round(t["high"], 3), round(t["p"], 4)
    (3.0, 1.037, 4.963, 0.0132)
    >>> t_interval([0.5] * 10)["p"]
    0.0
    """
    from scipy.stats import t as student

    n = len(diffs)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "p": 1.0, "se": math.nan}
    mean = math.fsum(diffs) / n
    if n < 2:
        return {"mean": mean, "low": -math.inf, "high": math.inf, "p": 1.0, "se": math.inf}
    var = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1)
    se = math.sqrt(var / n)
    if se == 0:
        return {"mean": mean, "low": mean, "high": mean, "p": 0.0 if mean != 0 else 1.0, "se": 0.0}
    q = float(student.ppf(0.5 + confidence / 2, n - 1))
    p = float(2 * student.sf(abs(mean / se), n - 1))
    return {"mean": mean, "low": mean - q * se, "high": mean + q * se, "p": p, "se": se}


def adjusted_rand_index(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Agreement of two clusterings of the same items: 1 identical (up to renaming), ~0 as by chance.

    >>> adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7])
    1.0
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 6)
    -0.5
    """
    n = len(a)
    if n < 2:
        return 1.0
    table: dict[tuple[Any, Any], int] = {}
    rows: dict[Any, int] = {}
    cols: dict[Any, int] = {}
    for x, y in zip(a, b, strict=True):
        table[(x, y)] = table.get((x, y), 0) + 1
        rows[x] = rows.get(x, 0) + 1
        cols[y] = cols.get(y, 0) + 1

    def pairs(k: int) -> float:
        return k * (k - 1) / 2

    index = sum(pairs(v) for v in table.values())
    sum_rows = sum(pairs(v) for v in rows.values())
    sum_cols = sum(pairs(v) for v in cols.values())
    expected = sum_rows * sum_cols / pairs(n)
    top = (sum_rows + sum_cols) / 2
    if top == expected:
        return 1.0
    return (index - expected) / (top - expected)


def silhouette(points: Sequence[Sequence[float]], labels: Sequence[Any]) -> float | None:
    """Mean silhouette of a clustering (Euclidean, features standardized over the sample); None with fewer than
    two clusters.

    >>> round(silhouette([[0, 0], [0, 1], [10, 10], [10, 11]], [0, 0, 1, 1]), 3)
    0.929
    >>> silhouette([[0, 0], [1, 1]], [3, 3]) is None
    True
    """
    import numpy as np

    x = np.asarray(points, dtype=float)
    y = np.asarray([str(v) for v in labels])
    clusters = np.unique(y)
    if len(clusters) < 2 or len(x) < 3:
        return None
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    scores = np.zeros(len(x))
    for i in range(len(x)):
        own = y == y[i]
        if own.sum() <= 1:
            continue  # a singleton's silhouette is 0
        a = d[i, own].sum() / (own.sum() - 1)
        b = min(d[i, y == c].mean() for c in clusters if c != y[i])
        scores[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(scores.mean())


# --- per task ----------------------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.2f} pts"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p={p:.3f}"


def _few(n: int) -> str | None:
    if n < MIN_PAIRS:
        return f"not enough paired events yet (n={n}, at least {MIN_PAIRS} needed)"
    return None


def compare_classification(
    y: Sequence[int], pa: Sequence[float], pb: Sequence[float], threshold: float = 0.5
) -> dict[str, Any]:
    """A against B on the same labelled events (y 0/1, pa/pb the fraud probabilities).

    >>> y = [1, 0] * 50
    >>> r = compare_classification(y, [0.9, 0.1] * 50, [0.6, 0.2] * 25 + [0.4, 0.6] * 25)
    >>> r["n"], r["only_a_correct"], r["only_b_correct"], r["verdict"].split(":")[0]
    (100, 50, 0, 'A is better')
    """
    n = len(y)
    right_a = [(p >= threshold) == bool(t) for t, p in zip(y, pa, strict=True)]
    right_b = [(p >= threshold) == bool(t) for t, p in zip(y, pb, strict=True)]
    b = sum(1 for ra, rb in zip(right_a, right_b, strict=True) if ra and not rb)
    c = sum(1 for ra, rb in zip(right_a, right_b, strict=True) if rb and not ra)
    p_value = mcnemar(b, c)
    diff = (b - c) / n if n else 0.0
    se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n if n else 0.0
    z = 1.959963984540054
    ll = [_log_loss(t, qa) - _log_loss(t, qb) for t, qa, qb in zip(y, pa, pb, strict=True)]
    ll_t = t_interval(ll)
    out: dict[str, Any] = {
        "task": "classification",
        "n": n,
        "accuracy_a": sum(right_a) / n if n else None,
        "accuracy_b": sum(right_b) / n if n else None,
        "accuracy_diff": diff,
        "accuracy_diff_ci": [diff - z * se, diff + z * se],
        "only_a_correct": b,
        "only_b_correct": c,
        "mcnemar_p": p_value,
        "log_loss_a": math.fsum(_log_loss(t, q) for t, q in zip(y, pa, strict=True)) / n if n else None,
        "log_loss_b": math.fsum(_log_loss(t, q) for t, q in zip(y, pb, strict=True)) / n if n else None,
        "log_loss_diff": ll_t["mean"],
        "log_loss_diff_ci": [ll_t["low"], ll_t["high"]],
        "log_loss_p": ll_t["p"],
    }
    few = _few(n)
    if few:
        out["verdict"] = few
    elif p_value < 1 - CONFIDENCE:
        better = "A" if b > c else "B"
        out["verdict"] = (
            f"{better} is better: it is right on {max(b, c)} events the other gets wrong, against "
            f"{min(b, c)} (accuracy {'+' if diff >= 0 else ''}{_pct(diff)} for A, 95% CI {_pct(diff - z * se)} "
            f"to {_pct(diff + z * se)}, McNemar {_p(p_value)}, n={n} paired events)"
        )
    elif ll_t["p"] < 1 - CONFIDENCE:
        better = "A" if ll_t["mean"] < 0 else "B"
        out["verdict"] = (
            f"{better} is better calibrated: same decisions (McNemar {_p(p_value)}) but log loss lower by "
            f"{abs(ll_t['mean']):.4f} (95% CI {ll_t['low']:.4f} to {ll_t['high']:.4f}, {_p(ll_t['p'])}, n={n} paired events)"
        )
    else:
        out["verdict"] = (
            f"no significant difference: {b} events only A gets right, {c} only B (McNemar {_p(p_value)}); "
            f"log loss difference {ll_t['mean']:.4f} (95% CI {ll_t['low']:.4f} to {ll_t['high']:.4f}), n={n} paired events"
        )
    return out


def _log_loss(y: Any, p: float) -> float:
    p_true = p if y else 1.0 - p
    return -math.log(max(p_true, LOG_LOSS_CLIP))


def compare_regression(y: Sequence[float], pa: Sequence[float], pb: Sequence[float]) -> dict[str, Any]:
    """A against B on the same events: paired absolute-error differences (A minus B) with a t interval."""
    n = len(y)
    ea = [abs(p - t) for t, p in zip(y, pa, strict=True)]
    eb = [abs(p - t) for t, p in zip(y, pb, strict=True)]
    t = t_interval([a - b for a, b in zip(ea, eb, strict=True)])
    out: dict[str, Any] = {
        "task": "regression",
        "n": n,
        "mae_a": math.fsum(ea) / n if n else None,
        "mae_b": math.fsum(eb) / n if n else None,
        "mean_abs_error_diff": t["mean"],
        "mean_abs_error_diff_ci": [t["low"], t["high"]],
        "p": t["p"],
    }
    few = _few(n)
    if few:
        out["verdict"] = few
    elif t["p"] < 1 - CONFIDENCE:
        better = "A" if t["mean"] < 0 else "B"
        lo, hi = sorted((abs(t["low"]), abs(t["high"])))
        out["verdict"] = (
            f"{better} is better: its absolute error is lower by {abs(t['mean']):.3g} on average "
            f"(95% CI {lo:.3g} to {hi:.3g}, {_p(t['p'])}, n={n} paired events)"
        )
    else:
        out["verdict"] = (
            f"no significant difference: mean absolute error difference {t['mean']:.3g} "
            f"(95% CI {t['low']:.3g} to {t['high']:.3g}, {_p(t['p'])}, n={n} paired events)"
        )
    return out


def compare_clustering(ca: Sequence[Any], cb: Sequence[Any], points: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Two clusterings of the same events: their agreement (ARI) and each one's silhouette on those events.

    >>> r = compare_clustering([0, 0, 1, 1] * 10, [1, 1, 0, 0] * 10, [[0, 0], [0, 1], [9, 9], [9, 8]] * 10)
    >>> r["ari"], r["verdict"].split(":")[0]
    (1.0, 'the same clustering')
    """
    n = len(ca)
    ari = adjusted_rand_index(ca, cb)
    sa, sb = silhouette(points, ca), silhouette(points, cb)
    out: dict[str, Any] = {
        "task": "clustering",
        "n": n,
        "ari": ari,
        "silhouette_a": sa,
        "silhouette_b": sb,
        "clusters_a": len(set(ca)),
        "clusters_b": len(set(cb)),
    }
    few = _few(n)
    if few:
        out["verdict"] = few
        return out
    sil = f"silhouette A {_num(sa)}, B {_num(sb)}"
    if ari >= 0.9:
        out["verdict"] = f"the same clustering: ARI {ari:.3f} ({sil}, n={n} paired events)"
    else:
        better = (
            ""
            if sa is None or sb is None or abs(sa - sb) < 0.02
            else ("; A's clusters are better separated" if sa > sb else "; B's clusters are better separated")
        )
        out["verdict"] = (
            f"different clusterings: ARI {ari:.3f}{better} ({sil}, {len(set(ca))} against "
            f"{len(set(cb))} clusters, n={n} paired events)"
        )
    return out


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def compare_outcomes(task: str, a: Mapping[int, Sequence[Any]], b: Mapping[int, Sequence[Any]]) -> dict[str, Any]:
    """Compare two models' stored outcomes (seq -> [truth, answer] or [cluster, features]) on the log positions
    both hold."""
    from functions.model_state.task_scores import scores_of  # it builds on this module's tests

    common = sorted(set(a) & set(b))
    out = scores_of(task).compare(a, b, common)
    out["first_seq"] = common[0] if common else None
    out["last_seq"] = common[-1] if common else None
    return out
