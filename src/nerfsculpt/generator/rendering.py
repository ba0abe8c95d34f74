"""Tri-plane sampling, rays, importance sampling and the ray marcher of EG3D (docs/method/eg3d.md §3.7-3.11).

Randomness: EG3D's renderer jitters the stratified depths and draws the importance samples at
random on every call. That stays the default (same calls, same shapes, so the global RNG stream
matches EG3D's). Two ways to make a render reproducible:

- pass `generator=torch.Generator(...)`: every random draw of the renderer comes from it;
- pass `deterministic=True`: stratified samples sit at the centre of their strata (the expected
  position of EG3D's jitter) and importance samples use evenly spaced quantiles.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# EG3D's plane axes (generate_planes). Projection p @ inv(P_k), first two components, gives
# (x, y), (x, z) and (z, x): the third plane is ZX, not YZ. The weights depend on it (docs/method/eg3d.md §3.8).
PLANE_AXES = torch.tensor(
    [
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
        [[0, 0, 1], [1, 0, 0], [0, 1, 0]],
    ],
    dtype=torch.float32,
)
PLANE_COORDINATE_AXES = ((0, 1), (0, 2), (2, 0))  # what p @ inv(PLANE_AXES[k]) keeps, per plane


def project_onto_planes(coordinates: Tensor) -> Tensor:  # [N, M, 3] -> [N, 3, M, 2]
    """2-D coordinates of points on EG3D's three planes: (x, y), (x, z), (z, x)."""
    return torch.stack([coordinates[..., list(axes)] for axes in PLANE_COORDINATE_AXES], dim=1)


def sample_from_planes(
    plane_features: Tensor,  # [N, 3, C, H, W]
    coordinates: Tensor,  # [N, M, 3] world coordinates
    box_warp: float = 1.0,
) -> Tensor:  # [N, 3, M, C]
    """Bilinear features of each plane at the projected points; zeros outside the box."""
    n, n_planes, c, h, w = plane_features.shape
    m = coordinates.shape[1]
    grid = project_onto_planes((2 / box_warp) * coordinates)  # (N, 3, M, 2) in [-1, 1]
    grid = grid.reshape(n * n_planes, 1, m, 2).to(plane_features.dtype)
    out = F.grid_sample(plane_features.reshape(n * n_planes, c, h, w), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)  # (N*3, C, 1, M)
    return out.permute(0, 3, 2, 1).reshape(n, n_planes, m, c)


class OSGDecoder(nn.Module):
    """Mean of the three plane features -> FC -> softplus -> FC: raw sigma + 32 colours (§3.9)."""

    eg3d_class_name = "training.triplane.OSGDecoder"

    def __init__(self, n_features: int, hidden_dim: int = 64, output_dim: int = 32, lr_multiplier: float = 1.0):
        super().__init__()
        from nerfsculpt.generator.layers import FullyConnectedLayer

        self.hidden_dim = hidden_dim
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, hidden_dim, lr_multiplier=lr_multiplier),
            nn.Softplus(),
            FullyConnectedLayer(hidden_dim, 1 + output_dim, lr_multiplier=lr_multiplier),
        )

    @property
    def output_layer(self) -> nn.Module:
        """The last FC layer (``net.2``): its row 0 (weight and bias) produces sigma, the other rows the colours."""
        return self.net[2]

    def decode_raw(self, features: Tensor) -> Tensor:  # [P, C] plane-mean features -> [P, 1 + output_dim]
        """The MLP's output before any activation: channel 0 is the raw sigma, the rest are colour logits."""
        return self.net(features)

    def decode_sigma(self, features: Tensor) -> Tensor:  # [P, C] plane-mean features -> [P]
        """Raw sigma (channel 0, no softplus, no shift; docs/method/eg3d.md §3.9) of plane-mean features.

        ``decode_raw(features)[:, 0]``, the value ``forward`` returns as ``sigma``; skipping the colour head
        (sigmoid over 32 channels) saves a third of the decoder time on grids.
        """
        return self.net(features)[:, 0]

    def forward(self, sampled_features: Tensor, ray_directions: Tensor | None = None) -> dict[str, Tensor]:
        x = sampled_features.mean(1)  # (N, M, C): average over the 3 planes
        n, m, c = x.shape
        x = self.decode_raw(x.reshape(n * m, c)).reshape(n, m, -1)  # (N, M, 1 + output_dim)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001  # MipNeRF-style widened sigmoid
        sigma = x[..., 0:1]  # raw density: the ray marcher applies softplus(sigma - 1)
        return {"rgb": rgb, "sigma": sigma}


