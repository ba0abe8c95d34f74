import math

import numpy as np
import pytest
import torch

from nerfsculpt.camera import canonical_camera, dmap_cameras, look_at_pose, make_label
from nerfsculpt.geometry.views import (
    depth_to_points,
    normalise_point_cloud,
    point_cloud,
    render_depth,
    subsample_points,
)

R = 16
F = 4.26339


def synthesis_depth(G, w, camera):  # [1, 1, R, R]: the plain EG3D path, one latent, one camera
    saved = G.neural_rendering_resolution
    try:
        with torch.no_grad():
            return G.synthesis(w, camera, neural_rendering_resolution=R, noise_mode="const",
                               deterministic=True)["image_depth"]
    finally:
        G.neural_rendering_resolution = saved


# ---- render_depth --------------------------------------------------------------------------------


def test_every_view_comes_from_its_own_latent(G, ws):
    cameras = dmap_cameras()
    depth = render_depth(G, ws, cameras, resolution=R)
    assert depth.shape == (2, 3, 1, R, R)
    for n in range(2):
        for v in range(3):
            expected = synthesis_depth(G, ws[n : n + 1], cameras.render[v : v + 1])
            torch.testing.assert_close(depth[n, v], expected[0])
    # The canonical view of the triple is the single-view render of the same latent (reference §2.1 bug).
    single = render_depth(G, ws, canonical_camera(), resolution=R)
    torch.testing.assert_close(depth[:, 1], single[:, 0])
    assert not torch.allclose(depth[0], depth[1])  # and the two latents do differ


def test_backbone_runs_once_per_latent(own_G, ws):
    G, calls = own_G, []
    planes = G.planes
    G.planes = lambda w, **kw: calls.append(len(w)) or planes(w, **kw)
    render_depth(G, ws, dmap_cameras(), resolution=8)
    assert calls == [1, 1]


def test_deterministic_by_default_stochastic_on_request(G, ws):
    cams = canonical_camera()
    assert torch.equal(render_depth(G, ws, cams, R), render_depth(G, ws, cams, R))
    a = render_depth(G, ws, cams, R, deterministic=False, generator=torch.Generator().manual_seed(3))
    b = render_depth(G, ws, cams, R, deterministic=False, generator=torch.Generator().manual_seed(3))
    c = render_depth(G, ws, cams, R, deterministic=False, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    rk = G.rendering_kwargs
    jitter = (rk["ray_end"] - rk["ray_start"]) / (rk["depth_resolution"] - 1)  # the last stratum may overshoot
    assert a.min() >= rk["ray_start"] and a.max() <= rk["ray_end"] + jitter


@pytest.mark.parametrize("bad", [torch.zeros(3, 16), torch.zeros(25)])
def test_bad_cameras(G, ws, bad):
    with pytest.raises(ValueError, match=r"camera labels \[V, 25\]"):
        render_depth(G, ws, bad, R)


def test_z_instead_of_ws_is_rejected(G):
    with pytest.raises(ValueError, match="G.mapping"):
        render_depth(G, torch.randn(1, G.z_dim), canonical_camera(), R)


# ---- depth_to_points -----------------------------------------------------------------------------


def axis_aligned_front_camera():  # at (0, 0, 2.7) looking down -z, image-up = world +y, built by hand
    cam2world = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]])
    intrinsics = torch.tensor([[F, 0, 0.5], [0, F, 0.5], [0, 0, 1]])
    return make_label(cam2world[None], intrinsics)


def test_plane_at_known_distance():
    r = 8
    centre = (torch.arange(r, dtype=torch.float64) + 0.5) / r - 0.5  # pixel centres, normalised
    v, u = torch.meshgrid(centre, centre, indexing="ij")  # rows, columns
    # Euclidean distance from (0, 0, 2.7) to the plane z = 0 along each pixel's ray.
    depth = 2.7 * torch.sqrt((u / F) ** 2 + (v / F) ** 2 + 1)  # (r, r)
    points = depth_to_points(depth.float()[None, None], axis_aligned_front_camera())
    assert points.shape == (1, r * r, 3)
    expected = torch.stack([2.7 * u / F, -2.7 * v / F, torch.zeros_like(u)], dim=-1).reshape(1, r * r, 3)
    torch.testing.assert_close(points, expected.float(), atol=1e-6, rtol=0)
    # Row-major pixels: pixel (0, 0) is top-left, i.e. world (-x, +y); pixel 1 is to its right.
    assert points[0, 0, 0] < 0 < points[0, 0, 1] and points[0, 1, 0] > points[0, 0, 0]


