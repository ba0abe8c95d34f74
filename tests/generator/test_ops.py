"""FIR resampling, bias_act and modulated conv against independent derivations (scipy, loops)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import signal

from nerfsculpt.generator import ops

F1D = np.array([1, 3, 3, 1], dtype=np.float64)
F2D = np.outer(F1D, F1D) / 64.0


def _zero_insert(x: np.ndarray, up: int) -> np.ndarray:  # [H, W] -> [H*up - (up-1), ...] samples at up*i
    h, w = x.shape
    out = np.zeros((h * up, w * up))
    out[::up, ::up] = x
    return out


def test_setup_filter_is_normalised_outer_product():
    f = ops.setup_filter()
    assert f.shape == (4, 4)
    np.testing.assert_allclose(f.numpy(), F2D, rtol=0, atol=1e-7)
    assert math.isclose(float(f.sum()), 1.0, rel_tol=1e-6)


def test_upsample2d_equals_zero_insert_then_true_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5))
    got = ops.upsample2d(torch.tensor(x)[None, None], torch.tensor(F2D)).numpy()[0, 0]
    # Zero-insert x2, full convolution with 4*f, then the centred window of size 2H x 2W.
    full = signal.convolve2d(_zero_insert(x, 2), 4 * F2D, mode="full")  # (14+3, 10+3)
    # pad (2, 1) then a valid convolution == full convolution shifted by k-1-2 = 1
    expected = full[1 : 1 + 14, 1 : 1 + 10]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_downsample2d_equals_convolution_then_subsample():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 12))
    got = ops.downsample2d(torch.tensor(x)[None, None], torch.tensor(F2D)).numpy()[0, 0]
    full = signal.convolve2d(x, F2D, mode="full")  # (11, 15)
    # pad (1, 1) then valid conv == full conv shifted by k-1-1 = 2, then every 2nd pixel
    expected = full[2 : 2 + 8 - 1 : 2, 2 : 2 + 12 - 1 : 2]
    assert got.shape == (4, 6)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_upfirdn2d_negative_padding_crops_and_gain_scales():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    delta = torch.zeros(3, 3)
    delta[1, 1] = 1
    out = ops.upfirdn2d(x, delta, padding=(-1, -1, -1, -1), gain=2.0)  # crop 1, 3x3 identity filter
    assert out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out, 2 * x[:, :, 2:4, 2:4])


def test_upfirdn2d_is_a_true_convolution_not_a_correlation():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    f = torch.zeros(3, 3)
    f[0, 1] = 1  # asymmetric filter
    out = ops.upfirdn2d(x, f, padding=(1, 1, 1, 1))
    # convolving an impulse reproduces the filter (a correlation would flip it)
    torch.testing.assert_close(out[0, 0, 1:4, 1:4], f)


def test_conv2d_resample_up2_equals_zero_insert_conv_then_fir():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6))
    w = rng.standard_normal((3, 3))
    got = ops.conv2d_resample(
        torch.tensor(x)[None, None], torch.tensor(w)[None, None], f=torch.tensor(F2D), up=2, padding=1
    ).numpy()[0, 0]
    # Transposed conv (stride 2, unflipped kernel) == full true convolution of the zero-inserted
    # input with w; then FIR (gain 4) with pad 1, i.e. the full convolution cropped by 2.
    zi = np.zeros((2 * 5 - 1, 2 * 6 - 1))
    zi[::2, ::2] = x
    full = signal.convolve2d(signal.convolve2d(zi, w, mode="full"), 4 * F2D, mode="full")
    expected = full[2 : 2 + 10, 2 : 2 + 12]
    assert got.shape == (10, 12)
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_conv2d_resample_down2_3x3_equals_fir_then_strided_correlation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 8))
    w = rng.standard_normal((3, 3))
    got = ops.conv2d_resample(
        torch.tensor(x)[None, None], torch.tensor(w)[None, None], f=torch.tensor(F2D), down=2, padding=1
    ).numpy()[0, 0]
    blurred = signal.convolve2d(np.pad(x, 2), F2D, mode="valid")  # pad 2, valid -> 9x9
    corr = signal.correlate2d(blurred, w, mode="valid")[::2, ::2]  # cross-correlation, stride 2
    assert got.shape == (4, 4)
    np.testing.assert_allclose(got, corr, atol=1e-10)


def test_conv2d_resample_down2_1x1_equals_fir_subsample_then_pointwise():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8, 8))
    w = rng.standard_normal((3, 2, 1, 1))
    got = ops.conv2d_resample(torch.tensor(x)[None], torch.tensor(w), f=torch.tensor(F2D), down=2).numpy()[0]
    sub = np.stack([signal.convolve2d(np.pad(ch, 1), F2D, mode="valid")[::2, ::2] for ch in x])  # (2, 4, 4)
    expected = np.einsum("oi,ihw->ohw", w[:, :, 0, 0], sub)
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_conv2d_resample_plain_is_cross_correlation():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ops.conv2d_resample(x, w, padding=1), F.conv2d(x, w, padding=1))


@pytest.mark.parametrize(
    ("act", "gain", "clamp", "expected"),
    [
        ("linear", None, None, [-3.0, 0.5, 5.0]),
        ("lrelu", None, None, [-0.6 * math.sqrt(2), 0.5 * math.sqrt(2), 5 * math.sqrt(2)]),
        ("lrelu", 2.0, 4.0, [-1.2, 1.0, 4.0]),
    ],
)
def test_bias_act_known_answers(act, gain, clamp, expected):
    x = torch.tensor([[-4.0], [-0.5], [4.0]], dtype=torch.float64).T  # [1, 3] features on dim 1
    b = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    out = ops.bias_act(x, b, act=act, gain=gain, clamp=clamp)
    torch.testing.assert_close(out[0], torch.tensor(expected, dtype=torch.float64))


def test_bias_act_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unsupported activation"):
        ops.bias_act(torch.zeros(1, 2), act="gelu")


def test_normalize_2nd_moment_unit_rms():
    x = torch.randn(4, 64, dtype=torch.float64) * 7
    y = ops.normalize_2nd_moment(x)
    torch.testing.assert_close(y.square().mean(1), torch.ones(4, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def _modconv_by_loop(x, weight, styles, demodulate, up, f):
    """Per-sample reference: scale the weight, (demodulate), run an ordinary conv."""
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        outs.append(ops.conv2d_resample(x[i : i + 1], w, f=f, up=up, padding=weight.shape[-1] // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_per_sample_loop(up, demodulate, fused):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 4, generator=g, dtype=torch.float64)
    f = ops.setup_filter().double()
    got = ops.modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f, demodulate=demodulate,
                               fused_modconv=fused)
    torch.testing.assert_close(got, _modconv_by_loop(x, weight, styles, demodulate, up, f))


def test_modulated_conv2d_noise_added_after_demodulation():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    styles = torch.randn(2, 3, dtype=torch.float64)
    noise = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    for fused in (True, False):
        a = ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=fused)
        b = ops.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused) + noise
        torch.testing.assert_close(a, b)


def test_modulated_conv2d_fp16_prenormalisation_close_to_fp32():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    weight = torch.randn(8, 8, 3, 3) * 50
    styles = torch.randn(2, 8) * 30
    ref = ops.modulated_conv2d(x, weight, styles, padding=1)
    half = ops.modulated_conv2d(x.half(), weight, styles, padding=1)
    assert half.dtype == torch.float16
    # demodulation makes the output invariant to the weight/style rescaling done for fp16
    torch.testing.assert_close(half.float(), ref, rtol=2e-2, atol=2e-2)


def test_modulated_conv2d_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    f = ops.setup_filter().double()
    for fused in (True, False):
        assert torch.autograd.gradcheck(
            lambda a, b, c, fused=fused: ops.modulated_conv2d(a, b, c, up=2, padding=1, resample_filter=f,
                                                              fused_modconv=fused),
            (x, weight, styles),
        )


def test_modulated_conv2d_rejects_bad_styles():
    with pytest.raises(AssertionError, match="styles must be"):
        ops.modulated_conv2d(torch.zeros(2, 3, 4, 4), torch.zeros(4, 3, 3, 3), torch.zeros(2, 5))
