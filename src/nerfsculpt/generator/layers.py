"""StyleGAN2 layers as EG3D uses them: mapping network, modulated synthesis blocks, conv layers.

Module and parameter names equal EG3D's so that state dicts transfer 1:1 (docs/method/eg3d.md §2).
Every module records the EG3D class it stands for in `eg3d_class_name`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerfsculpt.generator import ops

NoiseMode = str  # 'random' | 'const' | 'none'
NOISE_MODES = ("random", "const", "none")


def resolve_fused_modconv(value: bool | str | None, default: bool | str, training: bool) -> bool:
    """EG3D's `fused_modconv`: True/False, or 'inference_only' = fused unless training."""
    if value is None:
        value = default
    if value == "inference_only":
        return not training
    return bool(value)


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: y = act(x W^T * m/sqrt(in) + b * m) (docs/method/eg3d.md §3.1)."""

    eg3d_class_name = "FullyConnectedLayer"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.lr_multiplier = lr_multiplier
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:  # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z, c -> w broadcast to `num_ws` copies, with truncation towards `w_avg` (docs/method/eg3d.md §3.2)."""

    eg3d_class_name = "MappingNetwork"

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = w_dim if c_dim > 0 else 0
        features = [z_dim + embed_features] + [w_dim] * num_layers
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    @property
    def compute_dtype(self) -> torch.dtype:
        """float32 as in EG3D, or float64 after `.double()` (for gradient checks)."""
        return self.fc0.weight.dtype

    def forward(
        self,
        z: Tensor | None,  # [N, z_dim]
        c: Tensor | None,  # [N, c_dim]
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:  # [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None)
        x = None
        if self.z_dim > 0:
            assert z is not None and z.ndim == 2 and z.shape[1] == self.z_dim, (
                f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}"
            )
            x = ops.normalize_2nd_moment(z.to(self.compute_dtype))
        if self.c_dim > 0:
            assert c is not None and c.ndim == 2 and c.shape[1] == self.c_dim, (
                f"c must be [N, {self.c_dim}], got {None if c is None else tuple(c.shape)}"
            )
            y = ops.normalize_2nd_moment(self.embed(c.to(self.compute_dtype)))
            x = torch.cat([x, y], dim=1) if x is not None else y  # z first (docs/method/eg3d.md §7.8)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # (N, num_ws, w_dim)
        if truncation_psi != 1:
            assert self.w_avg_beta is not None, "truncation needs a tracked w_avg"
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), noise, bias, lrelu (docs/method/eg3d.md §3.4)."""

    eg3d_class_name = "SynthesisLayer"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        conv_clamp: float | None = None,
        resample_filter: tuple[float, ...] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = "lrelu"
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = math.sqrt(2)
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: Tensor,  # [N, I, R/up, R/up]
        w: Tensor,  # [N, w_dim]
        noise_mode: NoiseMode = "random",
        fused_modconv: bool = True,
        gain: float = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:  # [N, O, R, R]
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device, generator=generator) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = ops.modulated_conv2d(
            x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, fused_modconv=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, producing the skip image (docs/method/eg3d.md §3.5)."""

    eg3d_class_name = "ToRGBLayer"

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor, fused_modconv: bool = True) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One 'skip'-architecture synthesis block: [conv0 (up 2)], conv1, torgb (docs/method/eg3d.md §3.6).

    With `upsample=False` it is EG3D's `SynthesisBlockNoUp` (first block of the 2X/4X SR modules):
    conv0 keeps the resolution and the incoming image is not upsampled.
    """

    eg3d_class_name = "SynthesisBlock"

    def __init__(
        self,
        in_channels: int,  # 0 = first block (learned constant input)
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        use_fp16: bool = False,
        conv_clamp: float | None = None,
        fused_modconv_default: bool | str = True,
        upsample: bool = True,
        use_noise: bool = True,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = "skip"
        self.use_fp16 = use_fp16
        self.fused_modconv_default = fused_modconv_default
        self.upsample = upsample
        self.register_buffer("resample_filter", ops.setup_filter())
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2 if upsample else 1,
                                        conv_clamp=conv_clamp, use_noise=use_noise)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    use_noise=use_noise)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(
        self,
        x: Tensor | None,  # [N, I, R/2, R/2] (R x R without upsampling), None for the first block
        img: Tensor | None,  # [N, img_channels, R/2, R/2] skip image so far
        ws: Tensor,  # [N, num_conv + num_torgb, w_dim]
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        noise_mode: NoiseMode = "random",
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        assert ws.ndim == 3 and ws.shape[1] == self.num_conv + self.num_torgb, (
            f"block b{self.resolution} needs ws [N, {self.num_conv + self.num_torgb}, {self.w_dim}], "
            f"got {tuple(ws.shape)}"
        )
        w_iter = iter(ws.unbind(dim=1))
        if ws.device.type != "cuda":
            force_fp32 = True
        img_dtype = self.conv1.weight.dtype  # float32 as in EG3D (float64 after `.double()`)
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else img_dtype
        fused = resolve_fused_modconv(fused_modconv, self.fused_modconv_default, self.training)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused, generator=generator)
        else:
            in_res = self.resolution // 2 if self.upsample else self.resolution
            assert x is not None and x.shape[1:] == (self.in_channels, in_res, in_res), (
                f"block b{self.resolution} expects x [N, {self.in_channels}, {in_res}, {in_res}], "
                f"got {None if x is None else tuple(x.shape)}"
            )
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused, generator=generator)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused, generator=generator)

        if img is not None and self.upsample:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused).to(img_dtype)
        img = img + y if img is not None else y
        return x, img


class SynthesisBlockNoUp(SynthesisBlock):
    """EG3D's `SynthesisBlockNoUp`: a synthesis block that keeps its input resolution."""

    eg3d_class_name = "SynthesisBlockNoUp"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, upsample=False, **kwargs)


class SynthesisNetwork(nn.Module):
    """Blocks b4 .. b{img_resolution}; routes ws so that each torgb shares the next conv0's w."""

    eg3d_class_name = "SynthesisNetwork"

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        conv_clamp: float | None = None,
        fused_modconv_default: bool | str = True,
    ):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        log2 = int(math.log2(img_resolution))
        assert 2**log2 == img_resolution >= 4, f"resolution must be a power of 2, got {img_resolution}"
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=res == img_resolution, use_fp16=res >= fp16_resolution,
                conv_clamp=conv_clamp, fused_modconv_default=fused_modconv_default,
            )
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: Tensor, **block_kwargs) -> Tensor:  # [N, num_ws, w_dim] -> [N, C, R, R]
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}"
        )
        ws = ws.to(self.b4.conv1.weight.dtype)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img


class StyleGAN2Backbone(nn.Module):
    """The StyleGAN2 generator EG3D uses to produce the tri-planes (EG3D's `Generator`)."""

    eg3d_class_name = "Generator"

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
        **synthesis_kwargs,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, num_layers=mapping_layers,
                                      lr_multiplier=mapping_lr_multiplier, w_avg_beta=w_avg_beta)

    def forward(self, z: Tensor, c: Tensor, truncation_psi: float = 1, truncation_cutoff: int | None = None,
                update_emas: bool = False, **synthesis_kwargs) -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv with optional FIR down-sampling, bias and activation (discriminator)."""

    eg3d_class_name = "Conv2dLayer"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation = activation
        self.up = 1
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = math.sqrt(2) if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: Tensor, gain: float = 1) -> Tensor:
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = ops.conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)