class RaySampler(nn.Module):
    """Per-pixel rays of an OpenCV pinhole camera with normalised intrinsics (docs/method/eg3d.md §3.10)."""

    eg3d_class_name = "training.volumetric_rendering.ray_sampler.RaySampler"

    def forward(
        self,
        cam2world: Tensor,  # [N, 4, 4]
        intrinsics: Tensor,  # [N, 3, 3] normalised by image size
        resolution: int,
    ) -> tuple[Tensor, Tensor]:  # origins [N, R*R, 3], unit directions [N, R*R, 3]
        n, m = cam2world.shape[0], resolution**2
        device = cam2world.device
        origin = cam2world[:, :3, 3]
        fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
        cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
        sk = intrinsics[:, 0, 1, None]
        idx = torch.arange(resolution, dtype=cam2world.dtype, device=device)
        rows, cols = torch.meshgrid(idx, idx, indexing="ij")  # ray k = row * R + col
        u = (cols * (1.0 / resolution) + (0.5 / resolution)).reshape(1, m)  # from columns
        v = (rows * (1.0 / resolution) + (0.5 / resolution)).reshape(1, m)  # from rows
        z = torch.ones((n, m), device=device, dtype=cam2world.dtype)
        x_lift = (u - cx + cy * sk / fy - sk * v / fy) / fx * z
        y_lift = (v - cy) / fy * z
        points = torch.stack((x_lift, y_lift, z, torch.ones_like(z)), dim=-1)  # (N, M, 4) camera space
        world = torch.bmm(cam2world, points.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]  # (N, M, 3)
        directions = F.normalize(world - origin[:, None, :], dim=2)
        origins = origin.unsqueeze(1).repeat(1, m, 1)
        return origins, directions


class MipRayMarcher2(nn.Module):
    """EG3D's ray marcher: midpoint quadrature with softplus(sigma - 1) densities (docs/method/eg3d.md §3.11.6)."""

    eg3d_class_name = "training.volumetric_rendering.ray_marcher.MipRayMarcher2"

    def forward(
        self,
        colors: Tensor,  # [N, M, S, C]
        densities: Tensor,  # [N, M, S, 1] raw sigma
        depths: Tensor,  # [N, M, S, 1] sorted along S
        rendering_options: dict[str, Any],
    ) -> tuple[Tensor, Tensor, Tensor]:  # rgb [N, M, C], depth [N, M, 1], weights [N, M, S-1, 1]
        deltas = depths[:, :, 1:] - depths[:, :, :-1]
        colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
        densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2  # averaged before activation
        depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
        if rendering_options["clamp_mode"] != "softplus":
            raise ValueError("MipRayMarcher2 supports only clamp_mode='softplus'")
        densities_mid = F.softplus(densities_mid - 1)
        alpha = 1 - torch.exp(-densities_mid * deltas)
        alpha_shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
        weights = alpha * torch.cumprod(alpha_shifted, -2)[:, :, :-1]
        composite_rgb = torch.sum(weights * colors_mid, -2)
        weight_total = weights.sum(2)
        composite_depth = torch.sum(weights * depths_mid, -2) / weight_total
        # Empty rays (0/0) go to +inf, then everything is clipped to the batch-global depth range.
        composite_depth = torch.nan_to_num(composite_depth, float("inf"))
        composite_depth = torch.clamp(composite_depth, torch.min(depths), torch.max(depths))
        if rendering_options.get("white_back", False):
            composite_rgb = composite_rgb + 1 - weight_total
        composite_rgb = composite_rgb * 2 - 1  # all channels to [-1, 1]
        return composite_rgb, composite_depth, weights


