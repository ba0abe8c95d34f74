"""Known answers of the shared statistics (nerfsculpt.stats), derived independently of the code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from nerfsculpt.stats import (
    bootstrap_mean,
    paired_summary,
    rank_consistency,
    sign_test_greater,
    slope_test,
    wilcoxon_greater,
)


def test_slope_test_matches_the_textbook_formulas():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 40)
    y = 2.0 + 0.6 * x + rng.normal(0, 0.3, 40)
    fit = slope_test(x, y)
    # OLS by hand: b = Sxy / Sxx, SE(b) = sqrt(SSE / (n - 2) / Sxx)
    sxx = ((x - x.mean()) ** 2).sum()
    b = ((x - x.mean()) * (y - y.mean())).sum() / sxx
    a = y.mean() - b * x.mean()
    se = math.sqrt(((y - a - b * x) ** 2).sum() / 38 / sxx)
    t = scipy_stats.t.ppf(0.975, 38)
    assert fit["b"] == pytest.approx(b) and fit["a"] == pytest.approx(a)
    assert fit["b_ci95"] == pytest.approx([b - t * se, b + t * se])
    assert fit["p_b_equals_1"] == pytest.approx(2 * scipy_stats.t.sf(abs(b - 1) / se, 38))
    assert fit["mean_gain"] == pytest.approx((y - x).mean()) and fit["n"] == 40
    assert slope_test(x, x + 0.1)["p_b_equals_1"] == 1.0  # an exact b = 1


def test_wilcoxon_one_sided_exact_small_case():
    # differences 1, 2, 3, -0.5 and a tie (dropped): |d| ranks 2, 3, 4 positive and 1 negative, W+ = 9.
    # Of the 2^4 sign patterns, W+ >= 9 for {2,3,4} (9) and {1,2,3,4} (10): p = 2 / 16.
    result = wilcoxon_greater(np.array([1.0, 2.0, 3.0, -0.5, 0.0]), np.zeros(5))
    assert result == {"statistic": 9.0, "p_value": pytest.approx(0.125), "n": 4}
    assert wilcoxon_greater(np.ones(3), np.ones(3)) == {"statistic": 0.0, "p_value": 1.0, "n": 0}


def test_sign_test():
    # 3 wins of 4 decided pairs: P(X >= 3 | n = 4, 1/2) = (4 + 1) / 16
    result = sign_test_greater(np.array([1.0, 2.0, 3.0, -1.0, 5.0]), np.array([0.0, 0.0, 0.0, 0.0, 5.0]))
    assert result == {"wins": 3, "n": 4, "p_value": pytest.approx(5 / 16)}


def test_rank_consistency_known_orders():
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    same = rank_consistency(a, 2 * a, k=2, pool=2)
    assert same["spearman"] == pytest.approx(1.0) and same["top_overlap"] == 1.0 and same["bottom_overlap"] == 1.0
    assert same["std_ratio"] == pytest.approx(0.5)
    reverse = rank_consistency(a, -a, k=2, pool=2)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["top_overlap"] == 0.0
    assert rank_consistency(a, -a, k=2, pool=5)["top_overlap"] == 1.0  # everything is in a pool of all


def test_paired_summary_and_bootstrap():
    delta = np.array([1.0, -1.0, 2.0, 0.0])
    summary = paired_summary(delta)
    assert summary["mean"] == 0.5 and summary["median"] == 0.5
    assert summary["fraction_positive"] == 0.5 and summary["fraction_negative"] == 0.25
    low, high = summary["mean_ci95"]
    assert -1.0 <= low < 0.5 < high <= 2.0
    assert bootstrap_mean(np.full(5, 2.0)) == [2.0, 2.0]
    # the interval narrows like 1 / sqrt(n)
    rng = np.random.default_rng(0)
    wide, narrow = (np.diff(bootstrap_mean(rng.normal(0, 1, n))).item() for n in (100, 1600))
    assert 2.5 < wide / narrow < 5.5
