"""TriPlaneGenerator entry points, EG3D's API and its quirks, on a tiny configuration."""

import pytest
import torch

from nerfsculpt.camera import canonical_camera
from nerfsculpt.generator.config import tiny_config
from nerfsculpt.generator.triplane import TriPlaneGenerator


def _generator(**overrides):
    torch.manual_seed(0)
    G = TriPlaneGenerator(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.2)
        G.backbone.mapping.w_avg.normal_()
    return G


@pytest.fixture(scope="module")
def G():
    return _generator()


def _inputs(n=2):
    z = torch.randn(n, 32, generator=torch.Generator().manual_seed(1))
    c = canonical_camera().repeat(n, 1)
    return z, c


def test_forward_shapes_and_keys(G):
    z, c = _inputs()
    out = G(z, c, noise_mode="const")
    assert set(out) == {"image", "image_raw", "image_depth"}
    assert out["image"].shape == (2, 3, 64, 64)
    assert out["image_raw"].shape == (2, 3, 16, 16)
    assert out["image_depth"].shape == (2, 1, 16, 16)
    depth = out["image_depth"]
    assert torch.all((depth >= 2.25) & (depth <= 3.3 + 1.05 / 11))  # clamped to sampled depth range


def test_forward_equals_mapping_then_synthesis(G):
    z, c = _inputs()
    ws = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=14)
    a = G.synthesis(ws, c, noise_mode="const", deterministic=True)
    b = G(z, c, truncation_psi=0.7, truncation_cutoff=14, noise_mode="const", deterministic=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_renderer_is_stochastic_by_default_and_reproducible_on_request(G):
    z, c = _inputs()
    ws = G.mapping(z, c)
    a = G.synthesis(ws, c, noise_mode="const")["image_depth"]
    b = G.synthesis(ws, c, noise_mode="const")["image_depth"]
    assert not torch.equal(a, b)  # EG3D's jittered + importance-sampled depths
    d1 = G.synthesis(ws, c, noise_mode="const", deterministic=True)
    d2 = G.synthesis(ws, c, noise_mode="const", deterministic=True)
    assert all(torch.equal(d1[k], d2[k]) for k in d1)
    g1 = G.synthesis(ws, c, generator=torch.Generator().manual_seed(5))
    g2 = G.synthesis(ws, c, generator=torch.Generator().manual_seed(5))  # random noise too
    assert all(torch.equal(g1[k], g2[k]) for k in g1)


def test_same_global_seed_reproduces_default_render(G):
    z, c = _inputs()
    torch.manual_seed(11)
    a = G(z, c)
    torch.manual_seed(11)
    b = G(z, c)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sample_and_sample_mixed_agree_and_return_raw_sigma(G):
    z, c = _inputs()
    pts = torch.rand(2, 100, 3) - 0.5
    a = G.sample(pts, torch.zeros_like(pts), z, c, truncation_psi=0.5, truncation_cutoff=8, noise_mode="const")
    ws = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=8)
    b = G.sample_mixed(pts, None, ws, noise_mode="const")
    assert a["sigma"].shape == (2, 100, 1) and a["rgb"].shape == (2, 100, 8)
    torch.testing.assert_close(a["sigma"], b["sigma"])
    torch.testing.assert_close(a["rgb"], b["rgb"])
    assert (a["sigma"] < 0).any()  # raw: no softplus applied


def test_planes_are_the_backbone_output_split_in_three(G):
    z, c = _inputs(1)
    ws = G.mapping(z, c)
    raw = G.backbone.synthesis(ws, noise_mode="const")
    assert raw.shape == (1, 24, 32, 32)
    planes = G.planes(ws, noise_mode="const")
    assert planes.shape == (1, 3, 8, 32, 32)
    torch.testing.assert_close(planes[:, 1], raw[:, 8:16])  # channel k -> plane k // 8


