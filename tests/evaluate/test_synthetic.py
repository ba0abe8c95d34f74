"""The oracle's before/after table and the simulated A/B study (nerfsculpt.evaluate.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from nerfsculpt.evaluate.synthetic import oracle_comparison, simulated_user_study
from nerfsculpt.synthetic.oracle import GeometryOracle

ORACLE = GeometryOracle()


def scores(rows):
    return {300000 + i: np.asarray(r, dtype=np.float64) for i, r in enumerate(rows)}


def test_per_defect_table_signs_and_means():
    before = scores([[1.0, 0, 0, 0, 0], [2.0, 0, 0, 0, 1.0], [0.0, 0, 0, 0, 0]])
    after = scores([[0.5, 0, 0, 0, 0], [1.0, 0, 0, 0, 2.0], [0.0, 0, 0, 0, 0]])
    table = {row["measure"]: row for row in oracle_comparison(before, after, ORACLE)["rows"]}
    assert table["bumps"]["change"] == pytest.approx(-0.5) and table["bumps"]["better"] == pytest.approx(2 / 3)
    assert table["asymmetry"]["worse"] == pytest.approx(1 / 3) and not table["asymmetry"]["higher_is_better"]
    # quality = -sum(scores): before -1, -3, 0; after -0.5, -3, 0 -> change +0.5, 0, 0
    assert table["quality"]["before"] == pytest.approx(-4 / 3) and table["quality"]["change"] == pytest.approx(0.5 / 3)
    assert table["quality"]["better"] == pytest.approx(1 / 3) and table["quality"]["worse"] == 0


def test_a_noiseless_panel_always_picks_the_better_geometry():
    rng = np.random.default_rng(0)
    before = scores(rng.uniform(1, 2, size=(10, 5)))
    after = {s: v - 0.5 for s, v in before.items()}  # every defect smaller: better everywhere
    result = simulated_user_study(before, after, ORACLE, respondents=3, temperature=0.0, cant_decide=0.0)
    assert result["counts"] == {"tuned": 30, "original": 0, "none": 0}
    swapped = simulated_user_study(after, before, ORACLE, respondents=3, temperature=0.0, cant_decide=0.0)
    assert swapped["counts"] == {"tuned": 0, "original": 30, "none": 0}
    assert result["cohens_h"] == pytest.approx(np.pi)  # 2 asin(1) - 2 asin(0)
    assert result["preference_excluding_ties"]["p_value"] < 1e-8 and result["protocol"]["pairs"] == 10


def test_noise_and_no_preference_answers():
    rng = np.random.default_rng(1)
    before = scores(rng.uniform(1, 2, size=(40, 5)))
    after = {s: v - 0.02 for s, v in before.items()}  # barely better: noisy annotators split
    result = simulated_user_study(before, after, ORACLE, temperature=1.0, cant_decide=0.2, seed=3)
    counts = result["counts"]
    assert sum(counts.values()) == 40 * 17 and counts["none"] > 0
    assert 0.3 < counts["tuned"] / (counts["tuned"] + counts["original"]) < 0.75
