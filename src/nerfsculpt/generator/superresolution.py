"""EG3D's hybrid super-resolution modules (8XDC, 8X, 4X, 2X), docs/method/eg3d.md §3.12.

One class covers all four: they differ only in input resolution, block widths, whether the first
block upsamples, and when the input is resized (see `SUPERRESOLUTION_SPECS`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.generator import ops
from nerfsculpt.generator.config import SuperResolutionSpec
from nerfsculpt.generator.layers import SynthesisBlock, SynthesisBlockNoUp


class SuperResolution(nn.Module):
    """Two modulated synthesis blocks driven by the last w, on the 32-channel feature image."""

    def __init__(
        self,
        class_name: str,
        spec: SuperResolutionSpec,
        channels: int,  # features of the neural-rendered image (32)
        img_resolution: int,
        w_dim: int,
        sr_num_fp16_res: int,
        sr_antialias: bool,
        fused_modconv_default: bool | str = "inference_only",
    ):
        super().__init__()
        self.eg3d_class_name = class_name
        self.spec = spec
        self.input_resolution = spec.input_resolution
        self.img_resolution = img_resolution
        self.sr_antialias = sr_antialias
        use_fp16 = sr_num_fp16_res > 0
        conv_clamp = 256 if use_fp16 else None  # docs/method/eg3d.md §7.11: the clamp applies in fp32 too
        res0 = spec.input_resolution * (2 if spec.upsample[0] else 1)
        block0_cls = SynthesisBlock if spec.upsample[0] else SynthesisBlockNoUp
        self.block0 = block0_cls(channels, spec.channels[0], w_dim=w_dim, resolution=res0, img_channels=3,
                                 is_last=False, use_fp16=use_fp16, conv_clamp=conv_clamp,
                                 fused_modconv_default=fused_modconv_default)
        self.block1 = SynthesisBlock(spec.channels[0], spec.channels[1], w_dim=w_dim, resolution=res0 * 2,
                                     img_channels=3, is_last=True, use_fp16=use_fp16, conv_clamp=conv_clamp,
                                     fused_modconv_default=fused_modconv_default)
        if spec.has_resample_filter:
            self.register_buffer("resample_filter", ops.setup_filter())

    def _resize(self, x: Tensor) -> Tensor:
        r = self.input_resolution
        return F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=self.sr_antialias)

    def forward_with_raw(
        self,
        rgb: Tensor,  # [N, 3, R, R] first three channels of the feature image
        x: Tensor,  # [N, C, R, R] the feature image
        ws: Tensor,  # [N, num_ws, w_dim]; only the last w is used
        **block_kwargs,
    ) -> tuple[Tensor, Tensor]:
        """Returns (image [N,3,H,H], raw image as EG3D returns it).

        Quirk reproduced: EG3D's 2X/4X modules add block0's ToRGB output *in place* into the raw
        image when the input is not resized, so their `image_raw` is rgb + torgb0 (docs/method/eg3d.md §3.12).
        """
        ws = ws[:, -1:, :].repeat(1, 3, 1)  # (N, 3, w_dim)
        size = x.shape[-1]
        resize = size < self.input_resolution if self.spec.resize_when_smaller_only else size != self.input_resolution
        if resize:
            x, rgb = self._resize(x), self._resize(rgb)
        x, img = self.block0(x, rgb, ws, **block_kwargs)
        raw = img if (not self.spec.upsample[0] and not resize) else None
        x, img = self.block1(x, img, ws, **block_kwargs)
        return img, raw

    def forward(self, rgb: Tensor, x: Tensor, ws: Tensor, **block_kwargs) -> Tensor:
        return self.forward_with_raw(rgb, x, ws, **block_kwargs)[0]
