"""The sigma reward's backbone: a squeeze-and-excitation residual 3-D U-Net (docs/method/reference_method.md §4.2).

Written here in plain PyTorch (the reference imports its blocks from ``pytorch-3dunet``, which
hard-requires torchvision). Submodule names follow that package's, so a reference ``state_dict``
maps onto this one by a prefix rename only (``reward.reference``):

- ``ResidualSEBlock(c_in, c_out)`` (``ResNetBlockSE``): ``conv1`` = 1x1x1 conv with bias when the
  channel count changes (else identity) gives the residual r; ``conv2`` = GroupNorm -> 3^3 conv (no
  bias) -> ReLU; ``conv3`` = GroupNorm -> 3^3 conv (no bias); ``out = ReLU(conv3(conv2(r)) + r)``;
  then scSE: the element-wise max of a channel gate (global average -> Linear -> ReLU -> Linear ->
  sigmoid) and a voxel gate (1x1x1 conv -> sigmoid), reduction ratio 1.
- encoder level 0: a block 1 -> f0; levels 1..L-1: MaxPool3d(2) then a block f(l-1) -> f(l);
- decoder stages: ConvTranspose3d(f(l) -> f(l-1), kernel 3, stride 2, padding 1, no bias), nearest
  resize to the skip tensor's size, **sum** with that skip, a block f(l-1) -> f(l-1);
- ``final_conv``: 1x1x1 conv f0 -> ``out_channels``.

GroupNorm uses ``num_groups`` groups, or one group when a tensor has fewer channels than that.

Example::

    unet = ResidualUNetSE3D()                        # f_maps (8, 16, 32, 64, 128, 256): 7,342,307 weights
    u = unet(torch.rand(1, 1, 129, 141, 128))        # [1, 8, 129, 141, 128]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(1 if channels < num_groups else num_groups, channels)


class NormConv(nn.Sequential):
    """GroupNorm -> 3^3 convolution without bias (-> ReLU): pytorch-3dunet's ``SingleConv`` in order 'gc(r)'."""

    def __init__(self, channels: int, num_groups: int, relu: bool):
        super().__init__()
        self.add_module("groupnorm", _group_norm(channels, num_groups))
        self.add_module("conv", nn.Conv3d(channels, channels, 3, padding=1, bias=False))
        if relu:
            self.add_module("ReLU", nn.ReLU(inplace=True))


class ChannelSE(nn.Module):
    """Channel gate: x * sigmoid(fc2(relu(fc1(mean over voxels of x)))) with reduction ratio 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels)
        self.fc2 = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, D, H, W]
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3, 4))))))  # (N, C)
        return x * gate[:, :, None, None, None]


class SpatialSE(nn.Module):
    """Voxel gate: x * sigmoid(1x1x1 conv C -> 1 of x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, D, H, W]
        return x * torch.sigmoid(self.conv(x))  # gate (N, 1, D, H, W)


class ChannelSpatialSE(nn.Module):
    """scSE: the element-wise maximum of the channel-gated and the voxel-gated tensor."""

    def __init__(self, channels: int):
        super().__init__()
        self.cSE = ChannelSE(channels)
        self.sSE = SpatialSE(channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.maximum(self.cSE(x), self.sSE(x))


class ResidualSEBlock(nn.Module):
    """Residual block with scSE (module docstring); [N, c_in, D, H, W] -> [N, c_out, D, H, W].

    With ``checkpointing = True`` (and gradients on) only the inputs of its three parts (the two
    normalised convolutions, the gates) are kept for the backward pass; each part's intermediate
    tensors are recomputed there.
    """

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 8):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.conv2 = NormConv(out_channels, num_groups, relu=True)
        self.conv3 = NormConv(out_channels, num_groups, relu=False)
        self.se_module = ChannelSpatialSE(out_channels)
        self.checkpointing = False

    def _merge(self, y: Tensor, residual: Tensor) -> Tensor:
        return F.relu(self.conv3(y) + residual)

    def forward(self, x: Tensor) -> Tensor:
        residual = self.conv1(x)
        if self.checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            y = checkpoint(self.conv2, residual, use_reentrant=False)
            out = checkpoint(self._merge, y, residual, use_reentrant=False)
            return checkpoint(self.se_module, out, use_reentrant=False)
        return self.se_module(self._merge(self.conv2(residual), residual))


