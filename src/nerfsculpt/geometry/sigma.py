"""Raw sigma of a tri-plane generator on regular grids: the full cube and the reward slab.

"sigma" is the raw channel 0 of EG3D's OSG decoder, no softplus, no shift (docs/method/reference_method.md
§0.1). Grids follow ``geometry.grid``: the cube [-L/2, L/2]^3 with L = ``box_warp``, array order
[x, y, z]. Uses in the reference: the 256^3 reward slab (§1.2, :func:`reward_slab`), the 64^3
consistency cube of fine-tuning (§5.4, ``sigma_grid(G, ws, resolution=64, differentiable=True)``),
the 256^3 / 512^3 mesh cubes (§7.9).

How it differs from the reference, with identical values (up to float rounding):

- The backbone runs once per latent; the reference re-ran mapping + backbone for every chunk of
  1M points (§1.1, docs/method/eg3d.md §3.15).
- Tri-plane factorisation: on a grid, plane XY at voxel (i, j, k) depends on (i, j) only, plane XZ
  on (i, k), plane ZX on (k, i) (docs/method/eg3d.md §3.8). Each plane is therefore sampled on a 2-D grid once
  and the three tables are broadcast-summed per chunk: 3 R^2 bilinear lookups instead of 3 R^3.
  EG3D's ``create_samples`` grid (``eg3d_grid=True``) is not separable and is sampled point by point.
- Memory is bounded by ``chunk_points``: coordinates are never materialised for the whole grid,
  results go straight into a preallocated output. ``differentiable=True`` keeps gradients to the
  generator's parameters and to ws; with ``checkpoint=True`` each chunk's decoder activations are
  recomputed in the backward pass (the reference kept the whole graph, §5.3).
- Decoder density noise (``rendering_kwargs['density_noise']``, unset for FFHQ) is never added.

Example::

    ws = G.mapping(z, canonical_camera().expand(len(z), 25), truncation_psi=0.7)
    cube = sigma_grid(G, ws, resolution=256)          # [N, 256, 256, 256], x y z
    slab = reward_slab(G, ws, seeds=seeds)             # [N, 128, 141, 129], checked finite
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.generator.rendering import PLANE_COORDINATE_AXES, sample_from_planes
from nerfsculpt.geometry.grid import box_flat_indices, grid_coordinates_eg3d, index_to_world
from nerfsculpt.geometry.slab import REWARD_SLAB, SlabSpec

IndexRanges = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # half-open (lo, hi) along X, Y, Z


class NonFiniteSigmaError(NerfsculptError, ValueError):
    """Sigma contains NaN or Inf for at least one latent."""


def check_finite(
    sigma: Tensor,  # [N, ...] one field per latent
    seeds: Sequence[int] | None = None,  # [N] names of the latents; None names them by batch index
) -> None:
    """Raise :class:`NonFiniteSigmaError` naming every latent whose sigma has NaN or Inf, with counts."""
    if seeds is not None and len(seeds) != len(sigma):
        raise ValueError(f"got {len(seeds)} seeds for {len(sigma)} sigma fields; pass one seed per field")
    values = sigma.detach().reshape(len(sigma), -1)  # (N, P)
    n_nan = torch.isnan(values).sum(1).tolist()
    n_inf = torch.isinf(values).sum(1).tolist()
    bad = [
        f"{'seed ' + str(seeds[i]) if seeds is not None else 'latent ' + str(i)} ({n_nan[i]} NaN, {n_inf[i]} Inf)"
        for i in range(len(sigma))
        if n_nan[i] or n_inf[i]
    ]
    if bad:
        raise NonFiniteSigmaError(
            f"non-finite sigma for {', '.join(bad)} out of {values.shape[1]:,} values each; the generator "
            "is broken for these latents (diverged weights?) or the decoder overflowed (retry without "
            "autocast_dtype)"
        )


def _check_ws(G: nn.Module, ws: Tensor) -> None:
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise ValueError(
            f"expected ws [N, {G.num_ws}, {G.w_dim}] (from G.mapping), got {tuple(ws.shape)}; "
            "map z to ws first: ws = G.mapping(z, c)"
        )


def _axis_coordinates(ranges: IndexRanges, resolution: int, cube_length: float, device: torch.device) -> list[Tensor]:
    """Exact world coordinates along each axis, the values ``grid_coordinates`` gives per index."""
    return [
        index_to_world(torch.arange(lo, hi, dtype=torch.float64, device=device), resolution, cube_length).float()
        for lo, hi in ranges
    ]  # 3 x (n_axis,)


def _plane_tables(planes: Tensor, axes: list[Tensor], box_warp: float) -> list[Tensor]:
    """Features of each plane on its 2-D sub-grid, shaped to broadcast over [X, Y, Z, C].

    planes: [1, 3, C, H, W]; axes: the X, Y, Z coordinates. Returns [X, Y, 1, C], [X, 1, Z, C]
    and [X, 1, Z, C] for EG3D's planes (x, y), (x, z), (z, x). Lookups go through
    ``sample_from_planes`` so they are exactly those of ``G.sample_planes``.
    """
    tables = []
    for k, (a, b) in enumerate(PLANE_COORDINATE_AXES):
        u, v = torch.meshgrid(axes[a], axes[b], indexing="ij")  # (n_a, n_b)
        points = torch.zeros(*u.shape, 3, device=u.device)  # (n_a, n_b, 3); the third axis is unused
        points[..., a], points[..., b] = u, v
        feats = sample_from_planes(planes, points.reshape(1, -1, 3), box_warp=box_warp)[0, k]  # (n_a*n_b, C)
        feats = feats.reshape(u.shape[0], u.shape[1], -1)  # (n_a, n_b, C)
        if a > b:
            feats = feats.transpose(0, 1)  # (n_b, n_a, C): axes in x, y, z order
        missing = 3 - a - b  # the axis this plane does not see
        tables.append(feats.unsqueeze(missing))  # broadcastable to (X, Y, Z, C)
    return tables


def _chunks(shape: tuple[int, int, int], chunk_points: int) -> Iterator[tuple[slice, slice]]:
    """(x-slices, y-rows) blocks of at most ``chunk_points`` points (at least one z-row each)."""
    nx, ny, nz = shape
    if chunk_points >= ny * nz:
        step = chunk_points // (ny * nz)
        for i in range(0, nx, step):
            yield slice(i, min(i + step, nx)), slice(0, ny)
    else:
        step = max(chunk_points // nz, 1)
        for i in range(nx):
            for j in range(0, ny, step):
                yield slice(i, i + 1), slice(j, min(j + step, ny))


@dataclass(frozen=True)
class SigmaBoxRequest:
    """Where raw sigma is decoded (a sub-box of the R^3 grid) and how (chunks, gradients, precision).

    The settings :func:`sigma_grid` and :func:`reward_slab` pass on; their docstrings explain each one.
    """

    ranges: IndexRanges
    """Half-open (lo, hi) voxel index ranges of the sub-box along X, Y, Z."""
    resolution: int
    """Samples per axis R of the full grid over [-box_warp/2, box_warp/2]^3."""
    eg3d_grid: bool
    """Sample EG3D's ``create_samples`` points instead of the exact grid."""
    chunk_points: int
    """Points per decoder call (rounded to whole z-rows)."""
    noise_mode: str
    """Backbone noise when the tri-planes are computed here from ws."""
    differentiable: bool
    """Keep the graph to G's parameters and ws (or planes); otherwise run under ``torch.inference_mode()``."""
    checkpoint: bool
    """With ``differentiable``, recompute each chunk's decoder activations in the backward pass."""
    autocast_dtype: torch.dtype | None
    """Run the decoder MLP under ``torch.autocast`` with this dtype; None keeps float32."""
    progress: bool
    """Show a progress bar over the chunks."""