def sample_pdf(
    bins: Tensor,  # [R, B]
    weights: Tensor,  # [R, B-1]... EG3D passes one fewer than classic NeRF, see below
    n_samples: int,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
) -> Tensor:  # [R, n_samples]
    """Inverse-transform sampling of depths from piecewise-constant weights (docs/method/eg3d.md §3.11.4).

    EG3D calls this with 47 bin midpoints and 45 weights, so the cdf has 46 entries and only the
    first 46 midpoints can ever be reached. That off-by-one is part of the trained model's
    behaviour and is reproduced.
    """
    n_rays, n_weights = weights.shape
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)  # (R, n_weights + 1)
    if deterministic:
        u = torch.linspace(0, 1, n_samples, device=bins.device).expand(n_rays, n_samples)
    elif generator is not None:
        u = torch.rand(n_rays, n_samples, device=bins.device, generator=generator)
    else:
        u = torch.rand(n_rays, n_samples, device=bins.device)
    u = u.contiguous()
    inds = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp_min(inds - 1, 0)
    above = torch.clamp_max(inds, n_weights)
    inds_sampled = torch.stack([below, above], -1).view(n_rays, 2 * n_samples)
    cdf_g = torch.gather(cdf, 1, inds_sampled).view(n_rays, n_samples, 2)
    bins_g = torch.gather(bins, 1, inds_sampled).view(n_rays, n_samples, 2)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])


