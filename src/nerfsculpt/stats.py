"""Statistics shared by the benchmark's verdict (``finetune compare``) and the evaluation report.

Each function is the definition the paper or the reference's analyses use, written once
(docs/method/reference_method.md §7):

- :func:`bootstrap_mean`: percentile-bootstrap interval of a mean;
- :func:`slope_test`: OLS ``final = a + b * initial``, b's 95 % interval and the p-value of H0: b = 1
  (the paper's §4.2 test, §7.2);
- :func:`paired_summary`: mean, median and the shares of positive and negative per-sample changes (§7.1);
- :func:`wilcoxon_greater`, :func:`sign_test_greater`: one-sided paired tests, zero differences
  dropped (§7.3);
- :func:`rank_consistency`: Spearman and Pearson correlation, top-k and bottom-k overlaps and the std
  ratio of two score vectors of the same samples (§7.6).

Inputs are 1-D arrays of per-sample values; results are plain floats (JSON-ready).

>>> round(slope_test(np.arange(10.0), 0.5 * np.arange(10.0) + 1)["b"], 6)
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
"""Resamples of :func:`bootstrap_mean` by default."""


def bootstrap_mean(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                   confidence: float = 0.95) -> list[float]:
    """Percentile-bootstrap interval (default 95 %) of the mean of ``values`` [S], seeded."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)  # (resamples,)
    tail = (1 - confidence) / 2
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))]


def slope_test(initial: np.ndarray, final: np.ndarray) -> dict[str, float]:
    """OLS ``final = a + b * initial``: b, its 95 % interval and the two-sided p-value of H0: b = 1.

    The interval is ``b +- t(0.975, n - 2) * SE(b)``, the test ``t = (b - 1) / SE(b)`` with n - 2
    degrees of freedom (the paper's §4.2; not the reference's per-seed trend regression). b < 1
    means the samples that started worse gained more.
    """
    from scipy import stats

    fit = stats.linregress(initial, final)
    dof = len(initial) - 2
    t = stats.t.ppf(0.975, dof)
    p_two_sided = 2 * stats.t.sf(abs((fit.slope - 1) / fit.stderr), dof) if fit.stderr > 0 else float(fit.slope == 1)
    return {"b": float(fit.slope), "a": float(fit.intercept),
            "b_ci95": [float(fit.slope - t * fit.stderr), float(fit.slope + t * fit.stderr)],
            "p_b_equals_1": float(p_two_sided), "n": len(initial), "mean_gain": float(np.mean(final - initial))}


def paired_summary(delta: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Per-sample changes ``delta`` [S]: mean (with its bootstrap 95 % interval), median, share > 0 and < 0."""
    delta = np.asarray(delta, dtype=np.float64)
    return {"n": len(delta), "mean": float(delta.mean()), "mean_ci95": bootstrap_mean(delta, seed=seed),
            "median": float(np.median(delta)), "fraction_positive": float((delta > 0).mean()),
            "fraction_negative": float((delta < 0).mean())}


def wilcoxon_greater(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """One-sided Wilcoxon signed-rank test of H1: x > y (paired), zero differences dropped.

    Returns the statistic, the p-value and n (pairs left after dropping ties); p is 1 when no pair
    differs.
    """
    from scipy import stats

    diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    n = int((diff != 0).sum())
    if n == 0:
        return {"statistic": 0.0, "p_value": 1.0, "n": 0}
    result = stats.wilcoxon(diff, zero_method="wilcox", alternative="greater")
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue), "n": n}


def sign_test_greater(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """One-sided exact sign test of H1: x > y more often than not (paired), ties dropped."""
    from scipy.stats import binomtest

    diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    wins, n = int((diff > 0).sum()), int((diff != 0).sum())
    p = binomtest(wins, n, 0.5, alternative="greater").pvalue if n else 1.0
    return {"wins": wins, "n": n, "p_value": float(p)}


def rank_consistency(a: Sequence[float], b: Sequence[float], k: int = 10, pool: int = 50) -> dict[str, float]:
    """How alike two scorings of the same samples rank them (e.g. rewards at psi 0.7 and 0.25).

    Spearman and Pearson correlation; the share of the top-``k`` by ``a`` among the top-``pool`` by
    ``b`` and likewise for the bottom; ``std_ratio`` = std(a) / std(b) (population std, ddof 0).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    order_a, order_b = np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable")  # best first
    top = len(set(order_a[:k]) & set(order_b[:pool])) / k
    bottom = len(set(order_a[::-1][:k]) & set(order_b[::-1][:pool])) / k
    return {"spearman": float(stats.spearmanr(a, b).statistic), "pearson": float(stats.pearsonr(a, b).statistic),
            "top_overlap": top, "bottom_overlap": bottom, "std_ratio": float(a.std() / b.std()), "n": len(a),
            "k": k, "pool": pool}
