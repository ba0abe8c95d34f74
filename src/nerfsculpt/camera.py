"""Cameras of EG3D: the 25-number label, look-at poses, focal lengths and the named views.

The shared camera vocabulary of nerfsculpt (torch and numpy only). Conventions (docs/method/eg3d.md §3.10,
§3.14, §5.1; docs/method/reference_method.md §0.3):

- World: +y is up in the image, the face looks toward +z, image-right is +x. The tri-plane box is
  [-0.5, 0.5]^3 (``box_warp = 1``).
- Camera: OpenCV, +x right, +y down, +z forward. ``cam2world`` is a [4, 4] rigid transform whose
  rotation columns are the camera's (right, down, forward) axes in world coordinates.
- Label ``c`` [N, 25]: the row-major 4x4 ``cam2world`` (16 numbers), then the row-major 3x3
  intrinsics normalised by the image size (9 numbers): ``[[f, 0, cx], [0, f, cy], [0, 0, 1]]``.
- Angles: ``yaw`` and ``pitch`` are offsets in radians from the frontal view, i.e. EG3D's
  ``h = pi/2 + yaw`` and ``v = pi/2 + pitch``. Positive yaw moves the camera toward +x (it sees the
  subject's left cheek); negative pitch raises the camera. ``v`` is not an elevation angle: the
  polar angle is ``phi = arccos(1 - 2 v / pi)`` (docs/method/eg3d.md §3.14).

Focal lengths: three values circulate (see the ``FOCAL_*`` constants). nerfsculpt defaults to the
paper's ``FOCAL_PAPER = 4.26339`` because the preference data was rendered with it.

Example::

    c = canonical_camera()                       # [1, 25]
    cam2world, intrinsics = split_label(c)        # [1, 4, 4], [1, 3, 3]
    views = dmap_cameras()                        # render [3, 25], conditioning [3, 25]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nerfsculpt.camera_conventions import (  # noqa: F401  (part of this module's API)
    AVG_CAMERA_PIVOT,
    AVG_CAMERA_RADIUS,
    FOCAL_FFHQ_DATASET,
    FOCAL_PAPER,
    focal_to_fov,
    fov_to_focal,
)

_V_CLAMP = 1e-5  # v is clamped to [1e-5, pi - 1e-5] before the polar angle is taken
# EG3D gen_samples.py: `--fov-deg` is a click `type=int`, so its default 18.837 becomes 18 (docs/method/eg3d.md §3.15).
FOCAL_GEN_SAMPLES = fov_to_focal(18)


def intrinsics_from_focal(
    focal: float = FOCAL_PAPER, device: torch.device | str | None = None
) -> Tensor:  # [3, 3] float32
    """Normalised intrinsics ``[[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]]`` (principal point at the centre)."""
    return torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]], device=device)


def make_label(cam2world: Tensor, intrinsics: Tensor) -> Tensor:
    """Pack poses [N, 4, 4] and intrinsics [N, 3, 3] (or one [3, 3] for all) into labels [N, 25]."""
    assert cam2world.ndim == 3 and cam2world.shape[1:] == (4, 4), (
        f"expected cam2world [N, 4, 4], got {tuple(cam2world.shape)}"
    )
    n = cam2world.shape[0]
    if intrinsics.ndim == 2:
        intrinsics = intrinsics.expand(n, 3, 3)  # (N, 3, 3)
    assert intrinsics.shape == (n, 3, 3), (
        f"expected intrinsics [3, 3] or [{n}, 3, 3], got {tuple(intrinsics.shape)}"
    )
    intrinsics = intrinsics.to(device=cam2world.device, dtype=cam2world.dtype)
    return torch.cat([cam2world.reshape(n, 16), intrinsics.reshape(n, 9)], dim=1)  # (N, 25)


def split_label(c: Tensor) -> tuple[Tensor, Tensor]:
    """Unpack labels [N, 25] into ``(cam2world [N, 4, 4], intrinsics [N, 3, 3])``."""
    assert c.ndim == 2 and c.shape[1] == 25, f"expected camera labels [N, 25], got {tuple(c.shape)}"
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3)


def project_points(points: Tensor, c: Tensor) -> Tensor:
    """Image coordinates [N, M, 2] of world points [N, M, 3] seen by cameras c [N, 25].

    (u, v) are normalised by the image size (column, row; pixel k of R spans [k / R, (k + 1) / R]),
    the inverse of the renderer's ray sampler: the ray of the pixel at (u, v) passes through the point.
    """
    cam2world, intrinsics = split_label(c)
    world2cam = torch.linalg.inv(cam2world)
    camera = points @ world2cam[:, :3, :3].transpose(1, 2) + world2cam[:, None, :3, 3]  # (N, M, 3)
    x, y = camera[..., 0] / camera[..., 2], camera[..., 1] / camera[..., 2]
    fx, fy, sk = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None], intrinsics[:, 0, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    v = y * fy + cy
    u = x * fx + cx - cy * sk / fy + sk * v / fy
    return torch.stack([u, v], dim=-1)


def mirror_label(c: Tensor) -> Tensor:
    """Label of the horizontally mirrored image [N, 25] -> [N, 25] (docs/method/eg3d.md §5.1).

    The pose is conjugated by ``D = diag(-1, 1, 1, 1)`` (``D @ cam2world @ D``), which negates the
    entries (0, 1), (0, 2), (0, 3), (1, 0), (2, 0) and (3, 0); intrinsics are unchanged. Mirroring
    a yaw ``a`` camera gives the yaw ``-a`` camera. Applying it twice is the identity.
    """
    cam2world, intrinsics = split_label(c)
    flip = torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=c.dtype, device=c.device)
    mirrored = flip[:, None] * cam2world * flip[None, :]  # (N, 4, 4): D @ M @ D, D diagonal
    return make_label(mirrored, intrinsics)


# ------------------------------------------------------------------------------------------------
# Look-at poses (EG3D LookAtPoseSampler + create_cam2world_matrix, docs/method/eg3d.md §3.14)


def _normalise(v: Tensor) -> Tensor:  # [N, 3] -> [N, 3]
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def cam2world_from_forward(forward: Tensor, origin: Tensor) -> Tensor:
    """Roll-free camera pose [N, 4, 4] looking along ``forward`` [N, 3] from ``origin`` [N, 3].

    EG3D's ``create_cam2world_matrix`` (docs/method/eg3d.md §3.14): with ``up0 = (0, 1, 0)``,
    ``right = -normalise(up0 x forward)`` and ``up = normalise(forward x right)``; the rotation
    columns are (right, up, forward). For a level camera ``up`` is world (0, -1, 0): OpenCV y-down.
    """
    forward = _normalise(forward)
    up0 = torch.tensor([0.0, 1.0, 0.0], dtype=forward.dtype, device=forward.device).expand_as(forward)
    right = -_normalise(torch.linalg.cross(up0, forward, dim=-1))
    up = _normalise(torch.linalg.cross(forward, right, dim=-1))
    pose = torch.eye(4, dtype=forward.dtype, device=forward.device).repeat(forward.shape[0], 1, 1)
    pose[:, :3, :3] = torch.stack((right, up, forward), dim=-1)  # (N, 3, 3): columns
    pose[:, :3, 3] = origin
    return pose


def _pose_from_eg3d_angles(h: Tensor, v: Tensor, lookat: Tensor, radius: float) -> Tensor:
    """Poses [N, 4, 4] from EG3D's angles h, v [N, 1] (float32), in EG3D's float32 op order."""
    v = torch.clamp(v, _V_CLAMP, math.pi - _V_CLAMP)
    theta = h
    phi = torch.arccos(1 - 2 * (v / math.pi))  # polar angle from +y
    # On a sphere of `radius` around the world origin, not around the look-at point.
    origin = torch.cat(
        [
            radius * torch.sin(phi) * torch.cos(math.pi - theta),
            radius * torch.cos(phi),
            radius * torch.sin(phi) * torch.sin(math.pi - theta),
        ],
        dim=1,
    )  # (N, 3)
    return cam2world_from_forward(_normalise(lookat - origin), origin)


def _as_lookat(lookat: Sequence[float] | Tensor, device: torch.device | str | None) -> Tensor:
    lookat = torch.as_tensor(lookat, dtype=torch.float32, device=device)
    assert lookat.ndim <= 2 and lookat.shape[-1] == 3, (
        f"lookat must be [3] or [N, 3], got {tuple(lookat.shape)}"
    )
    return lookat.reshape(-1, 3)  # (1 or N, 3)


def look_at_pose(
    yaw: float | Sequence[float] | Tensor = 0.0,  # scalar or [N], radians from the frontal view
    pitch: float | Sequence[float] | Tensor = 0.0,  # scalar or [N], radians; negative raises the camera
    lookat: Sequence[float] | Tensor = AVG_CAMERA_PIVOT,  # [3] or [N, 3]
    radius: float = AVG_CAMERA_RADIUS,
    *,
    yaw_std: float = 0.0,
    pitch_std: float = 0.0,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,  # default: lookat's device if a tensor, else CPU
) -> Tensor:  # [N, 4, 4] float32
    """Camera-to-world poses of EG3D's ``LookAtPoseSampler`` geometry, batched (docs/method/eg3d.md §3.14).

    The camera sits on the sphere of ``radius`` around the world origin at ``theta = pi/2 + yaw``,
    ``phi = arccos(1 - 2 (pi/2 + pitch) / pi)`` and looks at ``lookat``. With ``yaw_std`` or
    ``pitch_std`` > 0, Gaussian noise drawn from ``generator`` (yaw first, then pitch) is added to
    the angles; a zero std draws nothing (use :class:`LookAtPoseSampler` for EG3D's RNG stream).
    ``N`` is the broadcast size of ``yaw``, ``pitch``, ``lookat`` and ``batch_size``.

    For zero std the result is bitwise equal to ``LookAtPoseSampler.sample(pi/2 + yaw, pi/2 + pitch,
    lookat, radius=radius)``: the angles are summed in float64 and the geometry runs in float32.

    >>> look_at_pose(0.0, 0.0)[0, :3, 3]      # the canonical camera sits at (0, 0, 2.7)
    tensor([-1.1802e-07, -1.1802e-07,  2.7000e+00])
    """
    if device is None and isinstance(lookat, Tensor):
        device = lookat.device
    yaw_t = torch.as_tensor(yaw, dtype=torch.float64).reshape(-1)  # (1 or N,)
    pitch_t = torch.as_tensor(pitch, dtype=torch.float64).reshape(-1)  # (1 or N,)
    lookat_t = _as_lookat(lookat, device)
    sizes = {yaw_t.numel(), pitch_t.numel(), lookat_t.shape[0], batch_size or 1} - {1}
    if len(sizes) > 1:
        raise ValueError(
            f"yaw ({yaw_t.numel()}), pitch ({pitch_t.numel()}), lookat ({lookat_t.shape[0]}) and "
            f"batch_size ({batch_size}) must have size 1 or a common size N"
        )
    n = sizes.pop() if sizes else 1
    h = (math.pi / 2 + yaw_t).expand(n)  # (N,) float64: EG3D's h
    v = (math.pi / 2 + pitch_t).expand(n)  # (N,) float64: EG3D's v
    if yaw_std > 0:
        h = h + yaw_std * torch.randn(n, generator=generator, dtype=torch.float64)
    if pitch_std > 0:
        v = v + pitch_std * torch.randn(n, generator=generator, dtype=torch.float64)
    h = h.to(device=device, dtype=torch.float32).reshape(n, 1)  # (N, 1)
    v = v.to(device=device, dtype=torch.float32).reshape(n, 1)  # (N, 1)
    return _pose_from_eg3d_angles(h, v, lookat_t, radius)


class LookAtPoseSampler:
    """Drop-in for EG3D's ``LookAtPoseSampler`` (``camera_utils.py``), including its RNG use.

    ``sample`` always draws two ``torch.randn((batch_size, 1))`` from the *global* torch RNG, even
    when both stds are 0, exactly like EG3D (docs/method/eg3d.md §3.14). Keep it for RNG-stream parity with
    EG3D scripts (e.g. gen_samples.py's per-seed noise); otherwise prefer :func:`look_at_pose`,
    whose angles are offsets from the frontal view and whose randomness is explicit.
    """

    @staticmethod
    def sample(
        h: float,  # EG3D's horizontal angle theta; pi/2 is frontal
        v: float,  # EG3D's vertical parameter; pi/2 is level
        lookat: Sequence[float] | Tensor,  # [3] or [N, 3]
        h_std: float = 0.0,
        v_std: float = 0.0,
        radius: float = 1.0,
        batch_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> Tensor:  # [batch_size, 4, 4] float32
        h_t = torch.randn((batch_size, 1), device=device) * h_std + h  # (B, 1); drawn even if std == 0
        v_t = torch.randn((batch_size, 1), device=device) * v_std + v  # (B, 1)
        return _pose_from_eg3d_angles(h_t, v_t, _as_lookat(lookat, device), radius)


# ------------------------------------------------------------------------------------------------
# Named cameras (docs/method/reference_method.md §0.3)


def canonical_camera(
    radius: float = AVG_CAMERA_RADIUS,
    pivot: Sequence[float] = AVG_CAMERA_PIVOT,
    focal: float = FOCAL_PAPER,
    device: torch.device | str | None = None,
) -> Tensor:  # [1, 25]
    """The canonical label (h = v = pi/2): camera at (0, 0, radius) looking down -z.

    Used as the generator conditioning everywhere and as the pose of every sigma extraction.
    cam2world is [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]] up to float32 noise
    of about 1e-7 (docs/method/eg3d.md §3.14).
    """
    pose = look_at_pose(0.0, 0.0, pivot, radius, device=device)  # (1, 4, 4)
    return make_label(pose, intrinsics_from_focal(focal, device=device))


@dataclass(frozen=True)
class CameraViews:
    """A set of named views: what to render from and what to condition the generator on."""

    names: tuple[str, ...]
    """One name per view."""
    render: Tensor
    """[V, 25] labels of the rendering cameras."""
    conditioning: Tensor
    """[V, 25] labels fed to the mapping network (the canonical camera for every named view set)."""


def _named_views(
    names: Sequence[str],
    yaws: Sequence[float],
    pitches: Sequence[float],
    radius: float,
    pivot: Sequence[float],
    focal: float,
    device: torch.device | str | None,
) -> CameraViews:
    intrinsics = intrinsics_from_focal(focal, device=device)
    render = make_label(look_at_pose(yaws, pitches, pivot, radius, device=device), intrinsics)  # (V, 25)
    conditioning = canonical_camera(radius, pivot, focal, device=device).expand(len(names), 25)  # (V, 25)
    return CameraViews(tuple(names), render, conditioning.contiguous())


def dmap_cameras(
    radius: float = AVG_CAMERA_RADIUS,
    pivot: Sequence[float] = AVG_CAMERA_PIVOT,
    focal: float = FOCAL_PAPER,
    device: torch.device | str | None = None,
) -> CameraViews:
    """The three depth-map cameras: yaw +1.0, 0, -1.0 rad, pitch 0, canonical conditioning.

    docs/method/reference_method.md §0.3. The paper says "+-60 deg yaw"; the code uses +-1 rad (57.3 deg about
    the world origin, about 61 deg about the pivot). View 1 is the canonical camera.
    """
    return _named_views(("yaw+1", "front", "yaw-1"), (1.0, 0.0, -1.0), (0.0, 0.0, 0.0),
                        radius, pivot, focal, device)


def triple_image_cameras(
    radius: float = AVG_CAMERA_RADIUS,
    pivot: Sequence[float] = AVG_CAMERA_PIVOT,
    focal: float = FOCAL_PAPER,
    device: torch.device | str | None = None,
) -> CameraViews:
    """The three RGB cameras: yaw -0.4, 0, +0.4 rad at pitch -0.2 (raised), canonical conditioning.

    docs/method/reference_method.md §0.3 (``get_triple_img_cams``). EG3D gen_samples.py renders the same poses
    in the opposite order (+0.4 first) and with ``FOCAL_GEN_SAMPLES``.
    """
    return _named_views(("yaw-0.4", "front", "yaw+0.4"), (-0.4, 0.0, 0.4), (-0.2, -0.2, -0.2),
                        radius, pivot, focal, device)


ANNOTATION_YAWS = (0.0, 0.6, math.pi / 2 - 0.1)
"""Yaws (rad) of :func:`annotation_views`: front, three-quarter, near-profile."""
ANNOTATION_PITCHES = (0.0, -0.1, 0.0)
"""Pitches (rad) of :func:`annotation_views`: the three-quarter camera is slightly raised."""


def annotation_views(
    radius: float = AVG_CAMERA_RADIUS,
    pivot: Sequence[float] = AVG_CAMERA_PIVOT,
    focal: float = FOCAL_PAPER,
    device: torch.device | str | None = None,
) -> CameraViews:
    """Views shown to annotators: front, three-quarter and profile, canonical conditioning.

    nerfsculpt's choice (the reference's annotation views are not in its repository):
    ``ANNOTATION_YAWS = (0, 0.6, pi/2 - 0.1)`` and ``ANNOTATION_PITCHES = (0, -0.1, 0)``. Viewing
    directions about the pivot: 0 deg, 37 deg (looking 4 deg down) and 88.5 deg. Positive yaw puts
    the camera on the +x side, so the side views show the subject's left cheek. The profile stops
    short of 90 deg on purpose: the camera orbits the world origin but looks at the pivot
    (0, 0, 0.2), so yaw pi/2 - 0.05 would already look 1.4 deg past the profile.
    """
    return _named_views(("front", "three_quarter", "profile"), ANNOTATION_YAWS, ANNOTATION_PITCHES,
                        radius, pivot, focal, device)
