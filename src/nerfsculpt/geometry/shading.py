"""Images for annotators: grey-clay renders of the sigma surface, and the RGB render.

What is drawn: the iso-surface ``sigma = level`` (10 by default) of the raw sigma cube, after
clearing the same border as the meshes (``mesh.BORDER_PRESETS``). That is exactly the surface of
the meshes of EG3D and the reference (level 10, docs/method/reference_method.md §7.9) and of the field the
reward sees, seen from ``camera.annotation_views()``. Why not EG3D's depth image: its depth is an
opacity-weighted average, which smears foreground and background at silhouettes and through hair,
and it is stochastic; the iso-surface is sharp, deterministic and the same as the mesh.

How: the 256^3 cube is computed once per latent (``sigma.sigma_grid``; every view reuses it). Each
pixel's ray (EG3D's rays, pixel centres) marches the trilinearly interpolated cube in one-voxel
steps inside the bounding box of the voxels above ``level``, then bisects the first crossing.
Normals are ``-grad sigma`` by central differences over one voxel: smooth at the scale the cube
resolves (the analytic tri-plane gradient jumps at every texel edge and would show a texel grid).
Shading is Lambert + Blinn-Phong for a fixed key light in the camera frame (upper left, as in
portrait lighting, so every view is lit alike relative to the viewer) plus ambient, on a grey clay
albedo, in linear light, encoded with gamma 2.2. Supersampling antialiases the silhouettes;
background is white or transparent.

Example::

    views = annotation_views()
    clay = render_geometry(G, ws, views)            # [N, 3, 256, 256, 3] uint8
    rgb = render_rgb(G, ws)                         # [N, 512, 512, 3] uint8
    for name, image in zip(views.names, clay[0]):
        save_png(f"out/{name}.png", image)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.atomic import png_bytes, write_atomic
from nerfsculpt.camera import CameraViews, annotation_views, canonical_camera, split_label
from nerfsculpt.generator.rendering import RaySampler
from nerfsculpt.geometry.grid import index_to_world
from nerfsculpt.geometry.mesh import BORDER_PRESETS, Border
from nerfsculpt.geometry.sigma import sigma_grid

Background = Literal["white", "transparent"]


@dataclass(frozen=True)
class ClayShading:
    """Material and lights of the clay renders; directions are in the camera frame (x right, y down, z forward)."""

    albedo: tuple[float, float, float] = (0.80, 0.78, 0.75)
    """Linear RGB reflectance: a light, slightly warm grey clay."""
    ambient: float = 0.25
    """Light that reaches every point regardless of its normal."""
    diffuse: float = 0.75
    """Strength of the Lambertian key light."""
    specular: float = 0.10
    """Strength of the Blinn-Phong highlight (white)."""
    shininess: float = 24.0
    """Blinn-Phong exponent: larger is a tighter highlight."""
    light: tuple[float, float, float] = (-0.45, -0.55, -0.70)
    """Direction toward the key light: upper left of the viewer, in front of the subject."""
    gamma: float = 2.2
    """Display encoding of the linear result."""


@dataclass(frozen=True)
class Surface:
    """First intersections of pixel rays with the iso-surface, for V views of H x W pixels."""

    hit: Tensor
    """[V, H, W] bool: the ray meets the surface."""
    depth: Tensor
    """[V, H, W] distance along the unit ray (world units); inf where there is no hit."""
    normals: Tensor
    """[V, H, W, 3] unit outward normals (toward lower sigma), world frame; 0 where there is no hit."""


# ------------------------------------------------------------------------------------------------
# Ray casting of a sigma cube


def _sample_cube(cube: Tensor, points: Tensor, cube_length: float) -> Tensor:  # [1,1,X,Y,Z], [M,3] -> [M]
    """Trilinear sigma at world points; voxel (i, j, k) sits at the grid position of ``geometry.grid``."""
    grid = points[:, [2, 1, 0]] * (2 / cube_length)  # (M, 3): grid_sample wants (W=z, H=y, D=x)
    out = F.grid_sample(cube, grid.reshape(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border",
                        align_corners=True)  # align_corners: -1 and +1 are the centres of the end voxels
    return out.reshape(-1)


def _occupied_box(cube: Tensor, level: float, cube_length: float) -> tuple[Tensor, Tensor] | None:
    """World bounds [3], [3] of the voxels at or above ``level``, one voxel wider; None if there are none."""
    n = cube.shape[0]
    lo, hi = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        occupied = torch.nonzero((cube >= level).any(dim=others)).reshape(-1)  # (n_occupied,)
        if occupied.numel() == 0:
            return None
        lo.append(index_to_world(max(occupied[0].item() - 1, 0), n, cube_length))
        hi.append(index_to_world(min(occupied[-1].item() + 1, n - 1), n, cube_length))
    return torch.tensor(lo, device=cube.device), torch.tensor(hi, device=cube.device)


def _intersect_box(origins: Tensor, directions: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances [M], [M] of rays [M, 3] through an axis-aligned box (slab method)."""
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t_lo, t_hi = (lo - origins) / safe, (hi - origins) / safe  # (M, 3) each
    t_near = torch.minimum(t_lo, t_hi).amax(dim=1).clamp_min(0)
    t_far = torch.maximum(t_lo, t_hi).amin(dim=1)
    return t_near, t_far


