"""EG3D's DualDiscriminator: a ResNet StyleGAN2 discriminator on [image, upsampled raw image].

Weight-compatible with NVIDIA's checkpoints (docs/method/eg3d.md §2.3, §3.18).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.generator import ops
from nerfsculpt.generator.config import DiscriminatorConfig
from nerfsculpt.generator.layers import Conv2dLayer, FullyConnectedLayer, MappingNetwork


class DiscriminatorBlock(nn.Module):
    """'resnet' block: [fromrgb], conv0, conv1 (down 2) plus a 1x1 down-sampling skip."""

    eg3d_class_name = "DiscriminatorBlock"

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 use_fp16: bool = False, conv_clamp: float | None = None):
        super().__init__()
        assert in_channels in (0, tmp_channels)
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = "resnet"
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", ops.setup_filter())
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation="lrelu",
                                       conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2,
                                 conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2)

    def forward(self, x: Tensor | None, img: Tensor | None, force_fp32: bool = False) -> tuple[Tensor, None]:
        if (x if x is not None else img).device.type != "cuda":
            force_fp32 = True
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else self.conv0.weight.dtype
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0:
            assert img is not None and img.shape[1:] == (self.img_channels, self.resolution, self.resolution), (
                f"expected images [N, {self.img_channels}, {self.resolution}, {self.resolution}], "
                f"got {None if img is None else tuple(img.shape)}"
            )
            y = self.fromrgb(img.to(dtype))
            x = x + y if x is not None else y
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x, None


class MinibatchStdLayer(nn.Module):
    """Appends the std of features over groups of samples as extra channel(s)."""

    eg3d_class_name = "MinibatchStdLayer"

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C + F, H, W]
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        assert n % g == 0, f"batch {n} must be a multiple of the minibatch-std group size {g}"
        y = x.reshape(g, -1, f, c // f, h, w)  # (G, n, F, c, H, W)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)  # (n, F, c, H, W)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # (n, F)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch std, conv, fc, out, projection onto the mapped label."""

    eg3d_class_name = "DiscriminatorEpilogue"

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 mbstd_group_size: int = 4, mbstd_num_channels: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = "resnet"
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, cmap: Tensor | None) -> Tensor:  # [N, C, 4, 4] -> [N, 1]
        x = x.to(self.conv.weight.dtype)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class DualDiscriminator(nn.Module):
    """D({'image': [N,3,H,W], 'image_raw': [N,3,R,R]}, c [N,25]) -> logits [N, 1]."""

    eg3d_class_name = "DualDiscriminator"

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        self.c_dim = config.c_dim
        self.img_resolution = config.img_resolution
        self.img_channels = 2 * config.img_channels
        self.block_resolutions = config.block_resolutions
        log2 = int(math.log2(config.img_resolution))
        fp16_resolution = max(2 ** (log2 + 1 - config.num_fp16_res), 8)
        cmap_dim = config.cmap_dim if config.cmap_dim is not None else config.channels(4)
        if config.c_dim == 0:
            cmap_dim = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                config.channels(res) if res < config.img_resolution else 0, config.channels(res),
                config.channels(res // 2), resolution=res, img_channels=self.img_channels,
                use_fp16=res >= fp16_resolution, conv_clamp=config.conv_clamp,
            )
            setattr(self, f"b{res}", block)
        if config.c_dim > 0:
            self.mapping = MappingNetwork(0, config.c_dim, cmap_dim, num_ws=None, num_layers=config.mapping_layers,
                                          w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(config.channels(4), cmap_dim=cmap_dim, resolution=4,
                                        img_channels=self.img_channels, mbstd_group_size=config.mbstd_group_size,
                                        mbstd_num_channels=config.mbstd_num_channels, conv_clamp=config.conv_clamp)
        self.register_buffer("resample_filter", ops.setup_filter())
        self.disc_c_noise = config.disc_c_noise

    def forward(self, img: dict[str, Tensor], c: Tensor, update_emas: bool = False, **block_kwargs) -> Tensor:
        del update_emas
        size = img["image"].shape[-1]
        raw = F.interpolate(img["image_raw"], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x, images = None, torch.cat([img["image"], raw], 1)  # (N, 6, H, W)
        for res in self.block_resolutions:
            x, images = getattr(self, f"b{res}")(x, images, **block_kwargs)
        cmap = None
        if self.c_dim > 0:
            if self.disc_c_noise > 0:
                c = c + torch.randn_like(c) * c.std(0) * self.disc_c_noise
            cmap = self.mapping(None, c)
        return self.b4(x, cmap)
