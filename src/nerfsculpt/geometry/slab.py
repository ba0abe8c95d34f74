"""The reward slab: the crop of the sigma cube that the reward model sees (docs/method/reference_method.md §1.2-1.3).

Pipeline of the reference, for one latent:

1. raw sigma on the 256^3 grid over [-0.5, 0.5]^3, array order [x, y, z] (``geometry.grid``);
2. :func:`crop_reward_slab` -> [128, 141, 129] (X[64:192], Y[64:205], Z[102:231]); no flip;
3. :func:`normalise_slab_0_100`: per-sample min-max over the whole slab, times 100;
4. :func:`slab_to_model_order` -> [129, 141, 128] in (Z, Y, X) order, the model's input layout.

Only the slab's 2,328,192 points need evaluating (not 16.7M): :func:`reward_slab_coordinates`.
The reference sampled them on EG3D's ``create_samples`` grid (its float32 index artefacts shift
x and y by up to one voxel, see ``grid.grid_coordinates_eg3d``); ``eg3d_grid=True`` reproduces it,
the default is the exact grid.

Example::

    xyz = reward_slab_coordinates()                    # [2328192, 3]
    slab = sigma_fn(xyz).reshape(REWARD_SLAB.shape)    # [128, 141, 129] (X, Y, Z)
    x = slab_to_model_order(normalise_slab_0_100(slab[None, None]))  # [1, 1, 129, 141, 128]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nerfsculpt.geometry.grid import box_flat_indices, grid_coordinates, grid_coordinates_eg3d, index_to_world


def pad_voxels(fraction: float, resolution: int) -> int:
    """Voxels trimmed by a pad fraction: ``int(fraction * resolution)``, a result of 0 becomes 1.

    Same rule as the reference's ``cpad`` (docs/method/reference_method.md §1.2): even a zero pad trims one voxel.
    """
    return max(int(fraction * resolution), 1)


@dataclass(frozen=True)
class SlabSpec:
    """Crop of the [x, y, z] sigma cube, as fractions of the resolution trimmed from each face."""

    rhs_pad: float = 0.25
    """Trimmed from low X (image-left, the subject's right)."""
    lhs_pad: float = 0.25
    """Trimmed from high X (image-right, the subject's left)."""
    bot_pad: float = 0.25
    """Trimmed from low Y (below the chin)."""
    top_pad: float = 0.2
    """Trimmed from high Y (above the head)."""
    rear_pad: float = 0.4
    """Trimmed from low Z (the back of the head)."""
    front_pad: float = 0.1
    """Trimmed from high Z (in front of the face, toward the camera)."""
    resolution: int = 256
    """Samples per axis of the full cube."""
    cube_length: float = 1.0
    """Edge of the full cube in world units (EG3D box_warp; the reference hard-codes 1.0)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.resolution, int) and self.resolution >= 2):
            raise ValueError(f"resolution must be an int >= 2, got {self.resolution!r}")
        pads = (self.rhs_pad, self.lhs_pad, self.bot_pad, self.top_pad, self.rear_pad, self.front_pad)
        if any(not 0.0 <= p < 1.0 for p in pads):
            raise ValueError(f"pad fractions must be in [0, 1), got {pads}")
        for lo, hi in self.index_ranges:
            if lo >= hi:
                raise ValueError(f"pads leave nothing of the cube: index range [{lo}, {hi}) is empty")

    @property
    def index_ranges(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """Half-open kept index ranges along X, Y, Z: ((64, 192), (64, 205), (102, 231)) at 256."""
        n = self.resolution
        return (
            (pad_voxels(self.rhs_pad, n), n - pad_voxels(self.lhs_pad, n)),
            (pad_voxels(self.bot_pad, n), n - pad_voxels(self.top_pad, n)),
            (pad_voxels(self.rear_pad, n), n - pad_voxels(self.front_pad, n)),
        )

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """``index_ranges`` as slices: ``cube[..., sx, sy, sz]`` is the slab."""
        return tuple(slice(lo, hi) for lo, hi in self.index_ranges)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Slab shape in [x, y, z] order: (128, 141, 129) at 256."""
        return tuple(hi - lo for lo, hi in self.index_ranges)

    @property
    def world_bounds(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """World coordinates of the first and last kept samples along X, Y, Z (exact grid).

        At 256: x in [-0.2490, 0.2490], y in [-0.2490, 0.3000], z in [-0.1000, 0.4020].
        """
        n, length = self.resolution, self.cube_length
        return tuple(
            (index_to_world(lo, n, length), index_to_world(hi - 1, n, length)) for lo, hi in self.index_ranges
        )

    def flat_indices(self, device: torch.device | str | None = None) -> Tensor:  # [X*Y*Z] int64
        """Flat grid indices of the slab's voxels, k fastest: values reshape to ``self.shape``."""
        return box_flat_indices(self.index_ranges, self.resolution, device=device)


REWARD_SLAB = SlabSpec()
"""The reference's crop, ``pads_vals_entire.yaml`` at 256^3 (docs/method/reference_method.md §1.2)."""


def reward_slab_coordinates(
    spec: SlabSpec = REWARD_SLAB,
    eg3d_grid: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:  # [X*Y*Z, 3] float32 (x, y, z)
    """World coordinates of the slab's samples only, k fastest: values reshape to ``spec.shape``.

    The default (``eg3d_grid=True``) returns exactly the points the reference evaluated: EG3D's
    ``create_samples`` grid, whose float32 index arithmetic shifts x and y by up to ~0.9 voxel
    (docs/method/eg3d.md §3.15). The released reward model was trained on sigma at those points, so scores
    are only comparable with them. ``eg3d_grid=False`` gives the exact grid.
    """
    indices = spec.flat_indices(device=device)  # (X*Y*Z,)
    if eg3d_grid:
        return grid_coordinates_eg3d(spec.resolution, spec.cube_length, indices=indices, device=device)
    return grid_coordinates(spec.resolution, spec.cube_length, indices=indices, device=device)


def crop_reward_slab(sigma_xyz: Tensor, spec: SlabSpec = REWARD_SLAB) -> Tensor:
    """Crop a sigma cube [..., N, N, N] in [x, y, z] order to the slab [..., X, Y, Z] (no flip).

    Returns a view. At N = 256: [..., 256, 256, 256] -> [..., 128, 141, 129].
    """
    n = spec.resolution
    assert sigma_xyz.ndim >= 3 and tuple(sigma_xyz.shape[-3:]) == (n, n, n), (
        f"expected a sigma cube [..., {n}, {n}, {n}] in [x, y, z] order, got {tuple(sigma_xyz.shape)}"
    )
    sx, sy, sz = spec.slices
    return sigma_xyz[..., sx, sy, sz]  # (..., X, Y, Z)


def normalise_slab_0_100(slab: Tensor) -> Tensor:
    """Per-sample min-max normalisation to [0, 100] over the last three (spatial) dims.

    ``x -> (x - min x) / (max x - min x) * 100``, min and max over the whole slab of each sample
    (every leading index is one sample), no epsilon, no clamp (docs/method/reference_method.md §1.3, the
    reference's ``normalise_sigma_self``). Gradients flow through the min and max, as in
    fine-tuning (§5.3). A constant slab, for which the reference returns NaN, raises ``ValueError``.
    """
    assert slab.ndim >= 3, f"expected a slab [..., A, B, C], got {tuple(slab.shape)}"
    lo = slab.amin(dim=(-3, -2, -1), keepdim=True)  # (..., 1, 1, 1)
    hi = slab.amax(dim=(-3, -2, -1), keepdim=True)  # (..., 1, 1, 1)
    span = hi - lo
    if not bool(torch.all(span > 0)):
        raise ValueError(
            "cannot min-max normalise a slab whose values are all equal (or NaN): max - min = 0 "
            "would divide by zero; check that sigma was evaluated (not zero-filled) for every sample"
        )
    return (slab - lo) / span * 100


def slab_to_model_order(slab_xyz: Tensor) -> Tensor:
    """[..., X, Y, Z] -> [..., Z, Y, X]: the reward model's layout (docs/method/reference_method.md §1.3).

    The reference's ``permute(2, 1, 0)`` on the last three dims (its comment says "Z,X,Y"; the
    actual order is Z, Y, X). At 256: [..., 128, 141, 129] -> [..., 129, 141, 128].
    """
    assert slab_xyz.ndim >= 3, f"expected [..., X, Y, Z], got {tuple(slab_xyz.shape)}"
    return slab_xyz.transpose(-3, -1)  # (..., Z, Y, X)


def slab_from_model_order(slab_zyx: Tensor) -> Tensor:
    """Inverse of :func:`slab_to_model_order`: [..., Z, Y, X] -> [..., X, Y, Z]."""
    assert slab_zyx.ndim >= 3, f"expected [..., Z, Y, X], got {tuple(slab_zyx.shape)}"
    return slab_zyx.transpose(-3, -1)  # (..., X, Y, Z)
