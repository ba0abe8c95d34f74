"""Procedural heads: API, EG3D frame and sigma scale, defect locality, colour, gradients, determinism."""

import math

import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from nerfsculpt.geometry.grid import grid_coordinates
from nerfsculpt.geometry.slab import REWARD_SLAB
from nerfsculpt.synthetic.heads import (
    COLOUR_NAMES,
    DEFECTS,
    IDENTITY_NAMES,
    SIGMA_SCALE,
    Z_DIM_MIN,
    HeadParams,
    face_landmarks,
    head_colour,
    head_field,
    head_params_from_z,
    head_sdf,
    head_sigma,
    sample_head_params,
)

R = 48  # grid used by the geometric tests (voxel 0.021)


pytestmark = pytest.mark.usefixtures("single_thread")

@pytest.fixture(scope="module")
def grid():
    return grid_coordinates(R)  # (R^3, 3)


def _params(n=4, seed=0, defects=None):
    params = sample_head_params(n, torch.Generator().manual_seed(seed))
    return params if defects is None else params.with_defects(torch.as_tensor(defects, dtype=torch.float32))


def _cube(params, grid):  # -> [N, R, R, R] sigma
    with torch.no_grad():
        return head_sigma(grid.expand(len(params), -1, -1), params).reshape(len(params), R, R, R)


# ------------------------------------------------------------------------------------------------
# API


def test_smoke_shapes():
    params = _params(3, defects=[0.5] * 5)
    points = torch.rand(3, 100, 3) - 0.5
    sigma, colour = head_field(points, params)
    assert sigma.shape == (3, 100) and colour.shape == (3, 100, 3)
    assert torch.equal(sigma, head_sigma(points, params)) and torch.equal(colour, head_colour(points, params))


def test_params_container():
    params = _params(5)
    assert len(params) == 5
    assert params.identity.shape == (5, len(IDENTITY_NAMES)) and params.colour.shape == (5, len(COLOUR_NAMES))
    assert params.defects.shape == (5, len(DEFECTS))
    assert len(params.index(2)) == 1 and torch.equal(params.index(2).identity, params.identity[2:3])
    assert torch.equal(params.index(-1).defects, params.defects[-1:])
    assert len(params.index(slice(1, 4))) == 3 and len(params.index([0, 4])) == 2
    other = params.with_defects(torch.tensor([1.0, 0, 0, 0, 0]))
    assert torch.equal(other.identity, params.identity) and torch.equal(other.colour, params.colour)
    assert torch.equal(other.defects, torch.tensor([[1.0, 0, 0, 0, 0]]).expand(5, 5))
    assert params.to("cpu", torch.float64).identity.dtype == torch.float64
    assert (params.identity.abs() <= 1).all() and (params.colour.abs() <= 1).all()
    assert ((params.defects >= 0) & (params.defects <= 1)).all()


def test_bad_input():
    params = _params(2)
    with pytest.raises(ValueError, match=r"\[N, M, 3\]"):
        head_sigma(torch.zeros(10, 3), params)
    with pytest.raises(ValueError, match="len\\(params\\) = 2"):
        head_sigma(torch.zeros(3, 10, 3), params)
    with pytest.raises(TypeError, match="floating point"):
        head_sigma(torch.zeros(2, 10, 3, dtype=torch.int64), params)
    with pytest.raises(TypeError, match="HeadParams"):
        head_colour(torch.zeros(2, 10, 3), params.identity)
    with pytest.raises(ValueError, match=f"z_dim >= {Z_DIM_MIN}"):
        head_params_from_z(torch.zeros(2, Z_DIM_MIN - 1))
    with pytest.raises(ValueError, match="defects must be"):
        HeadParams(params.identity, params.colour, params.defects[:, :3])
    with pytest.raises(ValueError, match="positive int"):
        sample_head_params(0)


# ------------------------------------------------------------------------------------------------
# Latent map


