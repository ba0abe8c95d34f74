"""The truncation-baseline analysis (nerfsculpt.evaluate.truncation) on constructed cases."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nerfsculpt.evaluate.truncation import projection, truncation_baseline

SEEDS = (200000, 200001, 200002)
SMALL = {"depth_resolution": 12, "sigma_resolution": 12}


def test_projection_known_answers():
    m = np.array([1.0, 2.0, -1.0])
    assert projection(2 * m, m) == pytest.approx({"alpha": 2.0, "residual_fraction": 0.0, "cosine": 1.0})
    orthogonal = np.array([2.0, -1.0, 0.0])
    assert projection(orthogonal, m) == pytest.approx({"alpha": 0.0, "residual_fraction": 1.0, "cosine": 0.0})
    assert np.isnan(projection(np.zeros(3), m)["alpha"])


def average_face(G):
    """A generator whose every latent maps to w_avg: the pure slide to the average face."""
    avg = copy.deepcopy(G)
    mapping = avg.mapping
    avg.mapping = lambda z, c, truncation_psi=1.0, truncation_cutoff=None, **kw: mapping(
        z, c, truncation_psi=0.0, truncation_cutoff=None, **kw)
    return avg


def test_a_pure_slide_to_the_average_face_is_caught(tiny_pair):
    before, _ = tiny_pair
    result = truncation_baseline(before, average_face(before), SEEDS, **SMALL)
    for what in ("depth", "sigma"):
        r = result[what]
        assert r["closer_to_original"] == 0.0 and r["l1_to_truncated_mean"] == 0.0
        assert r["alpha"]["mean"] == pytest.approx(1.0) and r["cosine"]["mean"] == pytest.approx(1.0)
        assert r["residual_fraction"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert result["protocol"]["seeds"] == 3 and result["protocol"]["sigma_resolution"] == 12


def test_an_unchanged_generator_stays_with_the_original(tiny_pair):
    before, after = tiny_pair
    same = truncation_baseline(before, before, SEEDS, **SMALL)
    assert same["sigma"]["closer_to_original"] == 1.0 and same["sigma"]["alpha"]["n"] == 0
    moved = truncation_baseline(before, after, SEEDS, **SMALL)
    assert moved["sigma"]["alpha"]["n"] == 3 and 0 <= moved["sigma"]["residual_fraction"]["mean"] <= 1
