"""Reward deltas, truncation sweep and rank consistency (nerfsculpt.evaluate.rewards) on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from nerfsculpt.evaluate.rewards import Scorer, rank_consistency_across_psi, reward_deltas, truncation_sweep
from nerfsculpt.reward.scoring import score_seeds

SEEDS = (200000, 200001, 200002, 200003, 200004, 200005)


def test_deltas_are_the_difference_of_independent_scorings(tiny_pair, tiny_bundle):
    before, after = tiny_pair
    result = reward_deltas(Scorer(tiny_bundle), before, after, seeds=SEEDS, psi=0.7)
    expected = (score_seeds(tiny_bundle, after, SEEDS, psi=0.7) - score_seeds(tiny_bundle, before, SEEDS, psi=0.7))
    got = np.array([row["delta"] for row in result["per_seed"]])
    np.testing.assert_allclose(got, expected.double().numpy(), rtol=1e-5, atol=1e-5)
    assert result["delta"]["mean"] == pytest.approx(got.mean())
    assert result["delta"]["n"] == len(SEEDS) and result["embedding_distance"]["mean"] > 0


def test_a_generator_against_itself_changes_nothing(tiny_pair, tiny_bundle):
    before, _ = tiny_pair
    result = reward_deltas(Scorer(tiny_bundle), before, before, seeds=SEEDS[:3])
    assert result["delta"]["mean"] == 0 and result["delta"]["fraction_positive"] == 0
    assert result["embedding_distance"]["mean"] == 0


def test_sweep_uses_the_population_std_and_reuses_scorings(tiny_pair, tiny_bundle):
    _, after = tiny_pair
    scorer = Scorer(tiny_bundle)
    rows = truncation_sweep(scorer, after, seeds=SEEDS[:4], psis=(0.0, 1.0))
    at_one = score_seeds(tiny_bundle, after, SEEDS[:4], psi=1.0).double().numpy()
    assert rows[1]["psi"] == 1.0 and rows[1]["mean"] == pytest.approx(at_one.mean(), rel=1e-5)
    assert rows[1]["std"] == pytest.approx(at_one.std(ddof=0), rel=1e-4, abs=1e-6)
    assert rows[0]["std"] == pytest.approx(0.0, abs=1e-6)  # psi 0: every latent is w_avg, one sample
    assert len(scorer._done) == 2
    consistency = rank_consistency_across_psi(scorer, after, seeds=SEEDS[:4], psi=1.0, other_psi=1.0)
    assert consistency["spearman"] == pytest.approx(1.0) and consistency["top_overlap"] == 1.0
