import doctest

import numpy as np
import pytest
import torch

from nerfsculpt.geometry import grid
from nerfsculpt.geometry.grid import (
    box_flat_indices,
    grid_coordinates,
    grid_coordinates_eg3d,
    index_to_world,
    iter_grid_chunks,
    voxel_size,
)


def test_doctests():
    assert doctest.testmod(grid).failed == 0


# ---- exact grid --------------------------------------------------------------------------------


@pytest.mark.parametrize("n, length", [(2, 1.0), (5, 1.0), (16, 2.0), (33, 0.7)])
def test_exact_grid_is_indexed_x_y_z(n, length):
    xyz = grid_coordinates(n, length, dtype=torch.float64)
    assert xyz.shape == (n**3, 3)
    cube = xyz.reshape(n, n, n, 3)  # [x, y, z] order, k fastest
    axis = -length / 2 + torch.arange(n, dtype=torch.float64) * length / (n - 1)  # closed form
    torch.testing.assert_close(cube[:, 0, 0, 0], axis, atol=1e-15, rtol=0)
    torch.testing.assert_close(cube[0, :, 0, 1], axis, atol=1e-15, rtol=0)
    torch.testing.assert_close(cube[0, 0, :, 2], axis, atol=1e-15, rtol=0)
    # Every other coordinate is constant along an axis.
    assert (cube[:, 1, 1, 1] == cube[0, 1, 1, 1]).all()  # y does not change along x
    assert (cube[1, :, 1, 2] == cube[0, 0, 1, 2]).all()  # z does not change along y


def test_exact_grid_end_points_and_symmetry():
    xyz = grid_coordinates(256)
    assert xyz.dtype == torch.float32
    assert xyz.min() == -0.5 and xyz.max() == 0.5  # exactly, unlike EG3D's grid
    axis = xyz.reshape(256, 256, 256, 3)[:, 0, 0, 0]
    assert torch.equal(axis, -axis.flip(0))
    assert voxel_size(256) == 1 / 255


def test_index_to_world():
    assert index_to_world(0, 256) == -0.5 and index_to_world(255, 256) == 0.5
    assert index_to_world(127.5, 256) == 0.0
    assert index_to_world(64, 256) == pytest.approx(-0.5 + 64 / 255, abs=1e-15)


def test_indices_subset_equals_rows_of_full_grid():
    full = grid_coordinates(9)
    idx = torch.tensor([0, 5, 80, 400, 728])
    assert torch.equal(grid_coordinates(9, indices=idx), full[idx])


def test_box_flat_indices_order():
    n = 7
    idx = box_flat_indices(((1, 3), (2, 6), (0, 7)), n)
    assert idx.shape == (2 * 4 * 7,)
    cube = torch.arange(n**3).reshape(n, n, n)
    assert torch.equal(idx.reshape(2, 4, 7), cube[1:3, 2:6, 0:7])


@pytest.mark.parametrize(
    "ranges", [((0, 0), (0, 1), (0, 1)), ((0, 8), (0, 1), (0, 1)), ((-1, 2), (0, 1), (0, 1))]
)
def test_box_flat_indices_bad_ranges(ranges):
    with pytest.raises(ValueError, match="index range"):
        box_flat_indices(ranges, 7)


@pytest.mark.parametrize("bad", [1, 0, 2.5])
def test_bad_resolution(bad):
    with pytest.raises(ValueError, match="resolution"):
        grid_coordinates(bad)


# ---- EG3D create_samples grid (eg3d.md §3.15) -------------------------------------------------


def _eg3d_reference_numpy(n: int, length: float, flat: np.ndarray) -> np.ndarray:
    """The spec's formula in numpy float32: s2 = n mod N, s1 = (t/N) mod N, s0 = ((t/N)/N) mod N."""
    t, nf = flat.astype(np.float32), np.float32(n)
    s = np.stack([np.mod((t / nf) / nf, nf), np.mod(t / nf, nf), (flat % n).astype(np.float32)], axis=1)
    return s * np.float32(length / (n - 1)) + np.float32(-length / 2)


@pytest.mark.parametrize("n, length", [(37, 1.0), (64, 1.0), (100, 0.7)])
def test_eg3d_grid_matches_spec_formula_bitwise(n, length):
    expected = _eg3d_reference_numpy(n, length, np.arange(n**3))
    assert np.array_equal(grid_coordinates_eg3d(n, length).numpy(), expected)


def test_eg3d_grid_fractional_slow_indices():
    # s1 = j + k/N and s0 = i + j/N + k/N^2: exact in float32 at N = 256 (24 significant bits).
    n = 256
    i, j, k = 64, 100, 200
    got = grid_coordinates_eg3d(n, indices=torch.tensor([(i * n + j) * n + k]))[0]
    vs, o = np.float32(1 / 255), np.float32(-0.5)
    s0, s1 = np.float32(i + j / n + k / n**2), np.float32(j + k / n)
    assert got.tolist() == [float(s0 * vs + o), float(s1 * vs + o), float(np.float32(k) * vs + o)]
    assert got[0] > index_to_world(i, n) + 0.3 / 255  # shifted by ~0.4 voxel


def test_eg3d_grid_overshoots_past_the_box():
    full = grid_coordinates_eg3d(64)
    assert full[:, 0].max() == full[-1, 0]  # the largest x is the last sample
    assert full[-1, 0].item() == pytest.approx((63 + 63 / 64 + 63 / 64**2) / 63 - 0.5, abs=1e-6)
    last_256 = grid_coordinates_eg3d(256, indices=torch.tensor([256**3 - 1]))[0]
    assert last_256[0].item() == pytest.approx(0.5039, abs=1e-4)  # eg3d.md §3.15


def test_eg3d_grid_512_wraps_and_quantises():
    n = 512
    last = grid_coordinates_eg3d(n, indices=torch.tensor([n**3 - 1]))[0]
    assert last.tolist() == [-0.5, -0.5, 0.5]  # eg3d.md §3.15
    # Above 2^24 float32 rounds the index: 2^24 + 1 shares x, y with 2^24 (z comes from the exact n mod N).
    pair = grid_coordinates_eg3d(n, indices=torch.tensor([2**24, 2**24 + 1]))
    assert torch.equal(pair[0, :2], pair[1, :2]) and pair[0, 2] != pair[1, 2]
    exact = grid_coordinates(n, indices=torch.tensor([n**3 - 1]))[0]
    assert exact.tolist() == [0.5, 0.5, 0.5]


# ---- chunks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("eg3d_grid", [False, True])
def test_chunks_cover_the_grid(eg3d_grid):
    n, chunk = 11, 100
    full = grid_coordinates_eg3d(n) if eg3d_grid else grid_coordinates(n)
    out = torch.full_like(full, float("nan"))
    parts = []
    for part, xyz in iter_grid_chunks(n, chunk, eg3d_grid=eg3d_grid):
        assert xyz.shape == (part.stop - part.start, 3) and xyz.shape[0] <= chunk
        out[part] = xyz
        parts.append(part)
    assert parts[0].start == 0 and parts[-1].stop == n**3
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert len(parts) == -(-(n**3) // chunk)
    assert torch.equal(out, full)


def test_chunks_over_an_index_subset():
    idx = box_flat_indices(((2, 5), (0, 9), (4, 6)), 9)
    got = torch.cat([xyz for _, xyz in iter_grid_chunks(9, 7, indices=idx)])
    assert torch.equal(got, grid_coordinates(9, indices=idx))


def test_chunks_bad_size():
    with pytest.raises(ValueError, match="chunk_points"):
        next(iter_grid_chunks(8, 0))
