"""The geometry oracle: a held-out judge of face geometry that reads only a sigma grid.

It scores the five defect kinds of ``synthetic.heads.DEFECTS`` from the raw sigma cube of any
generator (procedural heads, EG3D, a fine-tuned EG3D), never from procedural parameters. The
reward model never sees it: it is the ground truth that fine-tuning is evaluated against.

Every score is a physical quantity measured on the level set ``sigma = level`` (10, as the
meshes) in world units, divided by a fixed ``scale`` so that a procedural head with one defect of
severity 1 scores about 1 (``OracleConfig.scales``); higher = worse, 0 = clean:

1. Sigma within ``border`` of the cube's faces is set to empty (tri-plane edge artefacts); the
   cube is thresholded at ``level`` and labelled into 6-connected components; the largest is the
   head (``main``), every other component is a floater.
2. ``depth[x, y]``: z of the first crossing of ``level`` along each -z column of ``main``, seen
   from the front (+z), linearly interpolated between samples.
3. Scores:

   - ``bumps``: RMS residual of ``depth`` after a local quadratic fit along each vertical profile
     (a Savitzky-Golay filter over ``roughness_window`` in y) over the two cheek boxes (``cheek_x``
     mirrored, ``cheek_y``) where the fitted surface faces the camera (slope ``|grad depth| <=
     max_slope``). A smooth cheek leaves almost nothing; creases across the cheek of wavelength up to
     about the window are measured (a fraction of them at wavelengths near the window, see the docs);
     creases running vertically are not.
   - ``nose``: the midline profile ``depth[x = 0, y]`` from the nose tip (its maximum in
     ``nose_tip_y``) up to ``nose_span`` above it should be concave, a cap (rounded tip, straight
     ridge); the score is the largest depth of the profile below its upper concave hull, i.e. below
     any of its chords (a sagging or dented ridge).
   - ``holes``: volume missing from the face surface in ``hole_x`` x ``hole_y``: sum over pixels of
     ``relu(median depth around the pixel - depth - hole_depth)`` times the pixel area, the
     median over the columns that hit on a ring of radius 0.7-1 x ``hole_ring`` around the pixel
     (pixels whose ring is less than ``hole_ring_coverage`` on the head are near the silhouette and
     skipped). A column that misses the head but has surface on all four sides within the ring
     sees through a hole to the back of the cube; one that does not is beyond the silhouette and
     ignored. Pits shallower than
     ``hole_depth`` (eye sockets) and surface seen at grazing angles (``hole_max_slope``:
     silhouettes, pit walls) are ignored.
   - ``floaters``: total volume of the occupied voxels outside ``main``.
   - ``asymmetry``: ``sum |s(x, y, z) - s(-x, y, z)| / (2 c) * voxel volume`` with
     ``s = clamp(sigma, -c, c)``, ``c = asymmetry_clip``, over ``main`` dilated by
     ``asymmetry_margin``: the volume between the surface and its mirror image (a side inflated by
     ``d`` over an area ``A`` gives ``2 A d``), insensitive to sigma's scale beyond ``c``. The
     mirror plane is x = 0, the symmetry plane of EG3D's canonical frame.

``quality = -sum_k weights[k] * scores[k]`` (higher = better).

Example::

    oracle = GeometryOracle()
    cube = sigma_grid(G, ws, resolution=oracle.config.resolution)     # [N, R, R, R], x y z
    result = oracle(cube)                                              # result.scores [N, 5]
    result = score_heads(params, oracle)                               # procedural heads
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.geometry.grid import grid_coordinates, index_to_world
from nerfsculpt.synthetic.heads import DEFECTS, HeadParams, head_sigma

Range = tuple[float, float]


@dataclass(frozen=True)
class OracleConfig:
    """What the oracle measures where; regions are world coordinates in EG3D's frame."""

    resolution: int = 128
    """Grid resolution used by the sampling helpers (``score_field``, ``score_heads``, ``score_generator``)."""
    level: float = 10.0
    """Iso-level of the surface (that of the meshes)."""
    cube_length: float = 1.0
    """Edge of the cube the sigma grid spans, [-L/2, L/2]^3 (EG3D's box_warp)."""
    border: float = 0.04
    """Sigma within this distance of the cube's faces counts as empty space: tri-plane features fade at the
    box faces and leave sheets of density there (EG3D clears a border before marching cubes for the same
    reason). The procedural heads stay 0.055 clear of the faces."""
    cheek_x: Range = (0.06, 0.11)
    """|x| range of the two cheek boxes (bumps)."""
    cheek_y: Range = (-0.11, -0.05)
    """y range of the cheek boxes (bumps)."""
    roughness_window: float = 0.12
    """Length (world y) of the local quadratic fit along vertical profiles (bumps); creases across the
    cheek with a wavelength shorter than about this count as roughness."""
    max_slope: float = 1.0
    """Bumps are measured where the fitted surface faces the camera: its slope |grad depth| <= this
    (normals within 45 degrees of +z)."""
    nose_tip_y: Range = (-0.12, 0.04)
    """y range searched for the nose tip, the most forward point of the midline profile."""
    nose_span: float = 0.08
    """Length (world y) of the ridge above the tip whose profile must be concave (a cap)."""
    hole_x: Range = (-0.1, 0.1)
    """x range of the box searched for holes."""
    hole_y: Range = (0.0, 0.2)
    """y range of the box searched for holes."""
    hole_ring: float = 0.1
    """Radius of the ring (0.7-1 times it) around each pixel whose median depth is the surrounding surface
    (holes); larger than any crater, so the ring lies on the intact surface around it."""
    hole_ring_coverage: float = 0.9
    """Pixels whose ring hits the head on less than this fraction are near the silhouette and not measured."""
    hole_depth: float = 0.025
    """Depressions shallower than this are not holes."""
    hole_max_slope: float = 2.0
    """Surface seen at a slope |grad depth| above this (63 degrees from facing the camera: silhouettes,
    pit walls) is left out of the holes measure."""
    asymmetry_clip: float = 100.0
    """Sigma is clamped to [-c, c] before mirroring (asymmetry)."""
    asymmetry_margin: float = 0.02
    """The head component is dilated by this distance before comparing with its mirror."""
    scales: tuple[float, ...] = (2.35e-2, 4.6e-2, 9.1e-5, 7.4e-4, 9.4e-3)
    """Divisors of the raw measures (world units, in DEFECTS order): a procedural defect of severity 1
    scores about 1."""
    weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    """Weights of the scaled scores in ``quality``, in DEFECTS order."""

    def __post_init__(self) -> None:
        if len(self.scales) != len(DEFECTS) or len(self.weights) != len(DEFECTS):
            raise ValueError(f"scales and weights need one value per defect {DEFECTS}")
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")


