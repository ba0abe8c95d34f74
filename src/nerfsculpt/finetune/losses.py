"""Loss terms of fine-tuning: EG3D's GAN losses (docs/method/eg3d.md §5.2) and the paper's reward and consistency terms.

Functional forms take logits, rewards or sigma; the two paper terms also come as small modules
holding their weights (EDM-style), tested to agree with the functions.

Example::

    >>> import torch
    >>> clamped_reward_loss(torch.tensor([-12.0, 0.5, 11.0]))        # 10 * mean(-clamp(r, -10, 10))
    tensor(-5.)
    >>> sigma_consistency_loss(torch.zeros(1, 4, 4, 4), torch.ones(1, 4, 4, 4))
    tensor(0.0100)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ---- EG3D's GAN terms (docs/method/eg3d.md §5.2)
def generator_gan_loss(fake_logits: Tensor) -> Tensor:  # [N, 1] -> []
    """Non-saturating generator loss: mean softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_gan_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:  # [N, 1], [M, 1] -> []
    """Discriminator loss: mean softplus(D(fake)) + mean softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, images: dict[str, Tensor]) -> Tensor:  # [N, 1], {name: [N, C, H, W]} -> [N]
    """Squared gradient norm of D's logits w.r.t. every input image, summed per sample (dual R1).

    The images must have been passed to D with ``requires_grad``; the graph is kept so that the
    penalty can be back-propagated to D's weights. Multiply by gamma / 2 for the loss.
    """
    grads = torch.autograd.grad(real_logits.sum(), list(images.values()), create_graph=True)
    return sum(g.square().sum(dim=(1, 2, 3)) for g in grads)


def density_l1_loss(sigma: Tensor, sigma_perturbed: Tensor, weight: float = 0.25) -> Tensor:  # [N, M, 1] x2 -> []
    """EG3D's 'l1' density regulariser: weight * mean |sigma(x) - sigma(x + eps)|."""
    return F.l1_loss(sigma, sigma_perturbed) * weight


# ---- the paper's terms (Eq. 6-7)
def clamped_reward_loss(rewards: Tensor, weight: float = 10.0, clamp: float = 10.0) -> Tensor:  # [N] -> []
    """lambda_r * L_r with L_r = mean over samples of -clamp(r, -clamp, clamp) (§3.2.3).

    Rewards beyond the clamp give no gradient: the generator is not pushed further once a sample is
    rated ``clamp``, and samples rated below ``-clamp`` do not dominate the batch.
    """
    assert rewards.ndim == 1, f"expected rewards [N], got {tuple(rewards.shape)}"
    return -rewards.clamp(-clamp, clamp).mean() * weight


def clamp_rate(rewards: Tensor, clamp: float = 10.0) -> float:  # [N] -> fraction of rewards at or beyond the clamp
    """Fraction of rewards that the clamp cuts (their gradient is zero)."""
    return float((rewards.detach().abs() >= clamp).float().mean()) if len(rewards) else 0.0


def sigma_consistency_loss(sigma_new: Tensor, sigma_old: Tensor, weight: float = 0.01) -> Tensor:  # [N, ...] -> []
    """lambda_c * L_c with L_c = mean |sigma_new - sigma_old| over every voxel of every sample (Eq. 7)."""
    assert sigma_new.shape == sigma_old.shape, f"shapes differ: {tuple(sigma_new.shape)} vs {tuple(sigma_old.shape)}"
    return (sigma_new - sigma_old.detach()).abs().mean() * weight


class ClampedRewardLoss(nn.Module):
    """Module form of :func:`clamped_reward_loss` with the paper's lambda_r = 10 and clamp 10."""

    def __init__(self, weight: float = 10.0, clamp: float = 10.0):
        super().__init__()
        self.weight, self.clamp = weight, clamp

    def forward(self, rewards: Tensor) -> Tensor:  # [N] -> []
        return clamped_reward_loss(rewards, self.weight, self.clamp)


class SigmaConsistencyLoss(nn.Module):
    """Module form of :func:`sigma_consistency_loss` with the paper's lambda_c = 0.01."""

    def __init__(self, weight: float = 0.01):
        super().__init__()
        self.weight = weight

    def forward(self, sigma_new: Tensor, sigma_old: Tensor) -> Tensor:  # [N, R, R, R] x2 -> []
        return sigma_consistency_loss(sigma_new, sigma_old, self.weight)
