import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nerfsculpt.camera import annotation_views, canonical_camera, make_label, split_label
from nerfsculpt.generator.rendering import RaySampler
from nerfsculpt.geometry.grid import grid_coordinates
from nerfsculpt.geometry.shading import (
    ClayShading,
    clear_border,
    image_to_uint8,
    render_geometry,
    render_rgb,
    save_png,
    shade_surface,
    trace_level_surface,
)

F = 4.26339
N = 64  # sigma cube resolution
RADIUS = 0.25


def sphere_cube(centre=(0.0, 0.0, 0.0), radius=RADIUS, n=N):  # [n, n, n]: sigma = 10 exactly on the sphere
    xyz = grid_coordinates(n).reshape(n, n, n, 3)
    return 10 + 100 * (radius - torch.linalg.vector_norm(xyz - torch.tensor(centre), dim=-1))


def front_camera():  # at (0, 0, 2.7) looking down -z, image-up = world +y; rotation diag(1, -1, -1)
    cam2world = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]])
    return make_label(cam2world[None], torch.tensor([[F, 0, 0.5], [0, F, 0.5], [0, 0, 1]]))


def silhouette_area(resolution, radius=RADIUS, distance=2.7):  # pixels covered by a centred sphere
    return math.pi * (resolution * F * math.tan(math.asin(radius / distance))) ** 2


# ---- tracing: known answers on a sphere ------------------------------------------------------------


def test_sphere_hits_normals_and_centre_pixel():
    r = 65  # odd: the centre pixel's ray is the optical axis
    surface = trace_level_surface(sphere_cube(), front_camera(), resolution=r)
    assert surface.hit.shape == (1, r, r) and surface.normals.shape == (1, r, r, 3)
    hit = surface.hit[0]
    # Every hit lies on the sphere and its normal is the radial direction.
    _, directions = RaySampler()(*split_label(front_camera()), r)  # (1, r*r, 3)
    points = torch.tensor([0.0, 0.0, 2.7]) + surface.depth[0].reshape(-1, 1) * directions[0]  # (r*r, 3)
    on = hit.reshape(-1)
    radii = torch.linalg.vector_norm(points[on], dim=1)
    assert (radii - RADIUS).abs().max() < 2e-3
    cosines = (surface.normals[0].reshape(-1, 3)[on] * points[on] / radii[:, None]).sum(1)
    assert cosines.min() > 0.995
    # Centre pixel: hits the pole facing the camera at distance 2.7 - r, normal toward the camera.
    c = r // 2
    assert hit[c, c] and surface.depth[0, c, c].item() == pytest.approx(2.7 - RADIUS, abs=1e-3)
    torch.testing.assert_close(surface.normals[0, c, c], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3, rtol=0)
    assert not surface.hit[0, 0, 0] and math.isinf(surface.depth[0, 0, 0]) and not surface.normals[0, 0, 0].any()


def test_sphere_silhouette_area():
    r = 129
    hits = trace_level_surface(sphere_cube(), front_camera(), resolution=r).hit.sum().item()
    assert hits == pytest.approx(silhouette_area(r), rel=0.02)


def test_image_orientation():
    right_up = trace_level_surface(sphere_cube((0.2, 0.2, 0.0), 0.1), front_camera(), 32).hit[0]  # (H, W)
    rows, cols = torch.nonzero(right_up, as_tuple=True)
    assert rows.float().mean() < 16 < cols.float().mean()  # +y is up, +x is image-right
    profile = annotation_views()  # camera on the +x side: +z (the face) is image-left
    front_bump = trace_level_surface(sphere_cube((0.0, 0.0, 0.3), 0.08), profile.render[2:], 32).hit[0]
    assert torch.nonzero(front_bump, as_tuple=True)[1].float().mean() < 16


def test_no_surface_gives_no_hits():
    surface = trace_level_surface(torch.zeros(8, 8, 8), front_camera(), 16)
    assert not surface.hit.any() and torch.isinf(surface.depth).all()


@pytest.mark.parametrize("cube, message", [(torch.zeros(4, 4, 5), r"\[R, R, R\]"),
                                           (torch.full((4, 4, 4), float("nan")), "NaN")])
def test_trace_bad_input(cube, message):
    with pytest.raises(ValueError, match=message):
        trace_level_surface(cube, front_camera(), 8)


# ---- shading ----------------------------------------------------------------------------------------


def test_lambert_known_answer():
    clay = ClayShading(specular=0.0)
    surface = trace_level_surface(sphere_cube(), front_camera(), 48)
    image = shade_surface(surface, front_camera(), clay)[0].astype(np.float64)  # (48, 48, 3)
    n_cam = surface.normals[0] * torch.tensor([1.0, -1.0, -1.0])  # R^T n for R = diag(1, -1, -1)
    light = torch.tensor(clay.light) / torch.linalg.vector_norm(torch.tensor(clay.light))
    lambert = (n_cam @ light).clamp_min(0)[..., None]  # (48, 48, 1)
    linear = torch.tensor(clay.albedo) * (clay.ambient + clay.diffuse * lambert)  # (48, 48, 3)
    expected = 255 * linear ** (1 / clay.gamma)
    hit = surface.hit[0].numpy()
    assert np.abs(image[hit] - expected.numpy()[hit]).max() <= 0.5 + 1e-6
    assert (image[~hit] == 255).all()  # white background


