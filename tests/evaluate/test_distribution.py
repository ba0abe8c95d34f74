"""FID and KID maths against closed forms and independent computations (nerfsculpt.evaluate.distribution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.evaluate.distribution import (
    FeatureStatistics,
    file_sha256,
    frechet_distance,
    kernel_inception_distance,
    load_feature_extractor,
)


def stats(mean, covariance, n=10):
    return FeatureStatistics(np.asarray(mean, float), np.asarray(covariance, float), n)


def test_fid_of_identical_sets_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 16))
    s = FeatureStatistics.of(features)
    assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_two_gaussians_is_the_closed_form():
    # commuting covariances Q diag(a) Q^T and Q diag(b) Q^T: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (a + b - 2 sqrt(ab))
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))
    a, b = np.array([1.0, 2.0, 0.5, 3.0, 0.1, 1.5]), np.array([2.0, 0.5, 0.5, 1.0, 0.4, 1.5])
    mu1, mu2 = np.arange(6.0), np.arange(6.0) + np.array([1.0, 0, 0, -2.0, 0, 0])
    expected = 1.0 + 4.0 + (a + b - 2 * np.sqrt(a * b)).sum()
    got = frechet_distance(stats(mu1, q @ np.diag(a) @ q.T), stats(mu2, q @ np.diag(b) @ q.T))
    assert got == pytest.approx(expected, rel=1e-10)


def test_fid_matches_scipy_sqrtm_on_non_commuting_covariances():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = x @ x.T, y @ y.T + np.eye(8)
    expected = np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(stats(np.zeros(8), s1), stats(np.zeros(8), s2)) == pytest.approx(expected, rel=1e-8)


def test_statistics_use_the_biased_covariance_and_round_trip(tmp_path):
    features = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    s = FeatureStatistics.of(features.astype(np.float32))
    np.testing.assert_allclose(s.covariance, np.cov(features.T, bias=True))
    s.save(tmp_path / "real.safetensors", meta={"detector_sha256": "abc"})
    loaded, meta = FeatureStatistics.load(tmp_path / "real.safetensors")
    np.testing.assert_array_equal(loaded.mean, s.mean)
    assert loaded.n == 3 and meta == {"detector_sha256": "abc"}


def kid_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 with k(u, v) = (u.v/d + 1)^3, written as the three sums of its definition."""
    m, d = len(x), x.shape[1]

    def k(u, v):
        return (u @ v / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 4)), rng.normal(0.5, 1.0, size=(12, 4))
    assert kernel_inception_distance(x, y, subsets=1, subset_size=12) == pytest.approx(kid_by_loops(x, y))
    # unbiased: over many independent draws from one distribution the estimates average to 0
    draws = [kernel_inception_distance(rng.normal(size=(10, 3)), rng.normal(size=(10, 3)), subsets=1)
             for _ in range(400)]
    assert abs(np.mean(draws)) < 3 * np.std(draws) / np.sqrt(len(draws))
    assert kernel_inception_distance(x, y + 3) > kernel_inception_distance(x, y) > 0


class TinyDetector(torch.nn.Module):
    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = images.float().mean(dim=(2, 3))  # [N, 3]
        return pooled if return_features else pooled.sum(1, keepdim=True)


def test_torchscript_extractor_is_called_like_the_stylegan_detector(tmp_path):
    path = tmp_path / "detector.pt"
    torch.jit.save(torch.jit.script(TinyDetector()), str(path))
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    features = load_feature_extractor(path)(images)
    torch.testing.assert_close(features, images.float().mean(dim=(2, 3)))
    assert load_feature_extractor(path, return_features=False)(images).shape == (2, 1)
    assert len(file_sha256(path)) == 64
    with pytest.raises(NerfsculptError, match="TorchScript"):
        load_feature_extractor(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(NerfsculptError, match="not a TorchScript file"):
        load_feature_extractor(tmp_path / "junk.pt")


def test_pixel_features_area_average_in_unit_range():
    from nerfsculpt.evaluate.distribution import pixel_features

    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[1, :, :32] = 255  # top half white: each 32 x 32 pixel row block averages 2 x 2 source pixels
    features = pixel_features(images)
    assert features.shape == (2, 3 * 32 * 32) and float(features[0].max()) == 0.0
    top, bottom = features[1].view(3, 32, 32)[:, :16], features[1].view(3, 32, 32)[:, 16:]
    assert float(top.min()) == 1.0 and float(bottom.max()) == 0.0


def test_the_same_generator_and_latents_shift_nothing(tmp_path):
    from nerfsculpt.evaluate.distribution import FeatureStatistics, generator_features, pixel_features
    from nerfsculpt.generator.builtin import resolve_generator

    G, _ = resolve_generator("tiny-random", "cpu")
    labels = np.tile(np.array([[1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2.7, 0, 0, 0, 1, 4.26, 0, 0.5, 0, 4.26, 0.5,
                                0, 0, 1]], dtype=np.float32), (4, 1))
    a = generator_features(G, pixel_features, 5, labels, batch=2, seed=3)
    b = generator_features(G, pixel_features, 5, labels, batch=2, seed=3)
    np.testing.assert_array_equal(a, b)  # seeded: the same latents, cameras and noise give the same images
    assert not np.array_equal(a, generator_features(G, pixel_features, 5, labels, batch=2, seed=4))
    assert frechet_distance(FeatureStatistics.of(a), FeatureStatistics.of(b)) == pytest.approx(0, abs=1e-6)
