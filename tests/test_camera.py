import doctest
import math

import pytest
import torch

from nerfsculpt import camera
from nerfsculpt.camera import (
    FOCAL_FFHQ_DATASET,
    FOCAL_GEN_SAMPLES,
    FOCAL_PAPER,
    LookAtPoseSampler,
    annotation_views,
    canonical_camera,
    dmap_cameras,
    focal_to_fov,
    fov_to_focal,
    intrinsics_from_focal,
    look_at_pose,
    make_label,
    mirror_label,
    project_points,
    split_label,
    triple_image_cameras,
)

PIVOT = (0.0, 0.0, 0.2)


def test_doctests():
    assert doctest.testmod(camera).failed == 0


# ---- focal lengths (eg3d.md §3.14) -------------------------------------------------------------


def test_focal_constants_match_spec():
    assert FOCAL_PAPER == pytest.approx(4.263391, abs=1e-6)
    assert FOCAL_GEN_SAMPLES == pytest.approx(4.465175, abs=1e-6)
    assert FOCAL_FFHQ_DATASET == pytest.approx(4.264700, abs=1e-6)


def test_fov_to_focal_closed_form():
    # The EG3D constants 3.14159 / 1.414 versus exact pi / sqrt(2): a diagonal-FOV pinhole.
    f_exact = 1 / (math.tan(math.radians(18.837) / 2) * math.sqrt(2))
    assert fov_to_focal(18.837, eg3d_constants=False) == pytest.approx(f_exact, rel=1e-12)
    assert fov_to_focal(18.837) != pytest.approx(f_exact, rel=1e-7)  # the truncation is visible
    # 90 deg diagonal FOV: tan(45 deg) = 1, so f = 1/sqrt(2) exactly.
    assert fov_to_focal(90.0, eg3d_constants=False) == pytest.approx(1 / math.sqrt(2), rel=1e-12)


@pytest.mark.parametrize("eg3d_constants", [True, False])
def test_focal_fov_round_trip(eg3d_constants):
    for fov in (10.0, 18.0, 18.837, 60.0):
        focal = fov_to_focal(fov, eg3d_constants)
        assert focal_to_fov(focal, eg3d_constants) == pytest.approx(fov, rel=1e-12)


@pytest.mark.parametrize("bad", [0.0, -5.0, 180.0])
def test_fov_bad_input(bad):
    with pytest.raises(ValueError, match="fov_deg"):
        fov_to_focal(bad)
    with pytest.raises(ValueError, match="focal"):
        focal_to_fov(bad if bad <= 0 else -bad)


def test_intrinsics_layout():
    k = intrinsics_from_focal(4.0)
    assert k.dtype == torch.float32
    assert torch.equal(k, torch.tensor([[4.0, 0, 0.5], [0, 4.0, 0.5], [0, 0, 1]]))


# ---- labels (eg3d.md §5.1) ---------------------------------------------------------------------


def test_label_layout_and_round_trip():
    pose = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 4, 4)
    k = intrinsics_from_focal(3.0)
    c = make_label(pose, k)
    assert c.shape == (2, 25)
    assert c[1, 3] == pose[1, 0, 3]  # row-major: entry 3 is the x translation
    assert c[0, 16] == 3.0 and c[0, 18] == 0.5 and c[0, 20] == 3.0 and c[0, 21] == 0.5 and c[0, 24] == 1.0
    pose_back, k_back = split_label(c)
    assert torch.equal(pose_back, pose) and torch.equal(k_back, k.expand(2, 3, 3))


def test_label_bad_shapes():
    with pytest.raises(AssertionError, match=r"cam2world \[N, 4, 4\]"):
        make_label(torch.zeros(4, 4), torch.eye(3))
    with pytest.raises(AssertionError, match="intrinsics"):
        make_label(torch.zeros(2, 4, 4), torch.zeros(3, 3, 3))
    with pytest.raises(AssertionError, match=r"\[N, 25\]"):
        split_label(torch.zeros(25))


def test_project_points_inverts_the_ray_sampler():
    from nerfsculpt.generator.rendering import RaySampler

    k = intrinsics_from_focal(4.26)
    k[0, 1] = 0.3  # skew, which EG3D's sampler supports
    c = make_label(torch.cat([look_at_pose(0.4, -0.2, PIVOT), look_at_pose(-0.3, 0.1, PIVOT)]), k)
    origins, directions = RaySampler()(*split_label(c), 8)  # (2, 64, 3) each
    points = origins + 2.6 * directions
    uv = project_points(points, c)
    idx = torch.arange(8.0)
    expected = torch.stack(torch.meshgrid((idx + 0.5) / 8, (idx + 0.5) / 8, indexing="xy"), -1).reshape(1, 64, 2)
    torch.testing.assert_close(uv, expected.expand(2, -1, -1), atol=1e-5, rtol=0)
    # the canonical camera sees +x on the right and +y up
    right_up = project_points(torch.tensor([[[0.1, 0.1, 0.2]]]), canonical_camera())[0, 0]
    assert right_up[0] > 0.5 and right_up[1] < 0.5


