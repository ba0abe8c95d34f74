"""The paper's geometry terms of a batch: lambda_r L_r + lambda_c L_c (Eq. 6-7).

See docs/method/reference_method.md §5.3-5.4.

For each latent z, at the canonical camera with constant noise:

- reward: ws at psi ``reward_psi`` (1.0) -> tri-planes (one backbone pass) -> raw sigma on the reward
  slab, decoded in checkpointed chunks (``geometry.sigma.reward_slab(differentiable=True)``) -> the
  bundle's input transform (min-max 0-100, differentiable, (Z, Y, X)) -> r (an ensemble: each member's,
  combined by ``reward_objective``) -> -clamp(r, -10, 10);
- consistency: ws at psi ``consistency_psi`` (0.7) -> tri-planes (shared with the reward's when the two
  psi are equal) -> raw sigma on the full 64^3 cube of the live G and of the frozen pretrained G_ema
  -> mean |difference|.

The reference re-ran mapping + backbone for each of three 1M-point chunks of the slab and kept every
chunk's full decoder graph (§5.3); here the backbone runs once per latent and truncation and the
decoder activations of a chunk are recomputed in the backward pass (``benchmarks/finetune_step.py``).

Example::

    terms = GeometryTerms(config, bundle, G_old)
    loss, stats = terms(G, z)        # z [N, z_dim] -> scalar loss, {'reward': [N], 'L_r': .., 'L_c': ..}
                                     # (+ the weighted terms 'loss_r', 'loss_c' as tensors with their graphs)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from nerfsculpt.camera import canonical_camera
from nerfsculpt.finetune.config import PAPER_REWARD_MEAN, PAPER_REWARD_STD, FinetuneConfig
from nerfsculpt.finetune.losses import clamped_reward_loss, sigma_consistency_loss
from nerfsculpt.geometry.sigma import reward_slab, sigma_grid
from nerfsculpt.reward.bundle import RewardBundle

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def sigma_autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The decoder dtype of the reward slab for ``FinetuneConfig.sigma_autocast`` on ``device``."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return AUTOCAST_DTYPES[setting]


class GeometryTerms:
    """lambda_r L_r + lambda_c L_c of a batch of latents; the reward network and G_old stay frozen."""

    def __init__(self, config: FinetuneConfig, reward: RewardBundle | None, G_old: nn.Module):
        if config.lambda_r > 0 and reward is None:
            raise ValueError("lambda_r > 0 needs a reward bundle")
        self.config = config
        self.reward = reward
        self.G_old = G_old.eval().requires_grad_(False)
        self.baseline: tuple[Any, Any] | None = None  # tick-0 (mean, std) of reward_standardise, floats or one per
        # ensemble member (lists); None = raw r
        if reward is not None:
            reward.model.eval().requires_grad_(False)
            if hasattr(reward.model, "checkpointing"):
                reward.model.checkpointing = config.reward_checkpointing
            box_warp = float(G_old.rendering_kwargs["box_warp"])
            self.spec = dataclasses.replace(reward.extraction.slab_spec, cube_length=box_warp)

    @property
    def standardised(self) -> bool:
        """Whether L_r reads (r - mean) / std (``reward_standardise`` 'on', once the baseline is set)."""
        return self.baseline is not None and self.config.reward_standardise == "on"

    @property
    def clamp(self) -> float:
        """The clamp of L_r: ``reward_clamp_standardised`` on standardised rewards, else ``reward_clamp``."""
        return self.config.reward_clamp_standardised if self.standardised else self.config.reward_clamp

    def scaled(self, rewards: Tensor) -> Tensor:  # [N] or [K, N] (members) -> same shape
        """The rewards L_r reads: raw until a baseline is set, then standardised or calibrated to the paper's scale."""
        if self.baseline is None:
            return rewards
        mean, std = (torch.as_tensor(v, dtype=rewards.dtype, device=rewards.device) for v in self.baseline)
        if mean.ndim == 1:  # one (mean, std) per member: rewards [K, N], each member on its own tick-0 scale
            mean, std = mean[:, None], std[:, None]  # (K, 1)
        z = (rewards - mean) / std
        return z if self.standardised else PAPER_REWARD_MEAN + PAPER_REWARD_STD * z

    @property
    def active(self) -> bool:
        return self.config.lambda_r > 0 or self.config.lambda_c > 0

    def _ws(self, G: nn.Module, z: Tensor, psi: float) -> Tensor:  # [N, z_dim] -> [N, num_ws, w_dim]
        c = canonical_camera(device=z.device).expand(len(z), -1)  # (N, 25)
        return G.mapping(z, c, truncation_psi=psi, truncation_cutoff=self.config.truncation_cutoff)

    def member_rewards(self, G: nn.Module, planes: Tensor) -> Tensor:  # [N, 3, C, H, W] -> [K, N], differentiable
        """Each reward member's score of each latent's sigma slab (K = 1 for a single reward), with gradients
        to the planes and G's decoder."""
        ext = self.reward.extraction
        dtype = sigma_autocast_dtype(self.config.sigma_autocast, planes.device)
        slab = reward_slab(G, None, self.spec, chunk_points=self.config.chunk_points, differentiable=True,
                           checkpoint=True, eg3d_grid=ext.eg3d_grid, autocast_dtype=dtype, planes=planes)
        # slab: (N, X, Y, Z) raw sigma
        return self.reward.member_rewards(self.reward.prepare_slabs(slab)).reshape(-1, len(planes))  # (K, N)

    def combine(self, members: Tensor) -> Tensor:  # [K, N] scaled rewards -> [N]
        """The ensemble objective ``reward_objective``: mean, mean - beta * variance (uwo), or min (wco)."""
        objective = self.config.reward_objective
        if objective == "wco":
            return members.min(dim=0).values
        mean = members.mean(dim=0)
        if objective == "uwo":
            return mean - self.config.uwo_beta * members.var(dim=0, correction=0)
        return mean

    def __call__(self, G: nn.Module, z: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """(lambda_r L_r + lambda_c L_c, statistics) for latents ``z`` [N, z_dim] of the live generator ``G``."""
        cfg = self.config
        noise = self.reward.extraction.noise_mode if self.reward is not None else "const"
        loss = z.new_zeros(())
        stats: dict[str, Any] = {}
        planes = None
        if cfg.lambda_r > 0:
            planes = G.planes(self._ws(G, z, cfg.reward_psi), noise_mode=noise)  # (N, 3, C, H, W)
            members = self.scaled(self.member_rewards(G, planes))  # (K, N)
            rewards = self.combine(members)  # (N,)
            loss_r = clamped_reward_loss(rewards, cfg.lambda_r, self.clamp)
            loss = loss + loss_r
            stats.update(reward=rewards.detach(), L_r=float(loss_r.detach()) / cfg.lambda_r, loss_r=loss_r)
            if len(members) > 1:
                stats["spread"] = members.detach().std(dim=0, correction=0)  # (N,) the members' disagreement
        if cfg.lambda_c > 0:
            if planes is None or cfg.consistency_psi != cfg.reward_psi:
                planes = G.planes(self._ws(G, z, cfg.consistency_psi), noise_mode="const")  # (N, 3, C, H, W)
            new = sigma_grid(G, None, cfg.consistency_resolution, chunk_points=cfg.chunk_points,
                             differentiable=True, checkpoint=True, planes=planes)  # (N, R, R, R)
            with torch.no_grad():
                old = sigma_grid(self.G_old, self._ws(self.G_old, z, cfg.consistency_psi),
                                 cfg.consistency_resolution, chunk_points=cfg.chunk_points)
            old = old.clone()  # a normal tensor: sigma_grid ran in inference mode
            loss_c = sigma_consistency_loss(new, old, cfg.lambda_c)
            loss = loss + loss_c
            stats.update(L_c=float(loss_c.detach()) / cfg.lambda_c, loss_c=loss_c)
        return loss, stats