def test_brightest_where_the_normal_faces_the_light():
    clay = ClayShading()
    surface = trace_level_surface(sphere_cube(), front_camera(), 64)
    grey = shade_surface(surface, front_camera(), clay)[0].astype(np.float64).mean(-1)  # (64, 64)
    grey[~surface.hit[0].numpy()] = -1
    row, col = np.unravel_index(grey.argmax(), grey.shape)
    n_cam = surface.normals[0, row, col] * torch.tensor([1.0, -1.0, -1.0])
    light = torch.tensor(clay.light) / torch.linalg.vector_norm(torch.tensor(clay.light))
    assert (n_cam @ light).item() > math.cos(math.radians(30))
    assert row < 32 and col < 32  # the key light is upper left


def test_transparent_background_and_antialiased_edges():
    surface = trace_level_surface(sphere_cube(), front_camera(), 128)
    rgba = shade_surface(surface, front_camera(), supersample=4, background="transparent")[0]  # (32, 32, 4)
    assert rgba.shape == (32, 32, 4)
    alpha = rgba[..., 3].astype(np.float64)
    assert alpha[0, 0] == 0 and alpha[16, 16] == 255
    assert ((alpha > 0) & (alpha < 255)).any()  # partial coverage on the silhouette only
    assert alpha.sum() / 255 == pytest.approx(surface.hit.sum().item() / 16, abs=0.5)


def test_shade_bad_input():
    surface = trace_level_surface(sphere_cube(), front_camera(), 30)
    with pytest.raises(ValueError, match="multiple of supersample"):
        shade_surface(surface, front_camera(), supersample=4)
    with pytest.raises(ValueError, match="background"):
        shade_surface(surface, front_camera(), background="black")


def test_clear_border():
    cube = torch.zeros(64, 64, 64)
    cleared = clear_border(cube, "eg3d")  # int(30 * 64 / 256) = 7 voxels on every face
    assert (cleared[7:57, 7:57, 7:57] == 0).all() and (cleared[6] == -1000).all() and (cleared[:, :, 57] == -1000).all()
    assert not cube.any() and torch.equal(clear_border(cube, None), cube)
    with pytest.raises(ValueError, match="unknown border preset"):
        clear_border(cube, "tight")


# ---- from a generator ----------------------------------------------------------------------------


class SphereSigma(nn.Module):
    def forward(self, features):  # [M, C] plane means; feature 0 is |p|^2 / 3 -> [M, 1] sigma
        return 10 + 100 * (RADIUS - (3 * features[:, :1]).clamp_min(0).sqrt())


def test_render_geometry_of_an_analytic_generator(own_G):
    """A generator whose planes hold squared coordinates and whose decoder returns a sphere's sigma."""
    G = own_G
    res = 256
    centres = ((2 * torch.arange(res) + 1) / res - 1) / 2  # texel centres in world units (box_warp 1)
    height, width = torch.meshgrid(centres, centres, indexing="ij")
    planes = torch.zeros(1, 3, G.plane_features, res, res)
    planes[0, 0, 0] = width**2 + height**2  # plane (x, y)
    planes[0, 1, 0] = height**2  # plane (x, z): z indexes the height
    G.planes = lambda ws, **kw: planes.expand(len(ws), -1, -1, -1, -1)
    G.decoder.net = SphereSigma()
    ws = torch.zeros(2, G.num_ws, G.w_dim)
    images = render_geometry(G, ws, canonical_camera(), resolution=65, grid_resolution=N, supersample=1)
    assert images.shape == (2, 1, 65, 65, 3) and images.dtype == np.uint8
    covered = (images[0, 0] != 255).any(-1).sum()
    assert covered == pytest.approx(silhouette_area(65), rel=0.03)
    expected = shade_surface(trace_level_surface(sphere_cube(), canonical_camera(), 65), canonical_camera())
    assert np.abs(images[1, 0].astype(int) - expected[0].astype(int)).mean() < 1.0


def test_render_rgb(G):
    ws = G.mapping(torch.randn(2, G.z_dim), canonical_camera().expand(2, 25)).detach()
    rgb = render_rgb(G, ws)
    assert rgb.shape == (2, 64, 64, 3) and rgb.dtype == np.uint8
    with torch.no_grad():
        image = G.synthesis(ws, canonical_camera().expand(2, 25), noise_mode="const", deterministic=True)["image"]
    assert np.array_equal(rgb, image_to_uint8(image))
    with pytest.raises(ValueError, match=r"\[1, 25\] or \[2, 25\]"):
        render_rgb(G, ws, torch.zeros(3, 25))


def test_image_to_uint8_known_values():
    values = torch.tensor([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0]).reshape(1, 1, 1, 6).expand(1, 3, 1, 6)
    # (x * 127.5 + 128) clamped and truncated, as EG3D gen_samples.py.
    assert image_to_uint8(values)[0, 0, :, 0].tolist() == [0, 0, 128, 191, 255, 255]


# ---- save_png -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_save_png_round_trip(tmp_path, channels):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    path = save_png(tmp_path / "view.png", image)
    assert np.array_equal(np.asarray(Image.open(path)), image)
    assert os.listdir(tmp_path) == ["view.png"]  # no temporary file left behind


@pytest.mark.parametrize("image", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8),
                                   np.zeros((4, 4, 2), np.uint8)])
def test_save_png_bad_image(tmp_path, image):
    with pytest.raises(ValueError, match="uint8 image"):
        save_png(tmp_path / "x.png", image)
    assert os.listdir(tmp_path) == []


def test_save_png_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="create it first"):
        save_png(tmp_path / "missing" / "x.png", np.zeros((2, 2, 3), np.uint8))
