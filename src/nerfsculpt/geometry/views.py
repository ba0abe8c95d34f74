"""Depth maps and point clouds of a tri-plane generator (docs/method/reference_method.md §2).

Depth is EG3D's volume-rendered depth (``image_depth``): the opacity-normalised expected distance
along the unit ray, in world units, clamped to the sampled depth range (docs/method/eg3d.md §3.11.6).

Differences from the reference, on purpose:

- Every view of a latent is rendered from that latent's ws. The reference's depth data drew three
  *different* latents for its three views (docs/method/reference_method.md §2.1); this module cannot.
- The backbone runs once per latent for all views (``G.synthesis`` per view would rerun it).
- Rendering is deterministic by default (stratum centres, evenly spaced importance quantiles,
  ``generator/rendering.py``), so a seed's depth map is reproducible; ``deterministic=False``
  gives EG3D's jittered sampling, reproducible with a ``generator``.
- Views are rendered one at a time, so EG3D's batch-global depth clamp is per view and a view's
  depth does not depend on the other views in the call.

Example::

    depth = render_depth(G, ws, dmap_cameras())                 # [N, 3, 1, 128, 128]
    points = point_cloud(G, ws, canonical_camera())              # [N, 2048, 3] world units
    x = normalise_point_cloud(points).transpose(1, 2)            # [N, 3, 2048] PointNet input
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from nerfsculpt.camera import CameraViews, canonical_camera, split_label
from nerfsculpt.generator.rendering import RaySampler

REFERENCE_N_POINTS = 2048  # points per cloud of the reference's PointNet input (§2.3)
POINT_SCALE = 0.999999  # the reference scales clouds to max |coordinate| = 0.999999 (§2.3)


def _render_labels(cameras: Tensor | CameraViews, device: torch.device) -> Tensor:  # -> [V, 25]
    labels = cameras.render if isinstance(cameras, CameraViews) else cameras
    if labels.ndim != 2 or labels.shape[1] != 25:
        raise ValueError(f"expected camera labels [V, 25] or CameraViews, got {tuple(labels.shape)}")
    return labels.to(device=device, dtype=torch.float32)


def render_depth(
    G: nn.Module,
    ws: Tensor,  # [N, num_ws, w_dim]
    cameras: Tensor | CameraViews,  # [V, 25] rendering labels, or CameraViews (its .render)
    resolution: int = 128,
    noise_mode: str = "const",
    deterministic: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:  # [N, V, 1, R, R] distance along the unit ray, world units
    """EG3D depth maps of every latent from every camera, all views of a latent from its own ws.

    128 px, ``noise_mode='const'`` are the reference's depth-data settings (§2.1). Runs under
    ``torch.inference_mode()``. ``generator`` feeds every random draw (backbone noise with
    ``noise_mode='random'``, the renderer's jitter with ``deterministic=False``).
    """
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise ValueError(f"expected ws [N, {G.num_ws}, {G.w_dim}] (from G.mapping), got {tuple(ws.shape)}")
    if not (isinstance(resolution, int) and resolution >= 1):
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    labels = _render_labels(cameras, ws.device)  # (V, 25)
    cam2world, intrinsics = split_label(labels)  # (V, 4, 4), (V, 3, 3)
    depth = torch.empty(len(ws), len(labels), 1, resolution, resolution, device=ws.device)  # (N, V, 1, R, R)
    with torch.inference_mode():
        origins, directions = G.ray_sampler(cam2world, intrinsics, resolution)  # (V, R*R, 3) each
        for n in range(len(ws)):
            planes = G.planes(ws[n : n + 1], noise_mode=noise_mode, generator=generator)  # (1, 3, C, H, W)
            for v in range(len(labels)):
                _, ray_depth, _ = G.renderer(planes, G.decoder, origins[v : v + 1], directions[v : v + 1],
                                             G.rendering_kwargs, deterministic=deterministic,
                                             generator=generator)  # (1, R*R, 1)
                depth[n, v, 0] = ray_depth.reshape(resolution, resolution)  # rays are row-major
    return depth


def depth_to_points(
    depth: Tensor,  # [N, 1, R, R] distance along the unit ray
    camera: Tensor,  # [N, 25] (or [1, 25] for all)
) -> Tensor:  # [N, R*R, 3] world points, pixel-major (row * R + col)
    """World points ``origin + depth * direction`` on EG3D's rays (pixel centres, row-major, §2.3)."""
    if depth.ndim != 4 or depth.shape[1] != 1 or depth.shape[2] != depth.shape[3]:
        raise ValueError(f"expected square depth maps [N, 1, R, R], got {tuple(depth.shape)}")
    n, _, r, _ = depth.shape
    if camera.ndim != 2 or camera.shape[1] != 25 or len(camera) not in (1, n):
        raise ValueError(f"expected camera labels [{n}, 25] or [1, 25], got {tuple(camera.shape)}")
    cam2world, intrinsics = split_label(camera.to(device=depth.device, dtype=torch.float32).expand(n, 25))
    origins, directions = RaySampler()(cam2world, intrinsics, r)  # (N, R*R, 3) each
    return origins + depth.reshape(n, r * r, 1) * directions  # (N, R*R, 3)


def subsample_points(
    points: Tensor,  # [N, P, 3]
    n: int = REFERENCE_N_POINTS,
    mode: Literal["linspace", "random"] = "linspace",
    generator: torch.Generator | None = None,
) -> Tensor:  # [N, n, 3]
    """Pick ``n`` of the ``P`` points of each cloud (docs/method/reference_method.md §2.3).

    ``'linspace'`` (the reference's evaluation transform): indices ``round(linspace(0, P-1, n))``,
    the same for every cloud. ``'random'`` (its training transform): the first ``n`` of a random
    permutation, drawn independently per cloud from ``generator``.
    """
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"expected point clouds [N, P, 3], got {tuple(points.shape)}")
    count = points.shape[1]
    if not 1 <= n <= count:
        raise ValueError(f"cannot pick n={n} points from clouds of {count}")
    if mode == "linspace":
        index = torch.linspace(0, count - 1, n, dtype=torch.float64).round().long()  # (n,)
        return points[:, index.to(points.device)]
    if mode == "random":
        index = torch.stack([torch.randperm(count, generator=generator)[:n] for _ in range(len(points))])  # (N, n)
        return torch.gather(points, 1, index.to(points.device)[..., None].expand(-1, -1, 3))
    raise ValueError(f"mode must be 'linspace' or 'random', got {mode!r}")