def test_mirror_label_negates_the_documented_entries():
    c = torch.randn(3, 25, generator=torch.Generator().manual_seed(0))
    m = mirror_label(c)
    negated = {1, 2, 3, 4, 8, 12}  # flat indices of (0,1), (0,2), (0,3), (1,0), (2,0), (3,0)
    for idx in range(25):
        assert m[0, idx] == (-c[0, idx] if idx in negated else c[0, idx]), idx
    assert torch.equal(mirror_label(m), c)


def test_mirror_of_a_yawed_camera_is_the_opposite_yaw():
    k = intrinsics_from_focal()
    for yaw, pitch in [(0.4, -0.2), (1.0, 0.0), (-0.7, 0.1)]:
        c = make_label(look_at_pose(yaw, pitch, PIVOT), k)
        expected = make_label(look_at_pose(-yaw, pitch, PIVOT), k)
        torch.testing.assert_close(mirror_label(c), expected, atol=1e-6, rtol=0)


# ---- look-at geometry (eg3d.md §3.14) ----------------------------------------------------------


def test_canonical_camera_matches_spec():
    c = canonical_camera()
    assert c.shape == (1, 25) and c.dtype == torch.float32
    pose, k = split_label(c)
    ideal = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]])
    torch.testing.assert_close(pose[0], ideal, atol=2e-7, rtol=0)
    # eg3d.md §3.14 lists EG3D's exact float32 output; the tiny entries come from float32(pi/2).
    for (row, col), value in {
        (0, 1): 2.2e-15, (0, 2): 4.72e-8, (0, 3): -1.18e-7,
        (1, 2): 4.72e-8, (1, 3): -1.18e-7, (2, 0): 4.72e-8, (2, 1): -4.72e-8,
    }.items():
        assert pose[0, row, col].item() == pytest.approx(value, rel=0.02), (row, col)
    torch.testing.assert_close(k[0], intrinsics_from_focal(FOCAL_PAPER))


def test_pose_is_a_rigid_look_at_transform():
    yaw = torch.tensor([-1.3, -0.4, 0.0, 0.6, 1.5])
    pitch = torch.tensor([0.3, -0.2, 0.0, -0.5, 0.1])
    pose = look_at_pose(yaw, pitch, PIVOT, 2.7).double()  # (5, 4, 4)
    rot, origin = pose[:, :3, :3], pose[:, :3, 3]
    close = dict(atol=1e-6, rtol=0)
    eye = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, eye, **close)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(5, dtype=torch.float64), **close)
    # On the sphere around the world origin (not the pivot); forward (column 2) points at the pivot.
    torch.testing.assert_close(origin.norm(dim=1), torch.full((5,), 2.7, dtype=torch.float64), **close)
    to_pivot = torch.tensor(PIVOT, dtype=torch.float64) - origin
    torch.testing.assert_close(rot[:, :, 2], to_pivot / to_pivot.norm(dim=1, keepdim=True), **close)
    # No roll: camera x (right) is horizontal; camera y (down) has a negative world-y component.
    assert rot[:, 1, 0].abs().max() < 1e-6
    assert (rot[:, 1, 1] < 0).all()
    # Polar angle phi = arccos(1 - 2 v / pi), v = pi/2 + pitch: origin y = r (1 - 2 v / pi) = -r 2 pitch / pi.
    torch.testing.assert_close(origin[:, 1], -2.7 * 2 * pitch.double() / math.pi, atol=1e-6, rtol=0)


def test_named_camera_origins_match_spec():
    # reference_method.md §0.3: dmap yaw +-1 rad sits at (+-2.272, 0, 1.459); pitch -0.2 raises y to 0.344.
    dmap_pose, _ = split_label(dmap_cameras().render)
    torch.testing.assert_close(dmap_pose[0, :3, 3], torch.tensor([2.272, 0.0, 1.459]), atol=1e-3, rtol=0)
    torch.testing.assert_close(dmap_pose[2, :3, 3], torch.tensor([-2.272, 0.0, 1.459]), atol=1e-3, rtol=0)
    img_pose, _ = split_label(triple_image_cameras().render)
    torch.testing.assert_close(img_pose[:, 1, 3], torch.full((3,), 0.3438), atol=1e-4, rtol=0)
    assert img_pose[0, 0, 3] < 0 < img_pose[2, 0, 3]  # yaw -0.4 first, on the -x side