@dataclass
class OracleScores:
    """Result of :class:`GeometryOracle` for N sigma cubes."""

    scores: Tensor  # [N, 5] float64
    """Scaled defect scores in ``DEFECTS`` order; higher = worse, 0 = clean."""
    quality: Tensor  # [N] float64
    """``-sum_k weights[k] * scores[:, k]``; higher = better."""
    raw: Tensor  # [N, 5] float64
    """The unscaled measures in world units: length, length, volume, volume, volume."""

    def as_dict(self) -> dict[str, Tensor]:
        """``{defect name: [N] scores, 'quality': [N]}``."""
        return {**{name: self.scores[:, k] for k, name in enumerate(DEFECTS)}, "quality": self.quality}


class GeometryOracle:
    """Scores sigma cubes [N, R, R, R] or [R, R, R] ([x, y, z] order) for the defects of ``DEFECTS``."""

    def __init__(self, config: OracleConfig | None = None) -> None:
        self.config = config or OracleConfig()

    def __call__(self, sigma_xyz: Tensor) -> OracleScores:
        if not isinstance(sigma_xyz, Tensor):
            raise TypeError(f"expected a torch.Tensor sigma cube, got {type(sigma_xyz).__name__}")
        cube = sigma_xyz[None] if sigma_xyz.ndim == 3 else sigma_xyz
        if cube.ndim != 4 or len(set(cube.shape[1:])) != 1 or cube.shape[1] < 16:
            raise ValueError(f"expected a sigma cube [N, R, R, R] or [R, R, R] with R >= 16, "
                             f"got {tuple(sigma_xyz.shape)}")
        if not torch.isfinite(cube).all():
            raise ValueError("sigma contains NaN or Inf; check it with geometry.sigma.check_finite first")
        raw = torch.stack([self._raw_scores(c) for c in cube.detach().double().cpu()])  # (N, 5)
        scores = raw / torch.tensor(self.config.scales, dtype=torch.float64)
        quality = -(scores * torch.tensor(self.config.weights, dtype=torch.float64)).sum(1)
        return OracleScores(scores, quality, raw)

    # --------------------------------------------------------------------------------------------

    def _raw_scores(self, sigma: Tensor) -> Tensor:  # [R, R, R] float64 -> [5]
        from scipy import ndimage

        cfg = self.config
        n = sigma.shape[0]
        voxel = cfg.cube_length / (n - 1)
        margin = math.ceil(cfg.border / voxel - 1e-9)
        if margin > 0:
            inside = torch.zeros_like(sigma, dtype=torch.bool)
            inside[margin:-margin, margin:-margin, margin:-margin] = True
            sigma = torch.where(inside, sigma, torch.full_like(sigma, -cfg.asymmetry_clip))
        occupied = (sigma >= cfg.level).numpy()
        labels, count = ndimage.label(occupied)  # 6-connectivity
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        main = labels == (1 + int(np.argmax(sizes))) if count else np.zeros_like(occupied)
        floater_volume = float(occupied.sum() - main.sum()) * voxel**3

        depth = self._front_depth(sigma, torch.from_numpy(main))  # (X, Y), NaN where no hit
        axis = index_to_world(torch.arange(n, dtype=torch.float64), n, cfg.cube_length)  # (R,)
        return torch.tensor([
            self._roughness(depth, axis, voxel),
            self._nose_concavity(depth, axis, voxel),
            self._hole_volume(depth, axis, voxel),
            floater_volume,
            self._asymmetry(sigma, main, voxel),
        ], dtype=torch.float64)

    def _front_depth(self, sigma: Tensor, main: Tensor) -> Tensor:  # [R, R, R], [R, R, R] bool -> [R, R]
        """z of the first ``level`` crossing of ``main`` along each column from +z; NaN if none."""
        cfg = self.config
        n = sigma.shape[0]
        voxel = cfg.cube_length / (n - 1)
        hit = main.any(dim=2)  # (X, Y)
        k = n - 1 - main.flip(2).to(torch.uint8).argmax(dim=2)  # (X, Y) topmost main voxel
        above = (k + 1).clamp_max(n - 1)
        s_in = sigma.gather(2, k[..., None])[..., 0]  # (X, Y) >= level
        s_out = sigma.gather(2, above[..., None])[..., 0]  # (X, Y) < level unless k is the last sample
        frac = ((s_in - cfg.level) / (s_in - s_out).clamp_min(1e-12)).clamp(0, 1)
        frac = torch.where(above > k, frac, torch.zeros_like(frac))
        z = index_to_world(k.double(), n, cfg.cube_length) + frac * voxel
        return torch.where(hit, z, torch.full_like(z, math.nan))

    def _roughness(self, depth: Tensor, axis: Tensor, voxel: float) -> float:
        cfg = self.config
        half = max(1, round(cfg.roughness_window / (2 * voxel)))
        weights = _quadratic_fit_weights(half)  # (2h+1,) value at the centre of a 1-D quadratic fit
        valid = torch.isfinite(depth)
        filled = torch.where(valid, depth, torch.zeros_like(depth))
        smooth = F.conv1d(filled[:, None], weights[None, None], padding=half)[:, 0]  # (X, Y): fit along y
        complete = F.conv1d(valid.double()[:, None], torch.ones(1, 1, 2 * half + 1, dtype=torch.float64),
                            padding=half)[:, 0] > 2 * half + 0.5
        gx, gy = torch.gradient(smooth, spacing=voxel)  # (X, Y) each
        in_box = _box(axis.abs(), cfg.cheek_x)[:, None] & _box(axis, cfg.cheek_y)[None, :]  # (X, Y)
        use = in_box & complete & ((gx * gx + gy * gy).sqrt() <= cfg.max_slope)
        if not bool(use.any()):
            return 0.0
        return float(((depth - smooth)[use] ** 2).mean().sqrt())

    def _nose_concavity(self, depth: Tensor, axis: Tensor, voxel: float) -> float:
        cfg = self.config
        n = len(axis)
        profile = depth[(n - 1) // 2 : n // 2 + 1].mean(0)  # (Y,) midline: x = 0
        search = _box(axis, cfg.nose_tip_y) & torch.isfinite(profile)
        if not bool(search.any()):
            return 0.0
        tip = int(torch.where(search, profile, torch.full_like(profile, -math.inf)).argmax())
        end = min(tip + max(2, round(cfg.nose_span / voxel)), n - 1)
        ridge = profile[tip : end + 1]  # (m,)
        if not bool(torch.isfinite(ridge).all()):
            return 0.0
        return _hull_deficit(ridge)

    def _hole_volume(self, depth: Tensor, axis: Tensor, voxel: float) -> float:
        cfg = self.config
        half = max(1, round(cfg.hole_ring / voxel))
        in_x, in_y = _box(axis, cfg.hole_x), _box(axis, cfg.hole_y)
        if not (bool(in_x.any()) and bool(in_y.any())):
            return 0.0
        xs, ys = torch.nonzero(in_x)[:, 0], torch.nonzero(in_y)[:, 0]
        x0, x1, y0, y1 = int(xs[0]), int(xs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1
        padded = F.pad(depth[None, None], (half, half, half, half), value=math.nan)[0, 0]  # (X+2h, Y+2h)
        windows = padded[x0 : x1 + 2 * half, y0 : y1 + 2 * half].unfold(0, 2 * half + 1, 1).unfold(1, 2 * half + 1, 1)
        offsets = torch.arange(-half, half + 1, dtype=torch.float64)
        radius = (offsets[:, None] ** 2 + offsets[None, :] ** 2).sqrt().reshape(-1)  # ((2h+1)^2,)
        on_ring = (radius <= half + 0.5) & (radius >= 0.7 * half)
        ring = windows.reshape(x1 - x0, y1 - y0, -1)[..., on_ring]  # (bx, by, m) depths on the ring
        surround = ring.nanmedian(dim=-1).values  # (bx, by)
        # near the silhouette part of the ring misses the head and its median is biased: not measured
        complete = torch.isfinite(ring).double().mean(dim=-1) >= cfg.hole_ring_coverage
        surround = torch.where(complete, surround, torch.full_like(surround, math.nan))
        seen = depth[x0:x1, y0:y1]
        # a column that misses the head is a hole only if the surface surrounds it on all four sides
        # (within the window); otherwise it is beyond the silhouette
        hit = F.pad(torch.isfinite(depth), (half, half, half, half))  # (X+2h, Y+2h) bool
        enclosed = torch.ones_like(seen, dtype=torch.bool)
        for dim in (0, 1):
            for sign in (-1, 1):
                side = torch.zeros_like(enclosed)
                for step in range(1, half + 1):
                    dx, dy = (sign * step, 0) if dim == 0 else (0, sign * step)
                    side |= hit[x0 + half + dx : x1 + half + dx, y0 + half + dy : y1 + half + dy]
                enclosed &= side
        through = torch.full_like(seen, -cfg.cube_length / 2)  # seeing through to the back of the cube
        seen = torch.where(torch.isfinite(seen), seen, torch.where(enclosed, through, torch.full_like(seen, math.nan)))
        gx, gy = torch.gradient(depth, spacing=voxel)  # (X, Y) each; NaN next to misses
        grazing = ~((gx * gx + gy * gy).sqrt() <= cfg.hole_max_slope)[x0:x1, y0:y1]  # silhouettes, walls
        missing = (surround - seen - cfg.hole_depth).clamp_min(0)
        missing = torch.where(torch.isfinite(missing) & ~(grazing & torch.isfinite(depth[x0:x1, y0:y1])),
                              missing, torch.zeros_like(missing))
        return float(missing.sum()) * voxel**2

    def _asymmetry(self, sigma: Tensor, main: np.ndarray, voxel: float) -> float:
        from scipy import ndimage

        cfg = self.config
        steps = max(1, math.ceil(cfg.asymmetry_margin / voxel))
        near = ndimage.binary_dilation(main, iterations=steps) if main.any() else main
        c = cfg.asymmetry_clip
        clipped = torch.where(torch.from_numpy(near), sigma.clamp(-c, c), torch.full_like(sigma, -c))
        return float((clipped - clipped.flip(0)).abs().sum()) / (2 * c) * voxel**3


def _box(values: Tensor, bounds: Range) -> Tensor:
    return (values >= bounds[0]) & (values <= bounds[1])


def _hull_deficit(profile: Tensor) -> float:  # [m] -> depth below the profile's upper concave hull
    """Largest ``chord(i, j)[k] - profile[k]`` over samples i < k < j: 0 iff the profile is concave."""
    m = len(profile)
    if m < 3:
        return 0.0
    i, k, j = torch.meshgrid(*(torch.arange(m),) * 3, indexing="ij")  # (m, m, m) each
    ordered = (i < k) & (k < j)
    t = (k - i) / (j - i).clamp_min(1)
    chord = profile[i] + t * (profile[j] - profile[i])  # (m, m, m)
    return float(torch.where(ordered, chord - profile[k], torch.zeros_like(chord)).max().clamp_min(0))


def _quadratic_fit_weights(half: int) -> Tensor:  # [2h+1] float64
    """Weights giving the value at the centre of the least-squares quadratic fit over 2h+1 samples
    (the Savitzky-Golay smoothing filter)."""
    u = torch.arange(-half, half + 1, dtype=torch.float64)
    design = torch.stack([torch.ones_like(u), u, u * u], dim=1)  # (2h+1, 3)
    return torch.linalg.pinv(design)[0]


# ------------------------------------------------------------------------------------------------
# Sampling helpers


def score_field(
    field_fn: Callable[[Tensor], Tensor],  # [M, 3] world points -> [M] raw sigma
    oracle: GeometryOracle | None = None,
    chunk_points: int = 1 << 20,
) -> OracleScores:
    """Score one sigma field given as a function of world points, sampled on the oracle's grid."""
    oracle = oracle or GeometryOracle()
    cfg = oracle.config
    xyz = grid_coordinates(cfg.resolution, cfg.cube_length)  # (R^3, 3)
    with torch.no_grad():
        sigma = torch.cat([field_fn(part) for part in xyz.split(chunk_points)])
    return oracle(sigma.reshape(cfg.resolution, cfg.resolution, cfg.resolution))


def score_heads(params: HeadParams, oracle: GeometryOracle | None = None, chunk_points: int = 1 << 21) -> OracleScores:
    """Score procedural heads from their sigma on the oracle's grid (one head at a time, chunked)."""
    oracle = oracle or GeometryOracle()
    cfg = oracle.config
    r = cfg.resolution
    xyz = grid_coordinates(r, cfg.cube_length)  # (R^3, 3)
    results = []
    with torch.no_grad():
        for i in range(len(params)):
            head = params.index(i)
            sigma = torch.cat([head_sigma(part[None], head)[0] for part in xyz.split(chunk_points)])  # (R^3,)
            results.append(oracle(sigma.reshape(r, r, r)))
    return OracleScores(*(torch.cat([getattr(res, f) for res in results]) for f in ("scores", "quality", "raw")))


def score_generator(G: nn.Module, ws: Tensor, oracle: GeometryOracle | None = None, **sigma_kwargs) -> OracleScores:
    """Score a tri-plane generator's latents ``ws`` [N, num_ws, w_dim] on the oracle's grid.

    ``sigma_kwargs`` go to ``geometry.sigma.sigma_grid`` (e.g. ``chunk_points``, ``progress``).
    """
    from nerfsculpt.geometry.sigma import sigma_grid

    oracle = oracle or GeometryOracle()
    cfg = oracle.config
    box_warp = float(G.rendering_kwargs["box_warp"])
    if box_warp != cfg.cube_length:
        raise ValueError(f"generator box_warp {box_warp} differs from the oracle's cube_length {cfg.cube_length}; "
                         f"use GeometryOracle(OracleConfig(cube_length={box_warp}))")
    return oracle(sigma_grid(G, ws, resolution=cfg.resolution, **sigma_kwargs))
