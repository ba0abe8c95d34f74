"""Render an analytic density field exactly as EG3D renders its own tri-plane field.

``render_field`` runs the generator's own ray sampler, stratified + importance sampling and
MipRayMarcher2 (``nerfsculpt.generator.rendering``, docs/method/eg3d.md §3.10-3.11) on a Python callable instead
of the tri-plane decoder, so images of procedural heads and of a generator are directly comparable:

- the field returns **raw** sigma (the marcher applies ``softplus(sigma - 1)``, averaged before the
  activation, docs/method/eg3d.md §7.2) and colours in [0, 1]; the composite is rescaled to [-1, 1], so an
  empty ray is -1 (black: FFHQ's ``white_back`` is False);
- depth is EG3D's: the opacity-weighted mean distance along the unit ray, and empty rays get the
  largest sample depth of the whole batch (docs/method/eg3d.md §7.5) -- also across ray chunks;
- nothing outside the field is clipped: EG3D's planes are zero outside the box, an analytic field is
  whatever the callable says there.

Rays are marched in chunks (``ray_chunk`` rays over all images at a time), so memory is bounded by
the chunk, not the image size. With ``deterministic=True`` (default) samples sit at stratum centres
and evenly spaced importance quantiles and the result does not depend on the chunking; in EG3D's
stochastic mode the draws come from ``generator`` (or the global RNG) chunk by chunk.

Example::

    def sphere(points):                                   # [N, M, 3] -> [N, M], [N, M, 3]
        sigma = 200 * torch.tanh((0.3 - points.norm(dim=-1)) / 0.03)
        return sigma, torch.full_like(points, 0.5)

    out = render_field(sphere, canonical_camera(), resolution=64)
    out["image"].shape, out["depth"].shape, out["opacity"].shape   # [1,3,64,64], [1,1,64,64], [1,1,64,64]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from nerfsculpt.camera import split_label
from nerfsculpt.generator.config import FFHQ_RENDERING_KWARGS
from nerfsculpt.generator.rendering import ImportanceRenderer, MipRayMarcher2, RaySampler

Field = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``field(points [N, M, 3]) -> (raw sigma [N, M], colour [N, M, 3] in [0, 1])``; row n is image n."""

DEFAULT_RAY_CHUNK = 8192
"""Rays marched at once (over all images): 8192 x 96 samples = 786k field points per pass."""


class _RangeRecordingMarcher(MipRayMarcher2):
    """EG3D's marcher that also remembers the largest sample depth it has seen (for quirk 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_depth = -math.inf

    def forward(self, colors, densities, depths, rendering_options):
        self.max_depth = max(self.max_depth, float(depths.max()))
        return super().forward(colors, densities, depths, rendering_options)


class FieldRenderer(ImportanceRenderer):
    """EG3D's ImportanceRenderer whose model is an analytic ``field`` instead of planes + decoder.

    Only ``run_model`` differs; sampling, sorting and marching are the generator's own code.
    Call it like the generator's renderer with ``planes = decoder = None``.
    """

    def __init__(self, field: Field, generator: torch.Generator | None = None):
        super().__init__()
        self.field = field
        self.generator = generator  # for density_noise; the samplers get it from forward()
        self.ray_marcher = _RangeRecordingMarcher()

    def run_model(
        self,
        planes: None,
        decoder: None,
        sample_coordinates: Tensor,  # [N, M, 3]
        sample_directions: Tensor | None,  # [N, M, 3], unused (EG3D's decoder ignores them too)
        options: dict[str, Any],
    ) -> dict[str, Tensor]:  # {'sigma': [N, M, 1] raw, 'rgb': [N, M, 3]}
        n, m, _ = sample_coordinates.shape
        sigma, colour = self.field(sample_coordinates)
        if sigma.shape == (n, m, 1):
            sigma = sigma[..., 0]
        assert sigma.shape == (n, m), f"field sigma: expected [N, M] = [{n}, {m}], got {tuple(sigma.shape)}"
        assert colour.shape == (n, m, 3), f"field colour: expected [N, M, 3] = [{n}, {m}, 3], got {tuple(colour.shape)}"
        sigma = sigma.unsqueeze(-1)  # (N, M, 1)
        noise_std = options.get("density_noise", 0)
        if noise_std > 0:  # EG3D adds it to the raw density after the decoder; absent (0) for FFHQ
            noise = torch.randn(sigma.shape, generator=self.generator, device=sigma.device, dtype=sigma.dtype)
            sigma = sigma + noise * noise_std
        return {"sigma": sigma, "rgb": colour}


def resolve_rendering_kwargs(rendering_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """FFHQ's rendering options (docs/method/eg3d.md §1.3) updated with ``rendering_kwargs``, checked."""
    opts = {**FFHQ_RENDERING_KWARGS, **(rendering_kwargs or {})}
    if opts["ray_start"] == "auto" or opts["ray_end"] == "auto":
        raise ValueError("ray_start/ray_end 'auto' (ShapeNet configs) is not supported; give numbers")
    if not 0 < opts["ray_start"] < opts["ray_end"]:
        raise ValueError(f"need 0 < ray_start < ray_end, got {opts['ray_start']} and {opts['ray_end']}")
    if opts["depth_resolution"] < 2 or opts["depth_resolution_importance"] < 0:
        raise ValueError(f"need depth_resolution >= 2 and depth_resolution_importance >= 0, got "
                         f"{opts['depth_resolution']} and {opts['depth_resolution_importance']}")
    return opts