@pytest.mark.parametrize("views_fn", [dmap_cameras, triple_image_cameras, annotation_views])
def test_named_views_shapes_and_conditioning(views_fn):
    views = views_fn()
    assert len(views.names) == 3
    assert views.render.shape == (3, 25) and views.conditioning.shape == (3, 25)
    torch.testing.assert_close(views.conditioning, canonical_camera().expand(3, 25), atol=0, rtol=0)


def test_dmap_middle_view_is_canonical():
    assert torch.equal(dmap_cameras().render[1:2], canonical_camera())


def test_annotation_views_are_front_three_quarter_profile():
    pose, _ = split_label(annotation_views().render)
    forward = pose[:, :3, 2]  # (3, 3)
    yaw_about_y = torch.rad2deg(torch.atan2(-forward[:, 0], -forward[:, 2]))
    assert yaw_about_y[0].abs() < 1e-4
    assert yaw_about_y[1] == pytest.approx(36.93, abs=0.01)
    assert yaw_about_y[2] == pytest.approx(88.52, abs=0.01)  # just short of a true profile
    assert pose[1, 1, 3] > 0  # three-quarter camera slightly raised


def test_batch_broadcast_and_bad_sizes():
    assert look_at_pose(torch.zeros(4), 0.0).shape == (4, 4, 4)
    assert look_at_pose(0.0, 0.0, batch_size=3).shape == (3, 4, 4)
    assert look_at_pose(0.0, 0.0, torch.zeros(2, 3)).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="common size"):
        look_at_pose(torch.zeros(2), torch.zeros(3))


def test_random_poses_use_only_the_given_generator():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    kwargs = dict(yaw_std=0.3, pitch_std=0.2, batch_size=2000)
    a = look_at_pose(0.0, 0.0, **kwargs, generator=torch.Generator().manual_seed(1))
    b = look_at_pose(0.0, 0.0, **kwargs, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)  # global stream untouched
    assert torch.equal(a, b)
    # Recover the yaw from the origin: theta = atan2(z, -x) about the world origin; mean 0, std 0.3.
    yaw = torch.atan2(a[:, 2, 3], -a[:, 0, 3]) - math.pi / 2
    assert abs(yaw.mean().item()) < 0.03 and yaw.std().item() == pytest.approx(0.3, rel=0.1)


def test_zero_std_draws_nothing():
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    look_at_pose(0.3, 0.1, generator=g)
    assert torch.equal(g.get_state(), state)


# ---- EG3D compatibility sampler ----------------------------------------------------------------


def test_sampler_consumes_two_randn_even_with_zero_std():
    torch.manual_seed(123)
    LookAtPoseSampler.sample(math.pi / 2, math.pi / 2, torch.tensor(PIVOT), radius=2.7, batch_size=4)
    after_sampler = torch.randn(5)
    torch.manual_seed(123)
    torch.randn((4, 1))
    torch.randn((4, 1))
    assert torch.equal(after_sampler, torch.randn(5))


def test_sampler_equals_look_at_pose_bitwise():
    for yaw, pitch in [(0.0, 0.0), (1.0, 0.0), (-0.4, -0.2), (0.6, -0.1)]:
        h, v = math.pi / 2 + yaw, math.pi / 2 + pitch
        compat = LookAtPoseSampler.sample(h, v, torch.tensor(PIVOT), radius=2.7)
        assert torch.equal(compat, look_at_pose(yaw, pitch, PIVOT, 2.7))


def test_sampler_noise_is_std_times_the_global_randn():
    torch.manual_seed(7)
    noisy = LookAtPoseSampler.sample(1.5, 1.5, torch.tensor(PIVOT), 0.2, 0.1, radius=2.7, batch_size=3)
    torch.manual_seed(7)
    dh, dv = torch.randn((3, 1)), torch.randn((3, 1))
    yaw = (1.5 - math.pi / 2 + 0.2 * dh).squeeze(1)  # (3,)
    pitch = (1.5 - math.pi / 2 + 0.1 * dv).squeeze(1)  # (3,)
    expected = look_at_pose(yaw, pitch, PIVOT, 2.7)
    torch.testing.assert_close(noisy, expected, atol=2e-6, rtol=0)


def test_pitch_is_clamped_at_the_poles():
    top = look_at_pose(0.0, -math.pi, PIVOT, 2.7)  # v = -pi/2 is clamped to 1e-5: camera above
    assert torch.isfinite(top).all()
    assert top[0, 1, 3] == pytest.approx(2.7, abs=1e-3)
