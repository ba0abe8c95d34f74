"""Regular sampling grids over the tri-plane box [-L/2, L/2]^3 (docs/method/reference_method.md §0.4).

Array order, used by every geometry function of nerfsculpt: voxel ``(i, j, k)`` sits at world
``(x, y, z) = (-L/2 + i L/(N-1), -L/2 + j L/(N-1), -L/2 + k L/(N-1))`` and the flat index is
``n = (i N + j) N + k`` (k fastest). A flat array of per-point values therefore reshapes with
``.reshape(N, N, N)`` into an array indexed ``[x, y, z]``: axis 0 = X (image left -> right),
axis 1 = Y (chin -> top of head), axis 2 = Z (back of head -> toward the camera).

Two coordinate builders:

- :func:`grid_coordinates` (default everywhere): exact, computed from integer indices.
- :func:`grid_coordinates_eg3d`: EG3D's ``create_samples``, bit for bit, with its float32 index
  artefacts (docs/method/eg3d.md §3.15). The reference's reward slab was sampled on this grid too
  (docs/method/reference_method.md §1.2 builds it with ``create_samples``); use it to reproduce NVIDIA's shapes
  or the reference's sigma slabs exactly.

Example, evaluating a field in bounded memory::

    sigma = torch.empty(N**3)
    for part, xyz in iter_grid_chunks(N, chunk_points=1_000_000):
        sigma[part] = field(xyz)              # xyz: [n, 3]
    sigma = sigma.reshape(N, N, N)            # [x, y, z]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


def _check_resolution(resolution: int) -> None:
    if not (isinstance(resolution, int) and resolution >= 2):
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")


def voxel_size(resolution: int, cube_length: float = 1.0) -> float:
    """Spacing ``L / (N - 1)`` between grid samples: the first and last samples sit on the faces."""
    _check_resolution(resolution)
    return cube_length / (resolution - 1)


def index_to_world(index: Tensor | float, resolution: int, cube_length: float = 1.0) -> Tensor | float:
    """World coordinate ``-L/2 + index L/(N-1)`` of a (possibly fractional) voxel index along one axis."""
    _check_resolution(resolution)
    return cube_length * (2 * index - (resolution - 1)) / (2 * (resolution - 1))


def box_flat_indices(
    index_ranges: Sequence[tuple[int, int]],  # ((i0, i1), (j0, j1), (k0, k1)), half-open
    resolution: int,
    device: torch.device | str | None = None,
) -> Tensor:  # [(i1-i0)(j1-j0)(k1-k0)] int64
    """Flat indices of the voxels of a sub-box, in grid order (k fastest), so the result reshapes
    to the box's ``[x, y, z]`` shape."""
    _check_resolution(resolution)
    (i0, i1), (j0, j1), (k0, k1) = index_ranges
    for lo, hi in index_ranges:
        if not 0 <= lo < hi <= resolution:
            raise ValueError(f"index range [{lo}, {hi}) is empty or outside [0, {resolution})")
    i = torch.arange(i0, i1, device=device)[:, None, None]  # (X, 1, 1)
    j = torch.arange(j0, j1, device=device)[None, :, None]  # (1, Y, 1)
    k = torch.arange(k0, k1, device=device)[None, None, :]  # (1, 1, Z)
    return ((i * resolution + j) * resolution + k).reshape(-1)  # (X*Y*Z,)


