"""Silhouette scores and projections of embeddings (nerfsculpt.evaluate.embedding)."""

from __future__ import annotations

import numpy as np
import pytest

from nerfsculpt.evaluate.embedding import embedding_structure, project_2d, silhouette
from nerfsculpt.evaluate.rewards import Scorer


def test_silhouette_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (15, 4)), rng.normal(2, 1, (10, 4)), rng.normal(-3, 1, (1, 4))])
    labels = [0] * 15 + [1] * 10 + [2]
    assert silhouette(points, labels) == pytest.approx(metrics.silhouette_score(points, labels), abs=1e-9)


def test_silhouette_known_answer():
    # two pairs on a line: {0, 1} and {10, 11}; point 0: a = 1, b = (10 + 11) / 2 = 10.5 -> s = 9.5 / 10.5
    points = np.array([[0.0], [1.0], [10.0], [11.0]])
    s0, s1 = 9.5 / 10.5, (9.5 - 1) / 9.5  # point 1: a = 1, b = (9 + 10) / 2 = 9.5
    assert silhouette(points, ["a", "a", "b", "b"]) == pytest.approx((s0 + s1) / 2)


def test_projection_keeps_the_largest_spread():
    rng = np.random.default_rng(1)
    points = np.zeros((50, 5))
    points[:, 3] = rng.normal(0, 10, 50)  # almost all the variance on one axis
    points[:, 1] = rng.normal(0, 0.1, 50)
    xy, method = project_2d(points)
    assert xy.shape == (50, 2)
    if method == "pca":
        assert abs(np.corrcoef(xy[:, 0], points[:, 3])[0, 1]) > 0.999


def test_structure_of_a_tiny_pair(tiny_pair, tiny_bundle):
    before, after = tiny_pair
    result = embedding_structure(Scorer(tiny_bundle), before, after, seeds=(200000, 200001, 200002))
    assert -1 <= result["regimes"]["silhouette"] <= 1 and len(result["models"]["xy"]) == 6
    assert result["regimes"]["labels"][:3] == ["psi 0.25"] * 3