class EncoderLevel(nn.Module):
    """Optional 2x max pooling, then a residual SE block."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int, pool: bool):
        super().__init__()
        self.pooling = nn.MaxPool3d(2) if pool else None
        self.basic_module = ResidualSEBlock(in_channels, out_channels, num_groups)

    def forward(self, x: Tensor) -> Tensor:
        if self.pooling is not None:
            x = self.pooling(x)  # (N, C, D/2, H/2, W/2), floored
        return self.basic_module(x)


class TransposedUpsampling(nn.Module):
    """ConvTranspose3d (kernel 3, stride 2, padding 1, no bias), then a nearest resize to ``size``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_transposed = nn.ConvTranspose3d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return F.interpolate(self.conv_transposed(x), size=tuple(size), mode="nearest")


class _Upsampling(nn.Module):
    """Holder that gives the state-dict key ``upsampling.upsample.conv_transposed`` of the reference."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.upsample = TransposedUpsampling(in_channels, out_channels)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return self.upsample(x, size)


class DecoderStage(nn.Module):
    """Upsample to the skip tensor's size, add the skip, then a residual SE block."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int):
        super().__init__()
        self.upsampling = _Upsampling(in_channels, out_channels)
        self.basic_module = ResidualSEBlock(out_channels, out_channels, num_groups)

    def forward(self, skip: Tensor, x: Tensor) -> Tensor:
        x = self.upsampling(x, skip.shape[2:])  # (N, C_skip, *skip spatial)
        return self.basic_module(skip + x)


class ResidualUNetSE3D(nn.Module):
    """[N, in_channels, D, H, W] -> [N, out_channels, D, H, W]; any D, H, W >= 2^(levels - 1).

    With ``checkpointing = True`` every block keeps only the inputs of its parts and recomputes the
    rest in the backward pass (``torch.utils.checkpoint``): same results, a fraction of the memory
    (``benchmarks/reward_memory.py``).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 8,
                 f_maps: Sequence[int] = (8, 16, 32, 64, 128, 256), num_groups: int = 8):
        super().__init__()
        f_maps = tuple(int(f) for f in f_maps)
        assert len(f_maps) >= 2 and all(f >= 1 for f in f_maps), f"f_maps needs >= 2 positive sizes, got {f_maps}"
        self.f_maps = f_maps
        self.encoders = nn.ModuleList(
            EncoderLevel(in_channels if level == 0 else f_maps[level - 1], f, num_groups, pool=level > 0)
            for level, f in enumerate(f_maps))
        reversed_maps = f_maps[::-1]
        self.decoders = nn.ModuleList(
            DecoderStage(reversed_maps[k], reversed_maps[k + 1], num_groups) for k in range(len(f_maps) - 1))
        self.final_conv = nn.Conv3d(f_maps[0], out_channels, 1)

    @property
    def checkpointing(self) -> bool:
        return all(block.checkpointing for block in self.modules() if isinstance(block, ResidualSEBlock))

    @checkpointing.setter
    def checkpointing(self, value: bool) -> None:
        for block in self.modules():
            if isinstance(block, ResidualSEBlock):
                block.checkpointing = bool(value)

    def _run(self, module: nn.Module, *args: Tensor) -> Tensor:
        """A level, checkpointed as a whole when checkpointing (its blocks are checkpointed inside too)."""
        if self.checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def decode(self, x: Tensor) -> Tensor:  # [N, in, D, H, W] -> [N, f0, D, H, W]: everything before final_conv
        minimum = 2 ** (len(self.f_maps) - 1)
        assert x.ndim == 5 and min(x.shape[2:]) >= minimum, (
            f"expected [N, C, D, H, W] with every spatial size >= {minimum}, got {tuple(x.shape)}")
        skips = []
        for encoder in self.encoders:
            x = self._run(encoder, x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, skips[-2::-1], strict=True):
            x = self._run(decoder, skip, x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.final_conv(self.decode(x))
