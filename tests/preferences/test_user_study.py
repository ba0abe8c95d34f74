"""User-study statistics: the paper's known answer and exact tests derived by hand."""

import math

import pytest

from nerfsculpt.preferences.user_study import PAPER_COUNTS, StudyCounts, cohens_h, format_table, report


def test_paper_table_3():
    r = report(StudyCounts(*PAPER_COUNTS))
    assert r["total"] == 680
    assert [round(r["proportions"][k], 3) for k in ("tuned", "original", "none")] == [0.744, 0.207, 0.049]
    assert r["cohens_h"] == pytest.approx(1.135, abs=5e-4)
    pref = r["preference_excluding_ties"]
    assert pref["n"] == 647 and pref["rate"] == pytest.approx(506 / 647)
    assert pref["ci"][0] < 506 / 647 < pref["ci"][1] and pref["p_value"] < 1e-40
    assert "0.744" in format_table({"all": r})


def _upper_tail(k, n, p):
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


def test_exact_binomial_test_and_clopper_pearson_by_hand():
    r = report(StudyCounts(9, 3, 4))["preference_excluding_ties"]
    # two-sided exact test at p = 0.5 is symmetric: 2 P(X >= 9), X ~ Bin(12, 0.5)
    assert r["p_value"] == pytest.approx(2 * sum(math.comb(12, j) for j in range(9, 13)) / 2**12)
    low, high = r["ci"]
    assert _upper_tail(9, 12, low) == pytest.approx(0.025, abs=1e-6)  # Clopper-Pearson lower bound
    assert 1 - _upper_tail(10, 12, high) == pytest.approx(0.025, abs=1e-6)  # upper: P(X <= 9) = 2.5 %


def test_cohens_h_and_bad_counts():
    assert cohens_h(0.5, 0.5) == 0.0
    assert cohens_h(1.0, 0.0) == pytest.approx(math.pi)
    with pytest.raises(ValueError):
        StudyCounts(0, 0, 0)
    with pytest.raises(ValueError):
        StudyCounts(-1, 2, 0)
    assert "preference_excluding_ties" not in report(StudyCounts(0, 0, 5))