def test_mean_latent_is_a_clean_average_head():
    params = head_params_from_z(torch.zeros(1, 64))
    assert torch.equal(params.defects, torch.zeros(1, 5))
    assert torch.equal(params.identity, torch.zeros(1, len(IDENTITY_NAMES)))
    assert torch.equal(params.colour, torch.zeros(1, len(COLOUR_NAMES)))


def test_latent_map_ignores_dims_beyond_minimum():
    z = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    z2 = z.clone()
    z2[:, Z_DIM_MIN:] = 5.0
    a, b = head_params_from_z(z), head_params_from_z(z2)
    assert torch.equal(a.identity, b.identity) and torch.equal(a.defects, b.defects)


def test_latent_map_known_values():
    z = torch.zeros(1, Z_DIM_MIN)
    z[0, 0], z[0, -5], z[0, -4], z[0, -3] = 1.0, 0.3, 1.15, 2.0  # identity 0; bumps at onset, halfway, full
    params = head_params_from_z(z)
    assert params.identity[0, 0] == pytest.approx(math.tanh(0.6))
    assert params.defects[0, :3].tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_most_seeds_have_a_visible_defect():
    # closed form: P(any of 5 severities > 0.1) with severity = smoothstep((z - 0.3) / 1.7), z ~ N(0, 1)
    u = brentq(lambda u: 3 * u * u - 2 * u**3 - 0.1, 0, 1)
    expected = 1 - (1 - norm.sf(0.3 + 1.7 * u)) ** 5  # 0.782
    params = sample_head_params(20000, torch.Generator().manual_seed(3))
    assert float((params.defects > 0.1).any(1).float().mean()) == pytest.approx(expected, abs=0.015)


