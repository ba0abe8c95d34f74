"""render_field: an analytic sphere against closed forms, parity with G.synthesis, chunking, randomness."""

from __future__ import annotations

import math

import pytest
import torch

from nerfsculpt.camera import FOCAL_PAPER, canonical_camera, intrinsics_from_focal, look_at_pose, make_label
from nerfsculpt.generator.config import FFHQ_RENDERING_KWARGS
from nerfsculpt.synthetic.render import render_field

R0 = 0.3  # sphere radius
COLOUR = torch.tensor([0.8, 0.5, 0.2])


def sphere(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [N, M, 3] -> [N, M], [N, M, 3]
    sigma = 200 * torch.tanh((R0 - points.norm(dim=-1)) / 0.03)
    return sigma, COLOUR.expand(*points.shape[:-1], 3)


def _pixel_angles(resolution: int, focal: float) -> torch.Tensor:  # [R, R] angle of each pixel's ray to the axis
    centres = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution - 0.5
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.atan(torch.sqrt(x**2 + y**2) / focal)


def test_sphere_silhouette_depth_and_colour_match_closed_forms():
    resolution = 48
    out = render_field(sphere, canonical_camera(), resolution)
    assert out["image"].shape == (1, 3, resolution, resolution)
    assert out["depth"].shape == out["opacity"].shape == (1, 1, resolution, resolution)

    # The camera sits at distance 2.7 from the sphere's centre on its optical axis: the silhouette is
    # the cone of half-angle asin(r0 / 2.7), i.e. radius f * tan(asin(r0 / 2.7)) * R pixels.
    half_angle = math.asin(R0 / 2.7)
    pixel = math.atan(1 / (FOCAL_PAPER * resolution))  # angular size of a pixel
    angles = _pixel_angles(resolution, FOCAL_PAPER)
    inside, outside = angles < half_angle - 1.5 * pixel, angles > half_angle + 1.5 * pixel
    opacity = out["opacity"][0, 0].double()
    assert inside.sum() > 100 and outside.sum() > 100
    assert opacity[inside].min() > 0.999
    assert opacity[outside].max() < 1e-6
    radius_px = FOCAL_PAPER * math.tan(half_angle) * resolution
    assert (opacity > 0.5).sum().item() == pytest.approx(math.pi * radius_px**2, rel=0.05)

    image = out["image"][0]  # (3, R, R)
    for ch in range(3):
        assert torch.allclose(image[ch][inside], torch.tensor(2 * COLOUR[ch].item() - 1), atol=2e-3)
        assert torch.allclose(image[ch][outside], torch.tensor(-1.0), atol=1e-6)  # black background

    # Depth along the (almost) central ray: the front surface at 2.7 - r0, within the tanh's width.
    centre = resolution // 2
    assert out["depth"][0, 0, centre, centre].item() == pytest.approx(2.7 - R0, abs=0.02)
    # Empty rays get the largest sample depth: the last stratum centre, 3.3 + delta / 2.
    delta = (3.3 - 2.25) / 47
    assert torch.allclose(out["depth"][0, 0][outside], torch.tensor(3.3 + delta / 2), atol=1e-5)


def test_image_orientation_follows_the_camera():
    # A sphere shifted to +x and +y appears right (higher column) and up (lower row).
    def shifted(points):
        return sphere(points - torch.tensor([0.15, 0.15, 0.0]))

    opacity = render_field(shifted, canonical_camera(), 32)["opacity"][0, 0]
    rows, cols = torch.nonzero(opacity > 0.5, as_tuple=True)
    assert cols.float().mean() > 16 and rows.float().mean() < 16


def test_parity_with_the_generator_own_render():
    # A field that is the tiny generator's planes + decoder must render exactly like G.synthesis.
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.latents import z_from_seed

    G, _ = resolve_generator("tiny-random", "cpu")
    c = torch.cat([canonical_camera(), make_label(look_at_pose(0.4, -0.2), intrinsics_from_focal())])  # (2, 25)
    with torch.no_grad():
        ws = G.mapping(torch.cat([z_from_seed(1, G.z_dim), z_from_seed(2, G.z_dim)]), c)
        planes = G.planes(ws, noise_mode="const")

        def field(points):
            out = G.sample_planes(planes, points)
            return out["sigma"][..., 0], out["rgb"][..., :3]

        expected = G.synthesis(ws, c, noise_mode="const", deterministic=True)
        got = render_field(field, c, G.neural_rendering_resolution, G.rendering_kwargs, ray_chunk=100)
    torch.testing.assert_close(got["image"], expected["image_raw"], rtol=0, atol=1e-5)
    torch.testing.assert_close(got["depth"], expected["image_depth"], rtol=0, atol=1e-5)


def test_chunking_does_not_change_a_deterministic_render():
    c = make_label(look_at_pose([0.0, 0.5], [0.0, -0.1]), intrinsics_from_focal())  # (2, 25)
    opts = {"depth_resolution": 16, "depth_resolution_importance": 16}
    whole = render_field(sphere, c, 16, opts, ray_chunk=1 << 20)
    chunked = render_field(sphere, c, 16, opts, ray_chunk=37)
    for key in whole:
        torch.testing.assert_close(chunked[key], whole[key], rtol=0, atol=1e-6)


def test_stochastic_mode_uses_the_generator_and_clamps_empty_rays_over_the_batch():
    c = canonical_camera()
    opts = {"depth_resolution": 12, "depth_resolution_importance": 12}
    a = render_field(sphere, c, 16, opts, deterministic=False, generator=torch.Generator().manual_seed(0), ray_chunk=32)
    b = render_field(sphere, c, 16, opts, deterministic=False, generator=torch.Generator().manual_seed(0), ray_chunk=32)
    d = render_field(sphere, c, 16, opts, deterministic=False, generator=torch.Generator().manual_seed(1), ray_chunk=32)
    torch.testing.assert_close(a["depth"], b["depth"], rtol=0, atol=0)
    assert not torch.equal(a["depth"], d["depth"])
    # 8 chunks with their own jitter; every empty ray gets the one batch-wide maximum sample depth.
    empty = a["depth"][a["opacity"] == 0]
    delta = (3.3 - 2.25) / 11
    assert empty.numel() > 50 and torch.unique(empty).numel() == 1
    assert 3.3 + delta * 0.9 < empty[0].item() < 3.3 + delta


def test_rendering_kwargs_default_to_ffhq_and_gradients_reach_the_field():
    radius = torch.tensor(R0, requires_grad=True)

    def field(points):
        return 200 * torch.tanh((radius - points.norm(dim=-1)) / 0.03), COLOUR.expand(*points.shape[:-1], 3)

    out = render_field(field, canonical_camera(), 8, ray_chunk=16)
    out["opacity"].sum().backward()
    assert radius.grad is not None and radius.grad > 0  # a larger sphere covers more pixels
    assert FFHQ_RENDERING_KWARGS["depth_resolution"] == 48  # the default used above


def test_bad_input():
    with pytest.raises(AssertionError, match=r"expected cameras \[N, 25\]"):
        render_field(sphere, torch.zeros(25), 8)
    with pytest.raises(ValueError, match="'auto'"):
        render_field(sphere, canonical_camera(), 8, {"ray_start": "auto"})
    with pytest.raises(ValueError, match="ray_chunk"):
        render_field(sphere, canonical_camera(), 8, ray_chunk=0)
    with pytest.raises(AssertionError, match=r"field colour: expected \[N, M, 3\]"):
        render_field(lambda p: (p[..., 0], p[..., :2]), canonical_camera(), 4)