def normalise_point_cloud(points: Tensor) -> Tensor:  # [N, P, 3] -> [N, P, 3]
    """Centre each cloud on its mean, then scale it so that max |coordinate| = 0.999999 (§2.3)."""
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"expected point clouds [N, P, 3], got {tuple(points.shape)}")
    centred = points - points.mean(dim=1, keepdim=True)  # (N, P, 3)
    extent = centred.abs().amax(dim=(1, 2), keepdim=True)  # (N, 1, 1)
    if not bool(torch.all(extent > 0)):
        raise ValueError("cannot normalise a point cloud whose points all coincide (max |coordinate| = 0)")
    return centred * (POINT_SCALE / extent)


def point_cloud(
    G: nn.Module,
    ws: Tensor,  # [N, num_ws, w_dim]
    cameras: Tensor | CameraViews | None = None,  # [V, 25]; None = the canonical camera
    n_points: int = REFERENCE_N_POINTS,
    resolution: int = 128,
    mode: Literal["linspace", "random"] = "linspace",
    noise_mode: str = "const",
    deterministic: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:  # [N, n_points, 3] world units
    """Depth-map point clouds: R^2 points per view (16,384 at 128 px), all views pooled, subsampled.

    The reference used the canonical view only (§2.3). Points are in world units; apply
    :func:`normalise_point_cloud` for the reference's PointNet input. Background rays are kept at
    the clamped far depth, as in the reference (no radius cutoff).
    """
    if cameras is None:
        cameras = canonical_camera(device=ws.device)
    labels = _render_labels(cameras, ws.device)  # (V, 25)
    depth = render_depth(G, ws, labels, resolution, noise_mode, deterministic, generator)  # (N, V, 1, R, R)
    n, v = depth.shape[:2]
    points = depth_to_points(depth.reshape(n * v, 1, resolution, resolution), labels.repeat(n, 1))  # (N*V, R*R, 3)
    points = points.reshape(n, v * resolution * resolution, 3)  # (N, V*R*R, 3): views in order
    return subsample_points(points, n_points, mode, generator)
