"""The sigma-field reward network: the reference's ``sfield_256`` model (docs/method/reference_method.md §4.1-§4.5).

Input: the normalised reward slab [N, 1, Z, Y, X] = [N, 1, 129, 141, 128] (``geometry.slab``:
crop, 0-100 min-max per sample, (Z, Y, X) order). Then:

1. the U-Net (``reward.unet3d``) gives U [N, 8, Z, Y, X];
2. feature path: max over U's last 4 channels -> [N, Z, Y, X] -> ``AdaptiveMaxPool3d((8192, 1, 1))``
   -> g [N, 8192]: each entry is the maximum over a Z-slice (or two neighbouring ones), so g is a
   129-value "max per depth slice" profile repeated to 8192 (§4.2);
3. ``RewardHeads``: g -> embedding f [N, 512] -> reward r [N] (+ Bradley-Terry log-strength, pair head);
4. reconstruction path (the paper's auxiliary L1 loss, §4.5): max over U's first 4 channels ->
   1x1x1 conv ``conv3d_for_recon`` (weight initialised to exactly 1, bias to U(-0.005, 0.005)) ->
   [N, 1, Z, Y, X]. The reference computes it but never uses it (its forward returns the
   embedding only); ``outputs(x, reconstruct=True)`` returns it for ``reward.losses``.

At the reference's sizes the network has **12,686,699** parameters. The reference also holds an
unused ``Conv1d(1, 1, 1)`` (``conv1d_for_recon``, 2 parameters); it is kept so that released
state dicts load strictly and the count matches.

Example::

    net = SigmaRewardNet(SigmaRewardConfig())
    x = slab_to_model_order(normalise_slab_0_100(crop_reward_slab(cube)))[:, None]   # [N, 1, 129, 141, 128]
    r = net(x)                                                                         # [N]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.geometry.slab import normalise_slab_0_100, slab_to_model_order
from nerfsculpt.reward.heads import HeadsConfig, NetworkConfig, RewardHeads, RewardOutputs
from nerfsculpt.reward.unet3d import ResidualUNetSE3D


@dataclass(frozen=True)
class SigmaRewardConfig(NetworkConfig):
    """Architecture of the sigma reward (defaults = the reference's ``sfield_256``, 12,686,699 parameters)."""

    what: ClassVar[str] = "sigma reward config"

    f_maps: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    """U-Net channels per level (6 levels: 5 poolings, so every input side must be >= 32)."""
    num_groups: int = 8
    """GroupNorm groups (one group for tensors with fewer channels)."""
    unet_out_channels: int = 8
    """Channels of the U-Net output U."""
    feature_channels: int = 4
    """The last this-many channels of U make the global feature (max over them)."""
    recon_channels: int = 4
    """The first this-many channels of U make the reconstruction (max over them)."""
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    """Embedding MLP and heads; ``heads.global_features`` is the adaptive max-pool's output size along Z."""


def sigma_input(slab_xyz: Tensor) -> Tensor:  # [N, X, Y, Z] raw sigma -> [N, 1, Z, Y, X]
    """The sigma reward's input: min-max 0-100 per slab, (Z, Y, X) order (docs/method/reference_method.md §1.3),
    in the default floating dtype (float32 unless changed with ``torch.set_default_dtype``)."""
    assert slab_xyz.ndim == 4, f"expected raw sigma slabs [N, X, Y, Z], got {tuple(slab_xyz.shape)}"
    if not bool(torch.isfinite(slab_xyz).all()):
        raise ValueError("the sigma slab contains NaN or infinite values; check the sigma extraction")
    x = slab_xyz.to(torch.get_default_dtype())
    return slab_to_model_order(normalise_slab_0_100(x))[:, None]  # (N, 1, Z, Y, X)


SIGMA_PRESETS: dict[str, SigmaRewardConfig] = {
    "full": SigmaRewardConfig(),
    "small": SigmaRewardConfig(f_maps=(4, 8, 16, 32, 64), num_groups=4, heads=HeadsConfig(
        global_features=1024, embedding_hidden=(128, 128), embedding=64, head_hidden=(64, 32))),
    "tiny": SigmaRewardConfig(f_maps=(4, 8, 16, 32), num_groups=4, heads=HeadsConfig(
        global_features=256, embedding_hidden=(64, 64), embedding=32, head_hidden=(32, 16))),
}
"""Named sizes: ``full`` = the paper's (12.7M parameters, every slab side >= 32); ``small`` (0.64M, sides
>= 16) for CPU runs on 64^3 slabs; ``tiny`` (4 levels, sides >= 8) for the synthetic benchmark's 32^3
slabs, the reward of the test suite and of the benchmark recipe (docs/finetune.md)."""


def min_slab_side(config: SigmaRewardConfig) -> int:
    """The smallest slab side the U-Net takes: one halving per level after the first."""
    return 2 ** (len(config.f_maps) - 1)


class SigmaRewardNet(nn.Module):
    """Normalised slab [N, 1, Z, Y, X] -> reward [N] (module docstring)."""

    def __init__(self, config: SigmaRewardConfig | None = None):
        super().__init__()
        config = config or SigmaRewardConfig()
        u = config.unet_out_channels
        if not (1 <= config.feature_channels <= u and 1 <= config.recon_channels <= u):
            raise ValueError(f"feature_channels and recon_channels must be in 1..{u} (the U-Net's outputs)")
        self.config = config
        self.unet = ResidualUNetSE3D(1, u, config.f_maps, config.num_groups)
        self.conv3d_for_recon = nn.Conv3d(1, 1, 1)
        self.conv1d_for_recon = nn.Conv1d(1, 1, 1)  # unused, as in the reference (module docstring)
        self.heads = RewardHeads(config.heads)
        with torch.no_grad():
            self.conv3d_for_recon.weight.fill_(1.0)
            self.conv3d_for_recon.bias.uniform_(-0.005, 0.005)

    @property
    def checkpointing(self) -> bool:
        """Recompute U-Net activations in the backward pass (less memory, ~1/3 more compute)."""
        return self.unet.checkpointing

    @checkpointing.setter
    def checkpointing(self, value: bool) -> None:
        self.unet.checkpointing = bool(value)

    def prepare(self, raw: Tensor) -> Tensor:  # [N, X, Y, Z] raw sigma slabs -> [N, 1, Z, Y, X]
        return sigma_input(raw)

    def global_features(self, u: Tensor) -> Tensor:  # [N, 8, Z, Y, X] -> [N, G]
        f = u[:, -self.config.feature_channels:].amax(dim=1, keepdim=True)  # (N, 1, Z, Y, X)
        g = F.adaptive_max_pool3d(f, (self.config.heads.global_features, 1, 1))  # (N, 1, G, 1, 1)
        return g.flatten(1)  # (N, G)

    def _features_and_recon(self, last: Tensor, reconstruct: bool) -> tuple[Tensor, Tensor | None]:
        u = self.unet.final_conv(last)  # (N, 8, Z, Y, X)
        recon = None
        if reconstruct:
            recon = self.conv3d_for_recon(u[:, : self.config.recon_channels].amax(dim=1, keepdim=True))  # (N,1,Z,Y,X)
        return self.global_features(u), recon

    def outputs(self, x: Tensor, reconstruct: bool = False) -> tuple[RewardOutputs, Tensor | None]:
        """Embedding, reward and BT strength of slabs x [N, 1, Z, Y, X], and the reconstruction if asked."""
        _check_input(x)
        last = self.unet.decode(x)  # (N, 8, Z, Y, X), before the U-Net's final 1x1 conv
        if self.checkpointing and torch.is_grad_enabled():  # U itself is recomputed, not kept
            from torch.utils.checkpoint import checkpoint

            g, recon = checkpoint(self._features_and_recon, last, reconstruct, use_reentrant=False)
        else:
            g, recon = self._features_and_recon(last, reconstruct)
        return self.heads(g), recon

    def forward(self, x: Tensor) -> Tensor:  # [N, 1, Z, Y, X] -> [N]
        return self.outputs(x)[0].reward


def _check_input(x: Tensor) -> None:
    assert x.ndim == 5 and x.shape[1] == 1, (
        f"expected normalised slabs [N, 1, Z, Y, X] (e.g. [N, 1, 129, 141, 128]), got {tuple(x.shape)}; "
        f"build them with geometry.slab (crop_reward_slab, normalise_slab_0_100, slab_to_model_order)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("the slab contains NaN or infinite values; check the sigma extraction")