def _sigma_box(
    G: nn.Module,
    ws: Tensor | None,  # [N, num_ws, w_dim]; or None with `planes`
    planes: Tensor | None,  # [N, 3, C, H, W] tri-planes of G.planes(ws), instead of ws
    request: SigmaBoxRequest,
    seeds: Sequence[int] | None,  # [N] if given, check_finite names the latents with these
) -> Tensor:  # [N, X, Y, Z]
    """Raw sigma on the sub-box ``request.ranges`` of the R^3 grid over [-box_warp/2, box_warp/2]^3."""
    from tqdm import tqdm

    if (ws is None) == (planes is None):
        raise ValueError("pass exactly one of ws (the backbone runs here) and planes (from G.planes(ws))")
    if ws is not None:
        _check_ws(G, ws)
    else:
        expected = (3, G.plane_features)
        if planes.ndim != 5 or tuple(planes.shape[1:3]) != expected:
            raise ValueError(f"expected planes [N, 3, {G.plane_features}, H, W] (from G.planes), got "
                             f"{tuple(planes.shape)}")
    source = ws if ws is not None else planes
    if request.chunk_points < 1:
        raise ValueError(f"chunk_points must be >= 1, got {request.chunk_points}")
    ranges, resolution = request.ranges, request.resolution
    box_warp = float(G.rendering_kwargs["box_warp"])
    shape = tuple(hi - lo for lo, hi in ranges)
    blocks = list(_chunks(shape, request.chunk_points))
    device = source.device
    out = torch.empty(len(source), *shape, device=device)  # (N, X, Y, Z); a normal tensor, even below
    grad_mode = nullcontext() if request.differentiable else torch.inference_mode()
    autocast = (
        torch.autocast(device_type=device.type, dtype=request.autocast_dtype) if request.autocast_dtype
        else nullcontext()
    )
    use_checkpoint = request.differentiable and request.checkpoint
    with grad_mode, tqdm(total=len(source) * len(blocks), desc="sigma", unit="chunk",
                         disable=not request.progress) as bar:
        for n in range(len(source)):
            if ws is not None:
                latent_planes = G.planes(ws[n : n + 1], noise_mode=request.noise_mode)  # (1, 3, C, H, W): backbone once
            else:
                latent_planes = planes[n : n + 1]  # (1, 3, C, H, W)
            if request.eg3d_grid:
                block_sigma = _pointwise_block(G, ranges, resolution, box_warp)
                inputs = (latent_planes,)
            else:
                inputs = tuple(_plane_tables(latent_planes, _axis_coordinates(ranges, resolution, box_warp, device),
                                             box_warp))
                block_sigma = _factorised_block(G)
            for sx, sy in blocks:
                with autocast:
                    if use_checkpoint:
                        sigma = torch.utils.checkpoint.checkpoint(block_sigma, *inputs, sx, sy, use_reentrant=False)
                    else:
                        sigma = block_sigma(*inputs, sx, sy)  # (nx, ny, Z)
                out[n, sx, sy] = sigma
                bar.update()
    if seeds is not None:
        check_finite(out, seeds)
    return out


