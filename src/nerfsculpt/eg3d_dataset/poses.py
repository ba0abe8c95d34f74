"""The FFHQ-like camera prior: labels drawn from :class:`nerfsculpt.eg3d_dataset.PoseDistribution`."""

from __future__ import annotations

import torch
from torch import Tensor

from nerfsculpt.camera import intrinsics_from_focal, look_at_pose, make_label
from nerfsculpt.eg3d_dataset import DatasetError, PoseDistribution


def _truncated_normal(n: int, std: float, limit: float, generator: torch.Generator | None) -> Tensor:  # [n] float64
    """N(0, std^2) restricted to [-limit, limit] by the inverse cdf: exactly one uniform per sample."""
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    if std == 0:
        return torch.zeros(n, dtype=torch.float64)
    lo = torch.special.ndtr(torch.tensor(-limit / std, dtype=torch.float64))  # P(X < -limit)
    return (std * torch.special.ndtri(lo + u * (1 - 2 * lo))).clamp(-limit, limit)  # clamp: rounding only


def sample_ffhq_like_poses(
    n: int,
    generator: torch.Generator | None = None,
    distribution: PoseDistribution | None = None,
) -> Tensor:  # [n, 25] labels
    """``n`` labels from ``distribution`` (default FFHQ-like); yaw draws first, then pitch, from ``generator``."""
    distribution = distribution or PoseDistribution()
    if not (isinstance(n, int) and n >= 1):
        raise DatasetError(f"n must be a positive integer, got {n!r}")
    distribution.validate()
    yaw = _truncated_normal(n, distribution.yaw_std, distribution.yaw_limit, generator)  # (n,)
    pitch = _truncated_normal(n, distribution.pitch_std, distribution.pitch_limit, generator)  # (n,)
    poses = look_at_pose(yaw, pitch, distribution.pivot, distribution.radius)  # (n, 4, 4)
    return make_label(poses, intrinsics_from_focal(distribution.focal))
