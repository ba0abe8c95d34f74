"""Pure-PyTorch primitives of StyleGAN2/EG3D: FIR resampling, bias+activation, modulated conv.

These replace EG3D's compiled `upfirdn2d` / `bias_act` CUDA ops with ordinary torch ops that run
on any device. Semantics follow docs/method/eg3d.md §3.1 and §3.3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LRELU_SLOPE = 0.2


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> Tensor:
    """Separable FIR low-pass filter: outer(taps, taps) normalised to sum 1 -> [k, k]."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def upfirdn2d(
    x: Tensor,  # [N, C, H, W]
    f: Tensor,  # [k, k]
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),  # (x0, x1, y0, y1); negative crops
    flip_filter: bool = False,
    gain: float = 1.0,
) -> Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter, downsample (docs/method/eg3d.md §3.1).

    The convolution is a true convolution (the filter is flipped) unless `flip_filter`.
    """
    assert x.ndim == 4, f"expected [N,C,H,W], got {tuple(x.shape)}"
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * gain).to(x.dtype)
    if not flip_filter:
        f = f.flip([0, 1])
    weight = f[None, None].repeat(c, 1, 1, 1)  # (C, 1, k, k), depthwise
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """FIR upsampling by `up` keeping the image centred (skip-image path of synthesis blocks)."""
    k = f.shape[-1]
    pad = ((k + up - 1) // 2, (k - up) // 2)
    return upfirdn2d(x, f, up=up, padding=(pad[0], pad[1], pad[0], pad[1]), gain=up * up)


def downsample2d(x: Tensor, f: Tensor, down: int = 2) -> Tensor:
    """FIR downsampling by `down` keeping the image centred."""
    k = f.shape[-1]
    pad = ((k - down + 1) // 2, (k - down) // 2)
    return upfirdn2d(x, f, down=down, padding=(pad[0], pad[1], pad[0], pad[1]))


def bias_act(
    x: Tensor,
    b: Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    dim: int = 1,
) -> Tensor:
    """`clamp(act(x + b) * gain)`, the reference semantics of EG3D's bias_act (docs/method/eg3d.md §3.1).

    `act` is 'linear' (default gain 1) or 'lrelu' (slope 0.2, default gain sqrt(2)).
    """
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        default_gain = math.sqrt(2)
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unsupported activation {act!r}; expected 'linear' or 'lrelu'")
    gain = default_gain if gain is None else float(gain)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """`x / sqrt(mean(x^2) + eps)` along `dim` (mapping-network input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def conv2d_resample(
    x: Tensor,  # [N, C_in * groups?, H, W]
    w: Tensor,  # [C_out, C_in / groups, kh, kw]
    f: Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation (no kernel flip) fused with FIR up/down-sampling (docs/method/eg3d.md §3.1).

    Supported cases are those EG3D uses: up=2 for 3x3 kernels (transposed conv, then FIR with
    gain 4), down=2 for 3x3 (FIR pad, strided conv) and 1x1 (FIR + subsample, then conv), and
    plain stride-1 convolution with symmetric padding.
    """
    assert not (up > 1 and down > 1), "up- and down-sampling at once is not used by EG3D"
    out_channels, in_per_group, kh, kw = w.shape
    k = f.shape[-1] if f is not None else 1
    p0 = p1 = padding
    if up > 1:
        p0 += (k + up - 1) // 2
        p1 += (k - up) // 2
    if down > 1:
        p0 += (k - down + 1) // 2
        p1 += (k - down) // 2
    pad4 = (p0, p1, p0, p1)

    if kw == 1 and kh == 1 and down > 1:
        x = upfirdn2d(x, f, down=down, padding=pad4)
        return F.conv2d(x, w, groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, padding=pad4)
        return F.conv2d(x, w, stride=down, groups=groups)
    if up > 1:
        # conv_transpose2d wants [C_in, C_out / groups, kh, kw]; the kernel is used unflipped.
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)  # (g, o, i, kh, kw)
            wt = wt.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        q0, q1 = p0 - (kw - 1), p1 - (kw - up)
        t = max(min(-q0, -q1), 0)
        x = F.conv_transpose2d(x, wt, stride=up, padding=t, groups=groups)
        return upfirdn2d(x, f, padding=(q0 + t, q1 + t, q0 + t, q1 + t), gain=up * up)
    return F.conv2d(x, w, padding=padding, groups=groups)


def modulated_conv2d(
    x: Tensor,  # [N, I, H, W]
    weight: Tensor,  # [O, I, kh, kw]
    styles: Tensor,  # [N, I]
    noise: Tensor | None = None,  # broadcastable to [N, O, H', W']
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
    fused_modconv: bool = True,
) -> Tensor:
    """StyleGAN2 modulated convolution with optional demodulation (docs/method/eg3d.md §3.3).

    The fused path runs one grouped convolution with per-sample weights; the non-fused path
    scales activations before and after a shared convolution. Both give the same result up to
    float rounding.
    """
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    assert styles.shape == (n, in_c), f"styles must be [N={n}, I={in_c}], got {tuple(styles.shape)}"

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalisation against fp16 overflow (SR blocks on CUDA).
        weight = weight * (1 / math.sqrt(in_c * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # (N, O, I, kh, kw)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # (N, O)
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        if demodulate and noise is not None:
            x = torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        elif noise is not None:
            x = x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])  # (1, N*I, H, W)
    w = w.reshape(-1, in_c, kh, kw)  # (N*O, I, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])  # (N, O, H', W')
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