def grid_coordinates(
    resolution: int,
    cube_length: float = 1.0,
    indices: Tensor | None = None,  # [M] int64 flat indices; None = the whole grid
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [M, 3] (x, y, z); M = N^3 by default
    """Exact world coordinates of grid samples, k fastest (see the module docstring).

    Each coordinate is ``L (2 i - (N-1)) / (2 (N-1))`` computed from the integer index in float64
    and rounded once to ``dtype``: the grid is symmetric about 0 and its end points are exactly
    +-L/2. ``indices`` selects a subset of flat indices (e.g. :func:`box_flat_indices`).

    >>> grid_coordinates(3).shape
    torch.Size([27, 3])
    >>> grid_coordinates(3).reshape(3, 3, 3, 3)[2, 0, 1]    # voxel (i, j, k) = (2, 0, 1)
    tensor([ 0.5000, -0.5000,  0.0000])
    """
    _check_resolution(resolution)
    steps = torch.arange(resolution, device=device, dtype=torch.float64)  # (N,)
    axis = index_to_world(steps, resolution, cube_length).to(dtype)  # (N,) one rounding per value
    if indices is None:
        return torch.cartesian_prod(axis, axis, axis)  # (N^3, 3), k fastest
    n = indices.to(device=device, dtype=torch.int64)  # (M,)
    i, j, k = n // resolution**2, (n // resolution) % resolution, n % resolution
    return torch.stack([axis[i], axis[j], axis[k]], dim=1)  # (M, 3)


def grid_coordinates_eg3d(
    resolution: int,
    cube_length: float = 1.0,
    indices: Tensor | None = None,  # [M] int64 flat indices; None = the whole grid
    device: torch.device | str | None = None,
) -> Tensor:  # [M, 3] float32 (x, y, z)
    """EG3D's ``create_samples`` grid, reproduced bit for bit in float32 (docs/method/eg3d.md §3.15).

    EG3D takes the flat index ``n`` as a float32 ``t`` and derives the slow indices with float
    division and a floored remainder: ``s2 = n mod N`` (exact), ``s1 = (t/N) mod N`` and
    ``s0 = ((t/N)/N) mod N``, so ``s1 = j + k/N`` and ``s0 = i + j/N + k/N^2`` keep fractional
    parts; the coordinate is ``s * L/(N-1) - L/2`` in float32. Known consequences:

    - x reaches about 0.5039 (not 0.5) at N = 256; x and y are shifted by up to one voxel;
    - above N^3 = 2^24 (N > 256) float32 cannot hold every index: at N = 512 the last sample
      wraps to (-0.5, -0.5, 0.5).

    Results depend only on ``n``, so ``indices`` gives exactly the rows of the full grid without
    materialising it (the full N = 512 grid is 1.6 GB).
    """
    _check_resolution(resolution)
    n = torch.arange(resolution**3, device=device) if indices is None else indices.to(device, torch.int64)
    size = cube_length / (resolution - 1)
    origin = -cube_length / 2
    t = n.to(torch.float32)  # (M,) rounds n above 2^24
    s2 = (n % resolution).to(torch.float32)
    s1 = torch.remainder(t / resolution, resolution)
    s0 = torch.remainder((t / resolution) / resolution, resolution)
    return torch.stack([s0 * size + origin, s1 * size + origin, s2 * size + origin], dim=1)  # (M, 3)


def iter_grid_chunks(
    resolution: int,
    chunk_points: int,
    cube_length: float = 1.0,
    indices: Tensor | None = None,  # [M] int64 flat indices; None = the whole grid
    eg3d_grid: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[tuple[slice, Tensor]]:  # (positions in [0, M), coordinates [n, 3])
    """Grid coordinates in chunks of at most ``chunk_points``, without building the whole array.

    Yields ``(part, xyz)`` where ``part`` is the slice of flat positions (into the grid, or into
    ``indices`` when given) that ``xyz`` [len(part), 3] covers. ``eg3d_grid=True`` yields
    :func:`grid_coordinates_eg3d` points (always float32) instead of the exact grid.
    """
    _check_resolution(resolution)
    if chunk_points < 1:
        raise ValueError(f"chunk_points must be >= 1, got {chunk_points}")
    total = resolution**3 if indices is None else indices.numel()
    for start in range(0, total, chunk_points):
        part = slice(start, min(start + chunk_points, total))
        n = (
            torch.arange(part.start, part.stop, device=device)
            if indices is None
            else indices[part].to(device=device, dtype=torch.int64)
        )  # (n,)
        if eg3d_grid:
            yield part, grid_coordinates_eg3d(resolution, cube_length, indices=n, device=device)
        else:
            yield part, grid_coordinates(resolution, cube_length, indices=n, device=device, dtype=dtype)
