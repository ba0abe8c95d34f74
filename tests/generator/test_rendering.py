"""Plane projection, rays, importance sampling and the ray marcher against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from nerfsculpt.generator import rendering
from nerfsculpt.generator.config import FFHQ_RENDERING_KWARGS

OPTS = dict(FFHQ_RENDERING_KWARGS)


def test_plane_axes_are_eg3d_matrices_and_projection_is_xy_xz_zx():
    p = torch.tensor([[[0.1, -0.2, 0.3]]])
    proj = rendering.project_onto_planes(p)[0, :, 0]  # (3 planes, 2)
    torch.testing.assert_close(proj, torch.tensor([[0.1, -0.2], [0.1, 0.3], [0.3, 0.1]]))
    # The same from EG3D's definition: first two components of p @ inv(P_k).
    axes = rendering.PLANE_AXES.numpy()
    for k in range(3):
        np.testing.assert_allclose(proj[k].numpy(), (p[0, 0].numpy() @ np.linalg.inv(axes[k]))[:2], atol=1e-7)
    # The third plane is ZX, not YZ (the quirk the released weights depend on).
    assert not torch.allclose(proj[2], torch.tensor([-0.2, 0.3]))


def test_sample_from_planes_reads_the_right_texel_and_zero_outside():
    # 3 planes of 2x2 texels, 1 feature: plane k holds 4k + [[0, 1], [2, 3]] (row, column).
    # With align_corners=False the texel centres sit at normalised -0.5 / +0.5; box_warp 2 keeps
    # world = normalised coordinates. Grid u indexes columns, v rows.
    planes = torch.arange(12.0).reshape(1, 3, 1, 2, 2)
    pts = torch.tensor([[[-0.5, 0.5, 0.5], [5.0, 5.0, 5.0]]])  # (x, y, z); second point outside
    feats = rendering.sample_from_planes(planes, pts, box_warp=2.0)  # (1, 3, 2, 1)
    assert feats.shape == (1, 3, 2, 1)
    # plane 0 (x, y) = (-0.5, 0.5): row 1, col 0 -> 2; plane 1 (x, z) = (-0.5, 0.5) -> 4 + 2;
    # plane 2 (z, x) = (0.5, -0.5): row 0, col 1 -> 8 + 1 (a YZ plane would have read 8 + 3).
    assert feats[0, :, 0, 0].tolist() == [2.0, 6.0, 9.0]
    assert torch.all(feats[0, :, 1] == 0)  # outside the box -> zeros padding


def test_ray_sampler_canonical_camera_known_rays():
    c2w = torch.tensor([[[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]]])
    K = torch.tensor([[[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]]])
    origins, dirs = rendering.RaySampler()(c2w, K, 2)
    assert origins.shape == dirs.shape == (1, 4, 3)
    torch.testing.assert_close(origins[0], torch.tensor([[0.0, 0, 2.7]] * 4))
    # pixel (row 0, col 0): u = v = 0.25 -> camera (-0.125, -0.125, 1) -> world (-0.125, +0.125, -1)
    d = torch.tensor([-0.125, 0.125, -1.0])
    torch.testing.assert_close(dirs[0, 0], d / d.norm())
    # ray index = row * R + col: ray 1 is row 0, col 1 -> +x
    assert dirs[0, 1, 0] > 0 and dirs[0, 1, 1] > 0
    assert dirs[0, 2, 0] < 0 and dirs[0, 2, 1] < 0  # row 1, col 0: image down = world -y
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(1, 4))


def test_ray_marcher_hand_computed_three_samples():
    # One ray, 3 samples at depths 1, 2, 4; raw sigma 1, 3, 5; colours 0, 1, 0.5 (1 channel).
    depths = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64).reshape(1, 1, 3, 1)
    sigma = torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64).reshape(1, 1, 3, 1)
    colors = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64).reshape(1, 1, 3, 1)
    rgb, depth, weights = rendering.MipRayMarcher2()(colors, sigma, depths, OPTS)
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    d1, d2 = sp(2.0 - 1), sp(4.0 - 1)  # sigma averaged before activation, then softplus(x - 1)
    a1, a2 = 1 - math.exp(-d1 * 1.0), 1 - math.exp(-d2 * 2.0)
    w1, w2 = a1, a2 * (1 - a1 + 1e-10)
    assert weights[0, 0, :, 0].tolist() == pytest.approx([w1, w2], rel=1e-12)
    c_mid = (0.5, 0.75)
    assert rgb.item() == pytest.approx(2 * (w1 * c_mid[0] + w2 * c_mid[1]) - 1, rel=1e-12)
    assert depth.item() == pytest.approx((w1 * 1.5 + w2 * 3.0) / (w1 + w2), rel=1e-12)


def test_ray_marcher_empty_ray_depth_clamped_to_batch_range():
    depths = torch.tensor([2.0, 2.5, 3.0]).reshape(1, 1, 3, 1).repeat(1, 2, 1, 1)
    depths[0, 1] += 0.1
    sigma = torch.full((1, 2, 3, 1), -1e4)  # no density anywhere
    _, depth, weights = rendering.MipRayMarcher2()(torch.zeros(1, 2, 3, 3), sigma, depths, OPTS)
    assert torch.all(weights == 0)
    # 0/0 -> +inf -> clamped to the max over the whole batch (3.1), not per ray
    torch.testing.assert_close(depth, torch.full((1, 2, 1), 3.1))


def test_ray_marcher_rejects_other_clamp_modes():
    with pytest.raises(ValueError, match="softplus"):
        rendering.MipRayMarcher2()(torch.zeros(1, 1, 2, 1), torch.zeros(1, 1, 2, 1), torch.ones(1, 1, 2, 1),
                                   {**OPTS, "clamp_mode": "relu"})


def test_sample_pdf_uniform_weights_are_linear_and_last_bin_unreachable():
    bins = torch.linspace(0, 46, 47).reshape(1, 47)  # 47 midpoints as in EG3D
    weights = torch.ones(1, 45)  # 45 weights -> cdf of 46 entries
    u = torch.linspace(0, 1, 9)
    samples = rendering.sample_pdf(bins, weights, 9, deterministic=True)
    # cdf is linear over bins[0..45]: t = 45 * u; bins[46] can never be reached (the off-by-one)
    torch.testing.assert_close(samples[0], 45 * u, atol=1e-4, rtol=0)
    random = rendering.sample_pdf(bins, weights, 10000, generator=torch.Generator().manual_seed(0))
    assert random.max() <= 45 + 1e-4


def test_sample_pdf_concentrates_on_heavy_bin():
    bins = torch.arange(6.0).reshape(1, 6)
    weights = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])
    s = rendering.sample_pdf(bins, weights, 1000, generator=torch.Generator().manual_seed(0))
    assert ((s >= 2) & (s <= 3)).float().mean() > 0.99


def test_stratified_sampling_deterministic_is_stratum_centre_and_generator_reproducible():
    r = rendering.ImportanceRenderer()
    origins = torch.zeros(1, 2, 3)
    det = r.sample_stratified(origins, 2.25, 3.3, 8, deterministic=True)
    delta = (3.3 - 2.25) / 7
    torch.testing.assert_close(det[0, 0, :, 0], torch.linspace(2.25, 3.3, 8) + 0.5 * delta)
    a = r.sample_stratified(origins, 2.25, 3.3, 8, generator=torch.Generator().manual_seed(3))
    b = r.sample_stratified(origins, 2.25, 3.3, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    jitter = (a - torch.linspace(2.25, 3.3, 8).reshape(1, 1, 8, 1)) / delta
    assert torch.all((jitter >= 0) & (jitter < 1))


def test_renderer_rejects_auto_ray_range():
    r = rendering.ImportanceRenderer()
    with pytest.raises(NotImplementedError, match="auto"):
        r(torch.zeros(1, 3, 1, 2, 2), None, torch.zeros(1, 1, 3), torch.ones(1, 1, 3),
          {**OPTS, "ray_start": "auto", "ray_end": "auto"})


def test_ray_marcher_gradcheck():
    g = torch.Generator().manual_seed(0)
    colors = torch.rand(1, 2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sigma = torch.randn(1, 2, 5, 1, generator=g, dtype=torch.float64, requires_grad=True)
    depths = torch.sort(torch.rand(1, 2, 5, 1, generator=g, dtype=torch.float64), dim=2)[0] + 2
    assert torch.autograd.gradcheck(lambda c, s: rendering.MipRayMarcher2()(c, s, depths, OPTS)[0], (colors, sigma))