def _factorised_block(G: nn.Module) -> Callable[..., Tensor]:
    def block_sigma(t_xy: Tensor, t_xz: Tensor, t_zx: Tensor, sx: slice, sy: slice) -> Tensor:  # [nx, ny, Z]
        # Same sum order and division as the decoder's mean over planes, so the features are bitwise
        # those of G.sample_planes.
        features = (t_xy[sx, sy] + t_xz[sx]) + t_zx[sx]  # (nx, ny, Z, C)
        features = features / 3
        nx, ny, nz, c = features.shape
        return G.decoder.decode_sigma(features.reshape(-1, c)).reshape(nx, ny, nz)

    return block_sigma


def _pointwise_block(G: nn.Module, ranges: IndexRanges, resolution: int, box_warp: float) -> Callable[..., Tensor]:
    (x0, _), (y0, _), (z0, z1) = ranges

    def block_sigma(planes: Tensor, sx: slice, sy: slice) -> Tensor:  # [nx, ny, Z]
        block = ((x0 + sx.start, x0 + sx.stop), (y0 + sy.start, y0 + sy.stop), (z0, z1))
        indices = box_flat_indices(block, resolution, device=planes.device)  # (nx*ny*Z,)
        xyz = grid_coordinates_eg3d(resolution, box_warp, indices=indices, device=planes.device)  # (nx*ny*Z, 3)
        features = sample_from_planes(planes, xyz[None], box_warp=box_warp).mean(1)[0]  # (nx*ny*Z, C)
        return G.decoder.decode_sigma(features).reshape(sx.stop - sx.start, sy.stop - sy.start, z1 - z0)

    return block_sigma