def trace_level_surface(
    sigma_xyz: Tensor,  # [R, R, R] raw sigma, [x, y, z] order
    cameras: Tensor | CameraViews,  # [V, 25] rendering labels, or CameraViews (its .render)
    resolution: int = 256,
    level: float = 10.0,
    cube_length: float = 1.0,
    refine_steps: int = 10,
    chunk_points: int = 1 << 22,
) -> Surface:
    """First crossing of ``sigma = level`` along each pixel ray of each camera (see the module docstring).

    Rays march the trilinear cube in steps of one voxel ``L/(R-1)``; surfaces thinner than a voxel
    can be missed, as in marching cubes at the same resolution. A ray that enters the occupied box
    already above ``level`` hits at its entry point.
    """
    if sigma_xyz.ndim != 3 or len(set(sigma_xyz.shape)) != 1 or sigma_xyz.shape[0] < 2:
        raise ValueError(f"expected a sigma cube [R, R, R] in [x, y, z] order, got {tuple(sigma_xyz.shape)}")
    labels = cameras.render if isinstance(cameras, CameraViews) else cameras
    if labels.ndim != 2 or labels.shape[1] != 25:
        raise ValueError(f"expected camera labels [V, 25] or CameraViews, got {tuple(labels.shape)}")
    if not torch.isfinite(sigma_xyz).all():
        raise ValueError("sigma contains NaN or inf; check it with sigma.check_finite first")
    device = sigma_xyz.device
    v, n, m = len(labels), sigma_xyz.shape[0], resolution**2
    voxel = cube_length / (n - 1)
    cube = sigma_xyz.float()[None, None]  # (1, 1, X, Y, Z)
    cam2world, intrinsics = split_label(labels.to(device=device, dtype=torch.float32))
    origins, directions = RaySampler()(cam2world, intrinsics, resolution)  # (V, H*W, 3) each
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)  # (V*H*W, 3)

    depth = torch.full((v * m,), math.inf, device=device)
    normals = torch.zeros(v * m, 3, device=device)
    box = _occupied_box(sigma_xyz, level, cube_length)
    if box is not None:
        t_near, t_far = _intersect_box(origins, directions, *box)
        candidates = torch.nonzero(t_near < t_far).reshape(-1)  # rays that cross the occupied box
        steps = int(math.ceil(float((t_far - t_near)[candidates].max()) / voxel)) + 1 if len(candidates) else 0
        for part in candidates.split(max(chunk_points // max(steps, 1), 1)):
            o, d, t0, t1 = origins[part], directions[part], t_near[part], t_far[part]
            t = t0[:, None] + voxel * torch.arange(steps, device=device)  # (m, S)
            sigma = _sample_cube(cube, (o[:, None] + t[..., None] * d[:, None]).reshape(-1, 3), cube_length)
            above = (sigma.reshape(t.shape) >= level) & (t <= t1[:, None])  # (m, S)
            found = above.any(dim=1)
            first = above.to(torch.uint8).argmax(dim=1)  # index of the first sample above level
            hi = t.gather(1, first[:, None])[:, 0]
            lo = torch.where(first > 0, t.gather(1, (first - 1).clamp_min(0)[:, None])[:, 0], hi)
            for _ in range(refine_steps):  # bisection keeps sigma(lo) < level <= sigma(hi)
                mid = (lo + hi) / 2
                inside = _sample_cube(cube, o + mid[:, None] * d, cube_length) >= level
                lo, hi = torch.where(inside, lo, mid), torch.where(inside, mid, hi)
            depth[part[found]] = hi[found]
        hits = torch.nonzero(torch.isfinite(depth)).reshape(-1)
        points = origins[hits] + depth[hits, None] * directions[hits]  # (n_hits, 3)
        offsets = voxel * torch.eye(3, device=device)  # (3, 3)
        gradient = torch.stack([
            _sample_cube(cube, points + offsets[a], cube_length) - _sample_cube(cube, points - offsets[a], cube_length)
            for a in range(3)
        ], dim=1)  # (n_hits, 3), up to the factor 1 / (2 voxel)
        flat = gradient.abs().amax(dim=1) == 0  # no slope: face the camera
        normals[hits] = torch.where(flat[:, None], -directions[hits], -F.normalize(gradient, dim=1))
    hit = torch.isfinite(depth)
    return Surface(hit.reshape(v, resolution, resolution), depth.reshape(v, resolution, resolution),
                   normals.reshape(v, resolution, resolution, 3))


# ------------------------------------------------------------------------------------------------
# Shading


def shade_surface(
    surface: Surface,
    cameras: Tensor | CameraViews,  # [V, 25], those the surface was traced from
    shading: ClayShading = ClayShading(),
    supersample: int = 1,
    background: Background = "white",
) -> np.ndarray:  # [V, H/s, W/s, 3] uint8 (white) or [V, H/s, W/s, 4] (transparent)
    """Clay-shade traced normals; ``supersample`` s averages s x s pixel blocks in linear light."""
    labels = cameras.render if isinstance(cameras, CameraViews) else cameras
    v, h, w = surface.hit.shape
    if h % supersample or w % supersample:
        raise ValueError(f"image size {h}x{w} is not a multiple of supersample={supersample}")
    device = surface.normals.device
    cam2world, intrinsics = split_label(labels.to(device=device, dtype=torch.float32))  # (V, 4, 4), (V, 3, 3)
    rotation = cam2world[:, :3, :3]  # (V, 3, 3) camera -> world
    _, directions = RaySampler()(cam2world, intrinsics, h)  # (V, H*W, 3) world
    n_cam = torch.einsum("vji,vhwj->vhwi", rotation, surface.normals)  # (V, H, W, 3): R^T n
    view = -torch.einsum("vji,vmj->vmi", rotation, directions).reshape(v, h, w, 3)  # toward the eye, camera frame
    light = F.normalize(torch.tensor(shading.light, device=device), dim=0)  # (3,)
    half = F.normalize(view + light, dim=-1)  # (V, H, W, 3) Blinn half-vector
    lambert = (n_cam @ light).clamp_min(0)  # (V, H, W)
    highlight = (n_cam * half).sum(-1).clamp_min(0) ** shading.shininess  # (V, H, W)
    albedo = torch.tensor(shading.albedo, device=device)  # (3,)
    colour = albedo * (shading.ambient + shading.diffuse * lambert[..., None]) + shading.specular * highlight[..., None]
    coverage = surface.hit.float()[..., None]  # (V, H, W, 1)
    premultiplied = torch.cat([colour.clamp(0, 1) * coverage, coverage], dim=-1)  # (V, H, W, 4) linear
    premultiplied = F.avg_pool2d(premultiplied.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)  # (V, h, w, 4)
    rgb, alpha = premultiplied[..., :3], premultiplied[..., 3:]
    if background == "white":
        out = (rgb + (1 - alpha)) ** (1 / shading.gamma)  # over a white background
    elif background == "transparent":
        straight = torch.where(alpha > 0, rgb / alpha.clamp_min(1e-8), torch.zeros_like(rgb))
        out = torch.cat([straight ** (1 / shading.gamma), alpha], dim=-1)
    else:
        raise ValueError(f"background must be 'white' or 'transparent', got {background!r}")
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


# ------------------------------------------------------------------------------------------------
# From a generator


def clear_border(sigma_xyz: Tensor, border: Border | str | None, value: float = -1000.0) -> Tensor:
    """Copy of a cube [R, R, R] with the faces of ``border`` set to ``value``, as ``mesh.extract_mesh`` does."""
    if border is None:
        return sigma_xyz.clone()
    if isinstance(border, str):
        if border not in BORDER_PRESETS:
            raise ValueError(f"unknown border preset {border!r}; choose one of {sorted(BORDER_PRESETS)} or None")
        border = BORDER_PRESETS[border]
    n = sigma_xyz.shape[0]
    xl, xh, yl, yh, zl, zh = border.voxels(n)
    out = sigma_xyz.clone()
    out[:xl], out[n - xh :] = value, value
    out[:, :yl], out[:, n - yh :] = value, value
    out[:, :, :zl], out[:, :, n - zh :] = value, value
    return out


def render_geometry(
    G: nn.Module,
    ws: Tensor,  # [N, num_ws, w_dim]
    views: CameraViews | Tensor | None = None,  # [V, 25]; None = camera.annotation_views()
    resolution: int = 256,
    grid_resolution: int = 256,
    level: float = 10.0,
    border: Border | str | None = "eg3d",
    supersample: int = 2,
    shading: ClayShading = ClayShading(),
    background: Background = "white",
    noise_mode: str = "const",
    chunk_points: int = 1 << 20,
) -> np.ndarray:  # [N, V, resolution, resolution, 3 or 4] uint8
    """Clay renders of each latent's ``sigma = level`` surface (the mesh's) from each view.

    ``border``: a ``mesh.BORDER_PRESETS`` name, a ``Border`` or None; use the one of the meshes
    shown next to the renders ("eg3d", the bank's default; the reference's study meshes used
    "legacy_sigma10"). A latent with no surface gives a blank image.
    """
    views = annotation_views(device=ws.device) if views is None else views
    images = []
    for n in range(len(ws)):
        cube = sigma_grid(G, ws[n : n + 1], grid_resolution, chunk_points=chunk_points, noise_mode=noise_mode)[0]
        cube = clear_border(cube, border)  # (R, R, R)
        surface = trace_level_surface(cube, views, resolution * supersample, level,
                                      float(G.rendering_kwargs["box_warp"]))
        images.append(shade_surface(surface, views, shading, supersample, background))
    return np.stack(images)


def image_to_uint8(images: Tensor) -> np.ndarray:  # [N, 3, H, W] in [-1, 1] -> [N, H, W, 3] uint8
    """EG3D's conversion ``(x * 127.5 + 128).clamp(0, 255)`` truncated to uint8 (docs/method/eg3d.md §3.15)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
    return (images.detach() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def render_rgb(
    G: nn.Module,
    ws: Tensor,  # [N, num_ws, w_dim]
    camera: Tensor | None = None,  # [1, 25] or [N, 25]; None = the canonical camera
    noise_mode: str = "const",
    deterministic: bool = True,
) -> np.ndarray:  # [N, img_resolution, img_resolution, 3] uint8
    """The generator's super-resolved image (``G.synthesis(...)['image']``), deterministic by default."""
    camera = canonical_camera(device=ws.device) if camera is None else camera.to(ws.device)
    if camera.ndim != 2 or camera.shape[1] != 25 or len(camera) not in (1, len(ws)):
        raise ValueError(f"expected camera labels [1, 25] or [{len(ws)}, 25], got {tuple(camera.shape)}")
    with torch.inference_mode():
        image = G.synthesis(ws, camera.expand(len(ws), 25), noise_mode=noise_mode,
                            deterministic=deterministic)["image"]  # (N, 3, H, W)
    return image_to_uint8(image)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an [H, W, 3] (RGB) or [H, W, 4] (RGBA) uint8 image as PNG atomically (temp + os.replace)."""
    data = png_bytes(image)  # validates the image before anything touches the disk
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist; create it first")
    return write_atomic(path, data)