class ImportanceRenderer(nn.Module):
    """Coarse stratified pass, importance pass, merged ray marching (docs/method/eg3d.md §3.11)."""

    eg3d_class_name = "training.volumetric_rendering.renderer.ImportanceRenderer"

    def __init__(self):
        super().__init__()
        self.ray_marcher = MipRayMarcher2()
        self.plane_axes = PLANE_AXES.clone()  # plain attribute, not a buffer (as in EG3D)

    def run_model(
        self,
        planes: Tensor,  # [N, 3, C, H, W]
        decoder: nn.Module,
        sample_coordinates: Tensor,  # [N, M, 3]
        sample_directions: Tensor | None,  # [N, M, 3] (ignored by the decoder)
        options: dict[str, Any],
    ) -> dict[str, Tensor]:  # {'sigma': [N, M, 1] raw, 'rgb': [N, M, C]}
        features = sample_from_planes(planes, sample_coordinates, box_warp=options["box_warp"])
        out = decoder(features, sample_directions)
        if options.get("density_noise", 0) > 0:
            out["sigma"] = out["sigma"] + torch.randn_like(out["sigma"]) * options["density_noise"]
        return out

    def sample_stratified(
        self,
        ray_origins: Tensor,  # [N, M, 3]
        ray_start: float,
        ray_end: float,
        depth_resolution: int,
        disparity_space_sampling: bool = False,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:  # [N, M, S, 1]
        n, m, _ = ray_origins.shape
        device = ray_origins.device
        if disparity_space_sampling:
            t = torch.linspace(0, 1, depth_resolution, device=device)
            t = t.reshape(1, 1, depth_resolution, 1).repeat(n, m, 1, 1)  # (N, M, S, 1)
            t = t + self._jitter(t, deterministic, generator) * (1 / (depth_resolution - 1))
            return 1.0 / (1.0 / ray_start * (1.0 - t) + 1.0 / ray_end * t)
        depths = torch.linspace(ray_start, ray_end, depth_resolution, device=device)
        depths = depths.reshape(1, 1, depth_resolution, 1).repeat(n, m, 1, 1)
        delta = (ray_end - ray_start) / (depth_resolution - 1)
        return depths + self._jitter(depths, deterministic, generator) * delta

    @staticmethod
    def _jitter(like: Tensor, deterministic: bool, generator: torch.Generator | None) -> Tensor:
        if deterministic:
            return torch.full_like(like, 0.5)
        if generator is not None:
            return torch.rand(like.shape, device=like.device, dtype=like.dtype, generator=generator)
        return torch.rand_like(like)

    def sample_importance(
        self,
        z_vals: Tensor,  # [N, M, S, 1]
        weights: Tensor,  # [N, M, S-1, 1]
        n_importance: int,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:  # [N, M, n_importance, 1]
        with torch.no_grad():
            n, m, s, _ = z_vals.shape
            z_vals = z_vals.reshape(n * m, s)
            weights = weights.reshape(n * m, -1)
            weights = F.max_pool1d(weights.unsqueeze(1).float(), 2, 1, padding=1)  # (R, 1, S)
            weights = F.avg_pool1d(weights, 2, 1).squeeze(1)  # (R, S-1)
            weights = weights + 0.01
            z_mid = 0.5 * (z_vals[:, :-1] + z_vals[:, 1:])
            samples = sample_pdf(z_mid, weights[:, 1:-1], n_importance, deterministic, generator)
        return samples.detach().reshape(n, m, n_importance, 1)

    @staticmethod
    def unify_samples(depths1, colors1, densities1, depths2, colors2, densities2):
        all_depths = torch.cat([depths1, depths2], dim=-2)
        all_colors = torch.cat([colors1, colors2], dim=-2)
        all_densities = torch.cat([densities1, densities2], dim=-2)
        _, indices = torch.sort(all_depths, dim=-2)
        all_depths = torch.gather(all_depths, -2, indices)
        all_colors = torch.gather(all_colors, -2, indices.expand(-1, -1, -1, all_colors.shape[-1]))
        all_densities = torch.gather(all_densities, -2, indices.expand(-1, -1, -1, 1))
        return all_depths, all_colors, all_densities

    def forward(
        self,
        planes: Tensor,  # [N, 3, C, H, W]
        decoder: nn.Module,
        ray_origins: Tensor,  # [N, M, 3]
        ray_directions: Tensor,  # [N, M, 3]
        rendering_options: dict[str, Any],
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:  # rgb [N, M, C], depth [N, M, 1], opacity [N, M, 1]
        opts = rendering_options
        if opts["ray_start"] == "auto" or opts["ray_end"] == "auto":
            raise NotImplementedError("ray_start/ray_end 'auto' (ShapeNet configs) is not supported yet")
        depths_coarse = self.sample_stratified(
            ray_origins, opts["ray_start"], opts["ray_end"], opts["depth_resolution"],
            opts["disparity_space_sampling"], deterministic, generator,
        )
        n, m, s, _ = depths_coarse.shape
        coords = (ray_origins.unsqueeze(-2) + depths_coarse * ray_directions.unsqueeze(-2)).reshape(n, -1, 3)
        dirs = ray_directions.unsqueeze(-2).expand(-1, -1, s, -1).reshape(n, -1, 3)
        out = self.run_model(planes, decoder, coords, dirs, opts)
        colors_coarse = out["rgb"].reshape(n, m, s, -1)
        densities_coarse = out["sigma"].reshape(n, m, s, 1)

        n_importance = opts["depth_resolution_importance"]
        if n_importance <= 0:
            rgb, depth, weights = self.ray_marcher(colors_coarse, densities_coarse, depths_coarse, opts)
            return rgb, depth, weights.sum(2)
        _, _, weights = self.ray_marcher(colors_coarse, densities_coarse, depths_coarse, opts)
        depths_fine = self.sample_importance(depths_coarse, weights, n_importance, deterministic, generator)
        dirs = ray_directions.unsqueeze(-2).expand(-1, -1, n_importance, -1).reshape(n, -1, 3)
        coords = (ray_origins.unsqueeze(-2) + depths_fine * ray_directions.unsqueeze(-2)).reshape(n, -1, 3)
        out = self.run_model(planes, decoder, coords, dirs, opts)
        colors_fine = out["rgb"].reshape(n, m, n_importance, -1)
        densities_fine = out["sigma"].reshape(n, m, n_importance, 1)
        all_depths, all_colors, all_densities = self.unify_samples(
            depths_coarse, colors_coarse, densities_coarse, depths_fine, colors_fine, densities_fine
        )
        rgb, depth, weights = self.ray_marcher(all_colors, all_densities, all_depths, opts)
        return rgb, depth, weights.sum(2)