def test_points_lie_at_their_depth_from_the_camera():
    cameras = make_label(look_at_pose([0.8, -0.3], [0.1, -0.2]), torch.tensor([[F, 0, 0.5], [0, F, 0.5], [0, 0, 1]]))
    depth = 2.25 + torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    points = depth_to_points(depth, cameras)
    distance = torch.linalg.vector_norm(points - cameras[:, None, [3, 7, 11]], dim=-1)  # (2, 36)
    torch.testing.assert_close(distance, depth.reshape(2, 36))


def test_depth_to_points_bad_input():
    with pytest.raises(ValueError, match=r"\[N, 1, R, R\]"):
        depth_to_points(torch.zeros(1, 4, 4), canonical_camera())
    with pytest.raises(ValueError, match=r"\[2, 25\] or \[1, 25\]"):
        depth_to_points(torch.zeros(2, 1, 4, 4), torch.zeros(3, 25))


# ---- subsampling and normalisation ---------------------------------------------------------------


def test_linspace_subsample_matches_reference_indices():
    points = torch.arange(16384, dtype=torch.float32)[None, :, None].expand(2, -1, 3)
    picked = subsample_points(points, 2048)
    expected = np.round(np.linspace(0, 16383, 2048)).astype(np.int64)
    assert picked.shape == (2, 2048, 3)
    assert picked[0, :, 0].long().tolist() == expected.tolist()
    assert expected[[0, 1, 2, -1]].tolist() == [0, 8, 16, 16383] and len(set(expected)) == 2048


def test_random_subsample_is_a_seeded_subset_per_cloud():
    points = torch.arange(100, dtype=torch.float32)[None, :, None].expand(2, -1, 3)
    a = subsample_points(points, 10, "random", torch.Generator().manual_seed(0))
    b = subsample_points(points, 10, "random", torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])  # reproducible, independent per cloud
    assert len(set(a[0, :, 0].tolist())) == 10


@pytest.mark.parametrize("kwargs, message", [({"n": 0}, "cannot pick"), ({"n": 11}, "cannot pick"),
                                             ({"mode": "fps"}, "mode")])
def test_subsample_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        subsample_points(torch.zeros(1, 10, 3), **{"n": 5, **kwargs})


def test_normalise_point_cloud_known_answer():
    cloud = torch.tensor([[[1.0, 0, 0], [-1, 0, 0], [0, 2, 0], [0, -2, 0]]])
    expected = cloud * (0.999999 / 2)
    torch.testing.assert_close(normalise_point_cloud(cloud), expected)
    torch.testing.assert_close(normalise_point_cloud(cloud * 3 + torch.tensor([5.0, -1, 2])), expected)
    with pytest.raises(ValueError, match="coincide"):
        normalise_point_cloud(torch.ones(1, 4, 3))


# ---- point_cloud ---------------------------------------------------------------------------------


def test_point_cloud_is_subsampled_depth_points(G, ws):
    cloud = point_cloud(G, ws, resolution=R, n_points=64)  # canonical camera by default
    assert cloud.shape == (2, 64, 3)
    depth = render_depth(G, ws, canonical_camera(), R)  # (2, 1, 1, R, R)
    expected = subsample_points(depth_to_points(depth[:, 0], canonical_camera()), 64)
    torch.testing.assert_close(cloud, expected)


def test_point_cloud_pools_views(G, ws):
    cameras = dmap_cameras()
    cloud = point_cloud(G, ws[:1], cameras, resolution=8, n_points=3 * 64)  # every point of 3 views
    depth = render_depth(G, ws[:1], cameras, 8)[0]  # (3, 1, 8, 8)
    torch.testing.assert_close(cloud[0], depth_to_points(depth, cameras.render).reshape(-1, 3))
    yaw_plus = cloud[0, :64] - cameras.render[0, [3, 7, 11]]  # view 0 points seen from the +x camera
    assert math.isclose(torch.linalg.vector_norm(yaw_plus, dim=1).min().item(),
                        depth[0].min().item(), rel_tol=1e-5)