def test_determinism_by_seed():
    a, b = _params(3, seed=7), _params(3, seed=7)
    assert torch.equal(a.identity, b.identity) and torch.equal(a.defects, b.defects)
    assert not torch.equal(a.identity, _params(3, seed=8).identity)
    points = torch.rand(3, 1000, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    assert torch.equal(head_sigma(points, a), head_sigma(points, b))
    assert torch.equal(sample_head_params(3, torch.Generator().manual_seed(7), defect_free=True).identity, a.identity)


@pytest.mark.parametrize("chunk", [13, 1000])
def test_points_are_independent(chunk):
    """Chunked evaluation, and one head at a time, give bitwise the same field (datasets rely on it)."""
    params = _params(3, defects=[0.7] * 5)
    points = torch.rand(3, 5000, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    sigma, colour = head_field(points, params)
    parts = [head_field(p, params) for p in points.split(chunk, dim=1)]
    assert torch.equal(sigma, torch.cat([s for s, _ in parts], dim=1))
    assert torch.equal(colour, torch.cat([c for _, c in parts], dim=1))
    single = [head_field(points[i : i + 1], params.index(i)) for i in range(3)]
    assert torch.equal(sigma, torch.cat([s for s, _ in single]))
    assert torch.equal(colour, torch.cat([c for _, c in single]))


# ------------------------------------------------------------------------------------------------
# Frame and scale


def test_head_inside_the_box_and_on_eg3d_scale(grid):
    params = _params(6, seed=4).with_defects(torch.ones(5))
    cube = _cube(params, grid)
    faces = torch.cat([cube[:, [0, -1]].flatten(1), cube[:, :, [0, -1]].flatten(1),
                       cube[:, :, :, [0, -1]].flatten(1)], 1)  # (N, 6 R^2)
    assert (faces < -150).all(), "the head must not touch the box"
    assert (cube.amin((1, 2, 3)) >= -SIGMA_SCALE).all() and (cube.amax((1, 2, 3)) <= SIGMA_SCALE).all()
    assert (cube.amax((1, 2, 3)) > 150).all(), "no level-10 surface"
    centre = head_sigma(torch.tensor([[[0.0, 0.05, 0.0]]]).expand(6, 1, 3), params)
    assert (centre > 190).all()


def test_face_inside_the_reward_slab(grid):
    params = _params(8, seed=5).with_defects(torch.ones(5))
    cube = _cube(params, grid)
    xyz = grid.reshape(R, R, R, 3)
    (x0, x1), (y0, y1), (z0, z1) = REWARD_SLAB.world_bounds
    front = (cube >= 10) & (xyz[..., 2] > 0.1)  # (N, R, R, R): the face and what floats in front of it
    points = xyz.expand(8, -1, -1, -1, -1)[front]  # (P, 3)
    assert len(points) > 0
    assert points[:, 0].abs().max() < x1 and points[:, 1].min() > y0 and points[:, 1].max() < y1
    assert points[:, 2].max() < z1
    assert ((cube >= 10) & (xyz[..., 2] > 0.33)).flatten(1)[:, :].sum() > 0  # floaters reach in front
    clean = _cube(params.with_defects(torch.zeros(5)), grid)
    assert not ((clean >= 10) & (xyz[..., 2] > 0.33)).any(), "nose tip beyond z = 0.33"


def test_surface_is_level_10_within_a_fraction_of_a_voxel():
    """sigma = 10 lies 0.03 atanh(0.05) = 1.5e-3 inside the surface: along +z through the nose
    tip, the level-10 crossing and the sign change of sigma are that far apart."""
    params = _params(1)
    z = torch.linspace(0.2, 0.4, 20001, dtype=torch.float64)
    points = torch.stack([torch.zeros_like(z), torch.full_like(z, -0.04), z], 1)[None]
    sigma = head_sigma(points, params.to(dtype=torch.float64))[0]
    last_inside = int(torch.nonzero(sigma >= 10)[-1])
    zero = int(torch.nonzero(sigma >= 0)[-1])
    assert 0 < float(z[zero] - z[last_inside]) < 3e-3


# ------------------------------------------------------------------------------------------------
# Defects


def test_zero_severity_is_continuous_and_exact(grid):
    params = _params(2, seed=6).with_defects(torch.zeros(5))
    clean = _cube(params, grid)
    for k in range(5):
        tiny = torch.zeros(5)
        tiny[k] = 1e-7
        assert (_cube(params.with_defects(tiny), grid) - clean).abs().max() < 1.0, DEFECTS[k]
    again = _cube(params.with_defects(torch.zeros(2, 5)), grid)
    assert torch.equal(again, clean)


REGIONS = {  # world boxes that must hold every voxel whose occupancy (sigma >= 10) a defect flips
    "bumps": lambda x, y, z: (x.abs() > 0.01) & (y > -0.2) & (y < 0.03) & (z > 0.05),
    "nose": lambda x, y, z: (x.abs() < 0.13) & (y > -0.13) & (y < 0.11) & (z > 0.1),
    "holes": lambda x, y, z: (x.abs() < 0.08) & (y > 0.06) & (y < 0.22) & (z > 0.08),
    "floaters": lambda x, y, z: (z > 0.28) & (x.abs() < 0.14) & (y > -0.18) & (y < 0.17),
    "asymmetry": lambda x, y, z: x > 0.02,
}


@pytest.mark.parametrize("k", range(5), ids=DEFECTS)
def test_each_defect_changes_sigma_only_where_it_should(grid, k):
    params = _params(3, seed=8).with_defects(torch.zeros(5))
    clean = _cube(params, grid)
    severity = torch.zeros(5)
    severity[k] = 1.0
    damaged = _cube(params.with_defects(severity), grid)
    x, y, z = grid.reshape(R, R, R, 3).unbind(-1)
    flipped = (damaged >= 10) != (clean >= 10)  # (N, R, R, R)
    assert flipped.any(dim=(1, 2, 3)).all(), f"{DEFECTS[k]} changes nothing"
    assert not (flipped & ~REGIONS[DEFECTS[k]](x, y, z)).any(), f"{DEFECTS[k]} changes the surface outside its region"
    delta = damaged - clean
    if DEFECTS[k] in ("floaters", "asymmetry"):
        assert (delta >= -1e-3).all(), "adds density only"
    if DEFECTS[k] == "floaters":
        assert (delta.abs() < 1e-3)[:, :, :, z[0, 0] < 0.1].all(), "floaters change nothing behind the face"
    if DEFECTS[k] in ("bumps", "nose", "holes"):
        assert torch.equal(delta, delta.flip(1)), "mirror-symmetric defect"


def test_clean_heads_are_mirror_symmetric(grid):
    cube = _cube(_params(3, seed=9).with_defects(torch.zeros(5)), grid)
    assert torch.equal(cube, cube.flip(1))


def test_floaters_are_disconnected_from_the_head(grid):
    from scipy import ndimage

    params = _params(2, seed=10).with_defects(torch.tensor([0, 0, 0, 0.3, 0]))
    with torch.no_grad():
        sigma = head_sigma(grid_coordinates(96).expand(2, -1, -1), params).reshape(2, 96, 96, 96)
    for occupied in (sigma >= 10).numpy():
        assert ndimage.label(occupied)[1] == 4  # the head and three blobs


# ------------------------------------------------------------------------------------------------
# Colour and gradients


def test_colour_range_and_known_regions():
    params = _params(16, seed=11)
    points = torch.rand(16, 2000, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    colour = head_colour(points, params)
    assert colour.shape == (16, 2000, 3) and colour.min() >= 0 and colour.max() <= 1
    probe = torch.tensor([[0.09, -0.05, 0.2], [0.05, 0.03, 0.204], [0.0, -0.112, 0.24], [0.0, 0.27, 0.05]])
    cheek, eye, lips, hair = head_colour(probe.expand(16, -1, -1), params).unbind(1)  # (16, 3) each
    eye_corner = head_colour(torch.tensor([[[0.075, 0.03, 0.197]]]).expand(16, -1, -1), params)[:, 0]  # (16, 3)
    for dark in (eye, eye_corner):
        assert (dark.sum(-1) < cheek.sum(-1) - 0.5).all(), "each eye is one dark patch, wider than tall"
    assert ((lips[:, 0] - lips[:, 1]) > (cheek[:, 0] - cheek[:, 1])).all(), "lips are redder than skin"
    assert not torch.allclose(hair, cheek, atol=0.05), "the hair cap has its own colour"


def test_face_landmarks_sit_on_the_surface_at_the_painted_features():
    params = _params(16, seed=13, defects=[0.0] * 5)
    marks = face_landmarks(params)
    points = torch.stack(list(marks.values()), 1)  # (16, 5, 3)
    assert head_sdf(points, params).abs().max() < 0.012
    colour = dict(zip(marks, head_colour(points, params).unbind(1), strict=True))  # name -> (16, 3)
    for side in ("right", "left"):
        assert ((colour[f"eye_{side}"] - colour[f"cheek_{side}"]).norm(dim=-1) > 0.15).all(), "the eye, not skin"
    redness = {k: v[:, 0] - 0.5 * (v[:, 1] + v[:, 2]) for k, v in colour.items()}
    assert (redness["mouth"] > redness["cheek_left"] + 0.05).all()
    torch.testing.assert_close(colour["cheek_left"], colour["cheek_right"])  # plain skin, the same both sides


def test_gradcheck_float64():
    params = _params(2, seed=12, defects=[0.6] * 5).to(dtype=torch.float64)
    points = (torch.rand(2, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) - 0.5) * 0.6
    points[:, :3, 2] += 0.2  # some points near the face
    points.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: head_sigma(p, params) / SIGMA_SCALE, (points,), eps=1e-7, atol=1e-5)
    assert torch.autograd.gradcheck(lambda p: head_colour(p, params), (points,), eps=1e-7, atol=1e-5)


def test_gradients_are_finite_everywhere(grid):
    params = _params(2, seed=13)  # some severities are exactly 0
    points = grid[::97].clone().expand(2, -1, -1).clone().requires_grad_(True)
    head_sigma(points, params).sum().backward()
    assert torch.isfinite(points.grad).all()