def sigma_grid(
    G: nn.Module,
    ws: Tensor | None,  # [N, num_ws, w_dim]; None when `planes` are given
    resolution: int = 256,
    chunk_points: int = 1 << 20,
    noise_mode: str = "const",
    differentiable: bool = False,
    checkpoint: bool = True,
    progress: bool = False,
    eg3d_grid: bool = False,
    autocast_dtype: torch.dtype | None = None,
    seeds: Sequence[int] | None = None,
    planes: Tensor | None = None,
) -> Tensor:  # [N, R, R, R] raw sigma, [x, y, z] order, float32
    """Raw sigma on the R^3 grid over the tri-plane box [-box_warp/2, box_warp/2]^3.

    - ``noise_mode``: backbone noise; ``'const'`` in every reference extraction (§0.2).
    - ``differentiable``: keep the graph to G's parameters and ``ws`` (fine-tuning, §5.3-5.4);
      otherwise runs under ``torch.inference_mode()`` and returns a plain tensor.
    - ``checkpoint``: with ``differentiable``, recompute each chunk's decoder in the backward
      pass, so activation memory is one chunk's, not the whole grid's.
    - ``chunk_points``: points per decoder call (rounded to whole z-rows); peak memory is about
      ``chunk_points * 1 kB`` for the 32-feature FFHQ decoder.
    - ``eg3d_grid``: sample EG3D's ``create_samples`` points (gen_samples.py and the reference's
      data, float32 artefacts included; ``grid.grid_coordinates_eg3d``) instead of the exact grid.
    - ``autocast_dtype``: run the decoder MLP under ``torch.autocast`` with this dtype, e.g.
      ``torch.float16`` on CUDA, where half-precision matmuls are faster (not benchmarked here;
      float16 resolves sigma ~250 to ~0.2). Leave ``None`` on CPU, where float32 is fastest. The
      plane lookups and the output stay float32.
    - ``seeds``: if given (one per latent), :func:`check_finite` is run on the result.
    - ``planes``: tri-planes [N, 3, C, H, W] from ``G.planes(ws)`` instead of ``ws`` (pass ``ws=None``),
      so that one backbone pass serves several grids (fine-tuning, ``finetune.objective.GeometryTerms``).
    """
    if not (isinstance(resolution, int) and resolution >= 2):
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    request = SigmaBoxRequest(ranges=((0, resolution),) * 3, resolution=resolution, eg3d_grid=eg3d_grid,
                              chunk_points=chunk_points, noise_mode=noise_mode, differentiable=differentiable,
                              checkpoint=checkpoint, autocast_dtype=autocast_dtype, progress=progress)
    return _sigma_box(G, ws, planes, request, seeds)


def reward_slab(
    G: nn.Module,
    ws: Tensor | None,  # [N, num_ws, w_dim]; None when `planes` are given
    spec: SlabSpec = REWARD_SLAB,
    chunk_points: int = 1 << 20,
    noise_mode: str = "const",
    differentiable: bool = False,
    checkpoint: bool = True,
    progress: bool = False,
    eg3d_grid: bool = True,
    autocast_dtype: torch.dtype | None = None,
    seeds: Sequence[int] | None = None,
    planes: Tensor | None = None,
) -> Tensor:  # [N, *spec.shape] = [N, 128, 141, 129] raw sigma, [x, y, z] order
    """Raw sigma on the reward slab's points only (2.3M of the 16.7M at 256, docs/method/reference_method.md §1.2).

    Equals ``crop_reward_slab(sigma_grid(G, ws, spec.resolution, eg3d_grid=eg3d_grid, ...), spec)``
    exactly; arguments as in :func:`sigma_grid`. Normalisation and model order are
    ``slab.normalise_slab_0_100`` and ``slab.slab_to_model_order``.

    The default ``eg3d_grid=True`` samples the points the reference sampled (EG3D's
    ``create_samples`` grid, up to ~0.9 voxel off the exact grid in x and y): the released reward
    model was trained on sigma at those points. ``eg3d_grid=False`` uses the exact grid. ``planes``
    replaces ``ws`` as in :func:`sigma_grid`.
    """
    box_warp = float(G.rendering_kwargs["box_warp"])
    if spec.cube_length != box_warp:
        raise ValueError(
            f"slab cube_length {spec.cube_length} differs from the generator's box_warp {box_warp}; "
            f"use SlabSpec(cube_length={box_warp}, ...) so the slab is a crop of the tri-plane box"
        )
    request = SigmaBoxRequest(ranges=spec.index_ranges, resolution=spec.resolution, eg3d_grid=eg3d_grid,
                              chunk_points=chunk_points, noise_mode=noise_mode, differentiable=differentiable,
                              checkpoint=checkpoint, autocast_dtype=autocast_dtype, progress=progress)
    return _sigma_box(G, ws, planes, request, seeds)