def render_field(
    field: Field,
    cameras: Tensor,  # [N, 25] labels
    resolution: int,
    rendering_kwargs: Mapping[str, Any] | None = None,
    deterministic: bool = True,
    generator: torch.Generator | None = None,
    ray_chunk: int = DEFAULT_RAY_CHUNK,
) -> dict[str, Tensor]:  # image [N, 3, R, R] in [-1, 1], depth [N, 1, R, R], opacity [N, 1, R, R]
    """Volume-render ``field`` from ``cameras`` at ``resolution``² with EG3D's renderer (module docstring).

    Args:
        field: ``points [N, M, 3] -> (raw sigma [N, M], colour [N, M, 3] in [0, 1])``; row n of the
            points belongs to camera n (a batch of different subjects is one field).
        cameras: [N, 25] labels (row-major cam2world, normalised intrinsics).
        resolution: side R of the rendered images (the generator's neural rendering resolution).
        rendering_kwargs: EG3D rendering options; missing keys default to FFHQ's (48 + 48 samples
            per ray over [2.25, 3.3]).
        deterministic: stratum centres and evenly spaced importance quantiles (default), or EG3D's
            random jitter and importance draws (from ``generator`` if given, else the global RNG).
        ray_chunk: rays marched at once over all N images; bounds memory.

    Returns ``{'image', 'depth', 'opacity'}`` laid out like ``G.synthesis``'s ``image_raw`` and
    ``image_depth``; the graph to the field's parameters is kept (wrap in ``torch.no_grad()`` if
    not needed).
    """
    assert cameras.ndim == 2 and cameras.shape[1] == 25, f"expected cameras [N, 25], got {tuple(cameras.shape)}"
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    if ray_chunk < 1:
        raise ValueError(f"ray_chunk must be >= 1, got {ray_chunk}")
    opts = resolve_rendering_kwargs(rendering_kwargs)
    cam2world, intrinsics = split_label(cameras)  # (N, 4, 4), (N, 3, 3)
    ray_origins, ray_directions = RaySampler()(cam2world, intrinsics, resolution)  # (N, R*R, 3) each
    n, m, _ = ray_origins.shape

    renderer = FieldRenderer(field, generator)
    per_image = max(1, ray_chunk // n)  # rays of each image per pass
    rgb, depth, opacity = [], [], []
    for start in range(0, m, per_image):
        chunk = slice(start, start + per_image)
        out = renderer(None, None, ray_origins[:, chunk], ray_directions[:, chunk], opts,
                       deterministic=deterministic, generator=generator)
        rgb.append(out[0])  # (N, m_chunk, 3)
        depth.append(out[1])  # (N, m_chunk, 1)
        opacity.append(out[2])  # (N, m_chunk, 1)
    rgb, depth, opacity = torch.cat(rgb, 1), torch.cat(depth, 1), torch.cat(opacity, 1)  # (N, M, *)
    # Quirk 5 over the whole batch: an empty ray (all weights 0, depth 0/0) is clamped to the largest
    # sample depth of the batch, not of its chunk. Non-empty depths are weighted means, already in range.
    depth = torch.where(opacity == 0, torch.full_like(depth, renderer.ray_marcher.max_depth), depth)

    r = resolution
    return {
        "image": rgb.permute(0, 2, 1).reshape(n, 3, r, r),  # (N, 3, R, R), ray k = row * R + col
        "depth": depth.permute(0, 2, 1).reshape(n, 1, r, r),
        "opacity": opacity.permute(0, 2, 1).reshape(n, 1, r, r),
    }