def test_neural_rendering_resolution_argument_is_stored_like_eg3d():
    G = _generator()
    z, c = _inputs(1)
    out = G(z, c, neural_rendering_resolution=8, noise_mode="const")
    assert out["image_raw"].shape[-1] == 8 and out["image"].shape[-1] == 64
    assert G.neural_rendering_resolution == 8


def test_missing_c_scale_zeroes_conditioning_like_eg3d():
    G = _generator()
    z, c = _inputs(1)
    c2 = c.clone()
    c2[0, 3] = 0.5
    assert not torch.allclose(G.mapping(z, c), G.mapping(z, c2))
    del G.rendering_kwargs["c_scale"]
    torch.testing.assert_close(G.mapping(z, c), G.mapping(z, torch.zeros_like(c)))
    G.rendering_kwargs["c_scale"] = 1.0
    G.rendering_kwargs["c_gen_conditioning_zero"] = True
    torch.testing.assert_close(G.mapping(z, c), G.mapping(z, c2))


def test_superresolution_sees_only_last_w_and_no_noise(G):
    z, c = _inputs(1)
    ws = G.mapping(z, c)
    feat = torch.randn(1, 8, 16, 16)
    a = G.superresolution(feat[:, :3], feat, ws, noise_mode="none")
    ws2 = ws.clone()
    ws2[:, :-1] = torch.randn_like(ws2[:, :-1])
    torch.testing.assert_close(G.superresolution(feat[:, :3], feat, ws2, noise_mode="none"), a)
    small = torch.nn.functional.interpolate(feat, size=(8, 8))
    assert G.superresolution(small[:, :3], small, ws, noise_mode="none").shape == (1, 3, 64, 64)  # resized


def test_sr_2x_raw_image_quirk():
    # EG3D's 2X/4X modules add their first ToRGB output into image_raw (in place) when no resize happens.
    rk = dict(tiny_config().rendering_kwargs, superresolution_module="training.superresolution.SuperresolutionHybrid2X")
    G = _generator(rendering_kwargs=rk, img_resolution=32, sr_input_resolution=16)
    assert G.superresolution.eg3d_class_name == "SuperresolutionHybrid2X"
    assert "resample_filter" in dict(G.superresolution.named_buffers())
    z, c = _inputs(1)
    ws = G.mapping(z, c)
    feat = torch.randn(1, 8, 16, 16)
    image, raw = G.superresolution.forward_with_raw(feat[:, :3], feat, ws, noise_mode="none")
    _, expected_raw = G.superresolution.block0(feat, feat[:, :3], ws[:, -1:].repeat(1, 3, 1), noise_mode="none")
    torch.testing.assert_close(raw, expected_raw)
    assert not torch.allclose(raw, feat[:, :3])
    assert image.shape == (1, 3, 32, 32)


def test_force_fp32_and_cpu_run_fp32(G):
    z, c = _inputs(1)
    out = G(z, c, noise_mode="const", force_fp32=True)
    assert out["image"].dtype == torch.float32


def test_gradients_reach_every_generator_parameter():
    G = _generator()
    G.train()
    z, c = _inputs()
    out = G(z, c, noise_mode="const")
    (out["image"].square().mean() + out["image_raw"].mean()).backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # SR layers never inject noise (superresolution_noise_mode 'none'), so their strengths get no gradient.
    assert sorted(missing) == sorted(f"superresolution.block{b}.conv{k}.noise_strength" for b in (0, 1) for k in (0, 1))


def test_double_precision_gradcheck_of_sigma_wrt_planes():
    G = _generator().double()
    z, c = _inputs(1)
    assert G.planes(G.mapping(z.double(), c.double()), noise_mode="const").dtype == torch.float64
    planes = torch.randn(1, 3, 8, 4, 4, dtype=torch.float64, requires_grad=True)  # small: numerical Jacobian
    pts = (torch.rand(1, 5, 3, dtype=torch.float64) - 0.5) * 0.8
    assert torch.autograd.gradcheck(lambda p: G.sample_planes(p, pts)["sigma"], (planes,))
