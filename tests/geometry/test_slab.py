import pytest
import torch

from nerfsculpt.geometry.grid import grid_coordinates, grid_coordinates_eg3d, index_to_world
from nerfsculpt.geometry.slab import (
    REWARD_SLAB,
    SlabSpec,
    crop_reward_slab,
    normalise_slab_0_100,
    pad_voxels,
    reward_slab_coordinates,
    slab_from_model_order,
    slab_to_model_order,
)

# ---- spec (reference_method.md §1.2) -----------------------------------------------------------


def test_reference_slab_at_256():
    assert REWARD_SLAB.index_ranges == ((64, 192), (64, 205), (102, 231))
    assert REWARD_SLAB.shape == (128, 141, 129)
    assert REWARD_SLAB.flat_indices().numel() == 2_328_192


def test_reference_world_bounds():
    (x0, x1), (y0, y1), (z0, z1) = REWARD_SLAB.world_bounds
    assert (x0, x1) == pytest.approx((-0.2490, 0.2490), abs=5e-5)
    assert (y0, y1) == pytest.approx((-0.2490, 0.3000), abs=5e-5)
    assert (z0, z1) == pytest.approx((-0.1000, 0.4020), abs=5e-5)


def test_pad_rule():
    assert [pad_voxels(p, 256) for p in (0.25, 0.2, 0.4, 0.1)] == [64, 51, 102, 25]
    assert pad_voxels(0.0, 256) == 1  # a zero pad still trims one voxel (the reference's cpad)
    spec = SlabSpec(resolution=64)  # int(p * 64): 16, 16, 16, 12, 25, 6
    assert spec.index_ranges == ((16, 48), (16, 52), (25, 58))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"rhs_pad": 1.0}, "pad fractions"), ({"top_pad": -0.1}, "pad fractions"),
     ({"rear_pad": 0.6, "front_pad": 0.5}, "empty"), ({"resolution": 1}, "resolution")],
)
def test_bad_spec(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlabSpec(**kwargs)


# ---- coordinates -------------------------------------------------------------------------------


def test_slab_coordinates_at_256():
    xyz = reward_slab_coordinates(eg3d_grid=False)
    assert xyz.shape == (2_328_192, 3)
    slab = xyz.reshape(*REWARD_SLAB.shape, 3)  # [x, y, z] order
    (x0, x1), (y0, y1), (z0, z1) = REWARD_SLAB.world_bounds
    torch.testing.assert_close(slab[0, 0, 0], torch.tensor([x0, y0, z0]))
    torch.testing.assert_close(slab[-1, -1, -1], torch.tensor([x1, y1, z1]))
    a, b, c = 10, 20, 30
    expected = torch.tensor([index_to_world(i, 256) for i in (64 + a, 64 + b, 102 + c)])
    torch.testing.assert_close(slab[a, b, c], expected)


@pytest.mark.parametrize("eg3d_grid", [False, True])
def test_slab_coordinates_are_the_cropped_full_grid(eg3d_grid):
    spec = SlabSpec(resolution=40)
    full = grid_coordinates_eg3d(40) if eg3d_grid else grid_coordinates(40)
    cube = full.reshape(40, 40, 40, 3).movedim(-1, 0)  # (3, 40, 40, 40)
    cropped = crop_reward_slab(cube, spec).movedim(0, -1)  # (X, Y, Z, 3)
    got = reward_slab_coordinates(spec, eg3d_grid=eg3d_grid).reshape(*spec.shape, 3)
    assert torch.equal(got, cropped)


def test_eg3d_slab_first_point_carries_the_index_quirk():
    x = reward_slab_coordinates(eg3d_grid=True)[0, 0].item()
    assert x == pytest.approx((64 + 64 / 256 + 102 / 256**2) / 255 - 0.5, abs=1e-7)


def test_reward_slab_defaults_to_the_points_the_reference_evaluated():
    spec = SlabSpec(resolution=64)
    torch.testing.assert_close(reward_slab_coordinates(spec), reward_slab_coordinates(spec, eg3d_grid=True),
                               rtol=0, atol=0)
    assert not torch.equal(reward_slab_coordinates(spec), reward_slab_coordinates(spec, eg3d_grid=False))


# ---- crop --------------------------------------------------------------------------------------


def test_crop_picks_the_right_voxels():
    n = 256
    flat = torch.arange(n**3, dtype=torch.int64)
    cube = flat.reshape(n, n, n)  # cube[i, j, k] = (i N + j) N + k
    slab = crop_reward_slab(cube)
    assert slab.shape == (128, 141, 129)
    for a, b, c in [(0, 0, 0), (127, 140, 128), (5, 77, 3)]:
        assert slab[a, b, c] == ((64 + a) * n + 64 + b) * n + 102 + c
    assert torch.equal(slab.reshape(-1), REWARD_SLAB.flat_indices())


def test_crop_keeps_leading_dims_and_checks_shape():
    spec = SlabSpec(resolution=32)
    cube = torch.randn(2, 1, 32, 32, 32)
    assert crop_reward_slab(cube, spec).shape == (2, 1, *spec.shape)
    with pytest.raises(AssertionError, match=r"\[x, y, z\]"):
        crop_reward_slab(torch.zeros(32, 32, 31), spec)


# ---- normalisation (reference_method.md §1.3) --------------------------------------------------


def test_normalise_known_answer_per_sample():
    a = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) + 5  # min 5, max 28
    b = -2 * a  # min -56, max -10
    out = normalise_slab_0_100(torch.stack([a, b])[:, None])  # (2, 1, 2, 3, 4)
    torch.testing.assert_close(out[0, 0], (a - 5) / 23 * 100)
    torch.testing.assert_close(out[1, 0], (b + 56) / 46 * 100)
    assert out[1, 0, 0, 0, 0] == 100 and out[1, 0, -1, -1, -1] == 0


def test_normalise_gradcheck():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)  # distinct values, unique min/max
    assert torch.autograd.gradcheck(normalise_slab_0_100, (x,))


def test_normalise_gradient_flows_through_min_and_max():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 4.0]]]], dtype=torch.float64, requires_grad=True)
    normalise_slab_0_100(x)[..., 0, 1, 0].sum().backward()  # y = (x_3 - min) / (max - min) * 100
    # span = 4: dy/dmin = 100 (x3 - max) / span^2 = -6.25, dy/dmax = -100 (x3 - min) / span^2 = -18.75,
    # dy/dx3 = 100 / span = 25; x1 (neither min nor max) gets nothing.
    assert x.grad.flatten().tolist() == pytest.approx([-6.25, 0.0, 25.0, -18.75])


def test_normalise_constant_slab_raises():
    ok = torch.randn(1, 3, 3, 3)
    with pytest.raises(ValueError, match="all equal"):
        normalise_slab_0_100(torch.stack([ok[0], torch.full((3, 3, 3), 7.0)]))
    with pytest.raises(ValueError, match="all equal"):
        normalise_slab_0_100(torch.full((3, 3, 3), float("nan")))


# ---- model order -------------------------------------------------------------------------------


def test_model_order():
    slab = torch.randn(2, 1, *REWARD_SLAB.shape)
    zyx = slab_to_model_order(slab)
    assert zyx.shape == (2, 1, 129, 141, 128)
    assert zyx[1, 0, 7, 9, 11] == slab[1, 0, 11, 9, 7]
    assert torch.equal(zyx, slab.permute(0, 1, 4, 3, 2))
    assert torch.equal(slab_from_model_order(zyx), slab)
