"""Where on the face does the reward's gain come from? (docs/method/reference_method.md §7.5)

For each latent, the reward change r(tuned slab) - r(original slab) is split over named regions of
the reward slab, two ways:

- **Shapley values by permutation sampling**: for each of ``permutations`` random orders of the
  regions (``numpy.random.RandomState(123)``, shared across seeds, as the reference), start from the
  original slab, give one region at a time the tuned slab's values, and credit each region with the
  reward's increment; average over the orders. Each order telescopes, so the values add up exactly
  to the full change (completeness). The slab's min-max normalisation is recomputed for every
  coalition (the bundle's transform runs on every input).
- **Integrated gradients**: on the straight line from the original to the tuned raw slab, the
  gradient of the reward with respect to the raw slab at alpha = 1/steps ... 1 (right Riemann sum,
  ``steps`` 8), times the change; per region the signed and the absolute sum. Their total matches the
  change only approximately (the completeness error is reported).

Regions are axis-aligned world-space boxes in priority order (a voxel belongs to the first box that
holds it; what no box holds is "other"). They come from a JSON file of boxes or of landmark points
(:func:`read_regions`) or, on the built-in generator, from its heads' landmarks
(:func:`synthetic_regions`). The reference built
its boxes from 98 WFLW landmarks of a face detector; nerfsculpt reads yours.

Region file::

    {"regions": [{"name": "nose", "min": [-0.05, -0.05, 0.15], "max": [0.05, 0.08, 0.35]}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfsculpt.errors import NerfsculptError

SHAPLEY_PERMUTATIONS = 8
"""Random region orders per seed (the reference's)."""
IG_STEPS = 8
"""Integrated-gradient steps (the reference's)."""
OTHER = "other"


@dataclass(frozen=True)
class Region:
    """A named world-space box [min, max] (inclusive)."""

    name: str
    """Region name (e.g. 'nose')."""
    low: tuple[float, float, float]
    """Lower corner (x, y, z), world units."""
    high: tuple[float, float, float]
    """Upper corner (x, y, z), world units."""


def read_regions(path: str | Path) -> list[Region]:
    """Regions from a JSON file of boxes or of landmark points.

    Boxes: ``{"regions": [{"name": ..., "min": [x, y, z], "max": [x, y, z]}, ...]}``. Landmarks:
    ``{"landmarks": {"nose": [[x, y, z], ...], ...}, "margin": 0.015}``: each named group of 3-D
    points (e.g. face landmarks back-projected with the depth map, averaged over seeds, as the
    reference built its boxes) becomes the box around its points, widened by ``margin`` (world units,
    default 0.015) on every side. Priority is the file's order.
    """
    try:
        data = json.loads(Path(path).read_text())
        if "landmarks" in data:
            margin = float(data.get("margin", 0.015))
            regions = []
            for name, points in data["landmarks"].items():
                xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
                regions.append(Region(str(name), tuple((xyz.min(0) - margin).tolist()),
                                      tuple((xyz.max(0) + margin).tolist())))
        else:
            regions = [Region(str(e["name"]), tuple(map(float, e["min"])), tuple(map(float, e["max"])))
                       for e in data["regions"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise NerfsculptError(f"{path}: expected {{\"regions\": [{{\"name\": ..., \"min\": [x, y, z], \"max\": "
                              f"[x, y, z]}}, ...]}} or {{\"landmarks\": {{name: [[x, y, z], ...]}}}} "
                              f"({error})") from None
    names = [r.name for r in regions]
    if len(set(names)) != len(names) or OTHER in names or not regions:
        raise NerfsculptError(f"{path}: region names must be unique, non-empty and not {OTHER!r}, got {names}")
    return regions


def synthetic_regions(seeds: Sequence[int], z_dim: int, margin: float = 0.06) -> list[Region]:
    """Boxes of half-side ``margin`` around the built-in heads' landmarks (eyes, mouth, cheeks), averaged
    over ``seeds``, and a box for the nose between the eyes and the mouth."""
    from nerfsculpt.latents import z_from_seeds
    from nerfsculpt.synthetic.heads import face_landmarks, head_params_from_z

    points = {k: v.mean(0).tolist() for k, v in face_landmarks(head_params_from_z(z_from_seeds(seeds, z_dim))).items()}
    eyes_y = (points["eye_right"][1] + points["eye_left"][1]) / 2
    nose = Region("nose", (-margin, points["mouth"][1] + margin, 0.15), (margin, eyes_y - margin / 2, 0.5))
    boxes = [Region(name, tuple(c - margin for c in p), tuple(c + margin for c in p)) for name, p in points.items()]
    return [nose, *boxes]


def region_labels(regions: Sequence[Region], spec: Any) -> Tensor:  # -> [X, Y, Z] int64 region index
    """Each slab voxel's region index (``len(regions)`` = other), first box wins."""
    from nerfsculpt.geometry.grid import index_to_world

    axes = [index_to_world(torch.arange(lo, hi, dtype=torch.float64), spec.resolution, spec.cube_length)
            for lo, hi in spec.index_ranges]  # world coordinate of each kept index, per axis
    labels = torch.full(spec.shape, len(regions), dtype=torch.int64)
    for k in reversed(range(len(regions))):  # earlier regions overwrite later ones
        inside = [(a >= lo) & (a <= hi) for a, lo, hi in zip(axes, regions[k].low, regions[k].high, strict=True)]
        mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]  # (X, Y, Z)
        labels[mask] = k
    return labels


def _reward(bundle: Any, slab: Tensor) -> Tensor:  # [N, X, Y, Z] raw -> [N]
    device = next(bundle.model.parameters()).device
    return bundle.model(bundle.prepare_slabs(slab).to(device)).cpu()


def shapley(bundle: Any, start: Tensor, end: Tensor, labels: Tensor, names: Sequence[str],
            orders: np.ndarray) -> dict[str, float]:
    """Permutation-sampled Shapley values of each region for raw slabs ``start`` -> ``end`` [X, Y, Z]."""
    values = np.zeros(len(names))
    with torch.no_grad():
        for order in orders:
            current = start.clone()
            previous = float(_reward(bundle, current[None])[0])
            for k in order:
                current[labels == k] = end[labels == k]
                now = float(_reward(bundle, current[None])[0])
                values[k] += now - previous
                previous = now
    return dict(zip(names, (values / len(orders)).tolist(), strict=True))


def integrated_gradients(bundle: Any, start: Tensor, end: Tensor, labels: Tensor, names: Sequence[str],
                         steps: int = IG_STEPS) -> dict[str, dict[str, float]]:
    """Integrated gradients summed per region (signed and absolute), right Riemann sum over ``steps``."""
    delta = (end - start).double()
    gradient = torch.zeros_like(delta)
    for step in range(1, steps + 1):
        point = (start + step / steps * (end - start)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_reward(bundle, point[None]).sum(), point)
        gradient += grad.double()
    ig = delta * gradient / steps  # (X, Y, Z)
    return {name: {"signed": float(ig[labels == k].sum()), "absolute": float(ig[labels == k].abs().sum())}
            for k, name in enumerate(names)}


def attribute(bundle: Any, before: Any, after: Any, seeds: Sequence[int], psi: float, regions: Sequence[Region],
              permutations: int = SHAPLEY_PERMUTATIONS, steps: int = IG_STEPS,
              progress: bool = False) -> dict[str, Any]:
    """Shapley values and integrated gradients of the reward change per region, per seed and summarised."""
    import dataclasses

    from tqdm import tqdm

    from nerfsculpt.geometry.sigma import reward_slab
    from nerfsculpt.latents import ws_from_seeds

    ext = bundle.extraction
    spec = dataclasses.replace(ext.slab_spec, cube_length=float(before.rendering_kwargs["box_warp"]))
    labels = region_labels(regions, spec)
    names = [r.name for r in regions] + [OTHER]
    voxels = {name: int((labels == k).sum()) for k, name in enumerate(names)}
    rng = np.random.RandomState(123)  # noqa: NPY002  (the reference's generator, shared across seeds)
    rows = []
    for seed in tqdm(list(seeds), disable=not progress, unit="seed", desc="attribution"):
        slabs = [reward_slab(G, ws_from_seeds(G, [seed], psi, ext.truncation_cutoff), spec,
                             noise_mode=ext.noise_mode, eg3d_grid=ext.eg3d_grid)[0] for G in (before, after)]
        orders = np.stack([rng.permutation(len(names)) for _ in range(permutations)])
        with torch.no_grad():
            change = float(_reward(bundle, slabs[1][None])[0] - _reward(bundle, slabs[0][None])[0])
        values = shapley(bundle, slabs[0], slabs[1], labels, names, orders)
        ig = integrated_gradients(bundle, slabs[0], slabs[1], labels, names, steps)
        rows.append({"seed": int(seed), "change": change, "shapley": values, "ig": ig,
                     "shapley_completeness_error": sum(values.values()) - change,
                     "ig_completeness_error": sum(v["signed"] for v in ig.values()) - change})
    return {"regions": [dataclasses.asdict(r) for r in regions], "voxels": voxels, "per_seed": rows,
            "summary": _summary(rows, names)}


def _summary(rows: list[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    shap = np.array([[r["shapley"][n] for n in names] for r in rows])  # (S, R)
    ig = np.array([[r["ig"][n]["signed"] for n in names] for r in rows])
    top = np.argmax(np.abs(shap), axis=1)
    correlation = float(np.corrcoef(shap.ravel(), ig.ravel())[0, 1]) if shap.std() > 0 and ig.std() > 0 else None
    return {"regions": {n: {"shapley_mean": float(shap[:, k].mean()), "ig_mean": float(ig[:, k].mean()),
                            "positive": float((shap[:, k] > 0).mean()), "top": int((top == k).sum())}
                        for k, n in enumerate(names)},
            "shapley_ig_correlation": correlation,
            "max_shapley_completeness_error": float(max(abs(r["shapley_completeness_error"]) for r in rows)),
            "max_ig_completeness_error": float(max(abs(r["ig_completeness_error"]) for r in rows))}
