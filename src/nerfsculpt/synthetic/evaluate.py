"""The quality bar of a generator fitted to the procedural heads, measured on held-out seeds.

    nerfsculpt synthetic evaluate --generator synthetic --seeds 900000-900199 --out quality.json

For each seed s, z = RandomState(s).randn(1, z_dim) (seeds never drawn by the fit, which uses torch
generators) is mapped at the canonical camera. Measured:

- agreement: Spearman correlation, over the seeds, between the oracle of the generator's sigma and
  the oracle of the procedural head of the same z (per defect and for the total quality), and between
  the generator's oracle scores and the injected severities;
- truncation: mean oracle scores and quality at psi in {0, 0.25, 0.5, 0.7, 1.0} (the paper's
  Table 5 protocol: geometry should improve as psi -> 0);
- spread: how much quality varies across seeds at psi = 1;
- rgb (``rgb_scores``): whether G's renders are recognisable faces. G's output image and raw (neural
  rendering) image at the canonical camera, psi = 1, against the procedural head rendered by the same
  renderer: PSNR, and the two contrasts that make the simple face a face, read in discs around its
  landmarks (``heads.face_landmarks``): eyes that differ from the cheeks (RGB distance; each painted eye
  is one dark patch) and lips redder than the cheeks
  (R - (G + B) / 2). A seed's face counts as recognisable when both contrasts of G's image are at
  least half of the procedural head's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor

from nerfsculpt.camera import canonical_camera, project_points
from nerfsculpt.latents import z_from_seeds
from nerfsculpt.synthetic.heads import DEFECTS, HeadParams, face_landmarks, head_field, head_params_from_z
from nerfsculpt.synthetic.oracle import GeometryOracle, OracleScores, score_generator, score_heads
from nerfsculpt.synthetic.render import render_field

TRUNCATION_PSIS = (0.0, 0.25, 0.5, 0.7, 1.0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rho, or None when either side is constant (undefined)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def _summary(scores: OracleScores) -> dict[str, float]:
    means = scores.scores.mean(0)
    return {**{name: float(means[k]) for k, name in enumerate(DEFECTS)}, "quality": float(scores.quality.mean())}


def _score_seeds(G, z: torch.Tensor, psi: float, oracle: GeometryOracle, batch: int) -> OracleScores:
    parts = []
    with torch.no_grad():
        for chunk in z.split(batch):
            c = canonical_camera(device=chunk.device).expand(len(chunk), -1)
            ws = G.mapping(chunk, c, truncation_psi=psi)
            parts.append(score_generator(G, ws, oracle))
    return OracleScores(*(torch.cat([getattr(p, f) for p in parts]) for f in ("scores", "quality", "raw")))


LANDMARK_RADIUS = 0.012
"""Radius (world units) of the disc around each landmark whose colour is read (the painted eye's is 0.024 x 0.034)."""
RECOGNISABLE_FRACTION = 0.5
"""A face is recognisable when both its contrasts are at least this fraction of the procedural head's."""


def _disc_offsets(samples: int = 8) -> Tensor:  # -> [1 + 2 * samples, 2]: the centre and two rings (r/2, r)
    angles = torch.arange(samples) * (2 * math.pi / samples)
    ring = torch.stack([angles.cos(), angles.sin()], -1)
    return torch.cat([torch.zeros(1, 2), 0.5 * ring, ring])


def landmark_colours(images: Tensor, c: Tensor, params: HeadParams) -> dict[str, Tensor]:
    """Mean colour [N, 3] of images [N, 3, R, R] (in [0, 1], seen by cameras c [N, 25]) in a disc of radius
    ``LANDMARK_RADIUS`` around each landmark of ``heads.face_landmarks``, bilinearly sampled."""
    marks = face_landmarks(params)
    names = list(marks)
    points = torch.stack([marks[k] for k in names], 1).to(images)  # (N, K, 3)
    centre = project_points(points, c)  # (N, K, 2) in [0, 1]
    edge = project_points(points + torch.tensor([LANDMARK_RADIUS, 0.0, 0.0]).to(images), c)
    radius = (edge - centre).norm(dim=-1, keepdim=True)  # (N, K, 1)
    grid = centre[:, :, None] + radius[..., None] * _disc_offsets().to(images)  # (N, K, S, 2)
    samples = F.grid_sample(images, 2 * grid - 1, mode="bilinear", align_corners=False)  # (N, 3, K, S)
    colours = samples.mean(-1).permute(0, 2, 1)  # (N, K, 3)
    return {name: colours[:, k] for k, name in enumerate(names)}


def face_contrasts(images: Tensor, c: Tensor, params: HeadParams) -> dict[str, Tensor]:
    """Per-image [N] contrasts of a face render (module docstring): ``eyes`` = mean RGB distance of the two
    eyes from the cheeks, ``mouth`` = redness(mouth) - redness(cheeks); images [N, 3, R, R] in [0, 1]."""
    colours = landmark_colours(images, c, params)

    def red(rgb: Tensor) -> Tensor:
        return rgb[:, 0] - 0.5 * (rgb[:, 1] + rgb[:, 2])

    cheeks = 0.5 * (colours["cheek_right"] + colours["cheek_left"])
    eyes = 0.5 * sum((colours[f"eye_{side}"] - cheeks).norm(dim=-1) for side in ("right", "left"))
    return {"eyes": eyes, "mouth": red(colours["mouth"]) - red(cheeks)}


def _psnr(a: Tensor, b: Tensor) -> Tensor:  # [N, 3, R, R] in [0, 1] -> [N] dB (capped at 100)
    mse = (a - b).square().mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return -10 * mse.log10()


def rgb_scores(G, z: Tensor, batch: int = 4) -> dict[str, Any]:
    """The rgb numbers of the module docstring for latents z [S, z_dim]; JSON-ready."""
    contrasts: dict[str, list[Tensor]] = {"generator_eyes": [], "generator_mouth": [], "truth_eyes": [],
                                          "truth_mouth": []}
    psnr: dict[str, list[Tensor]] = {"image": [], "image_raw": []}
    with torch.no_grad():
        for chunk in z.split(batch):
            c = canonical_camera(device=chunk.device).expand(len(chunk), -1)
            params = head_params_from_z(chunk.cpu()).to(chunk.device)
            field = functools.partial(head_field, params=params)
            out = G.synthesis(G.mapping(chunk, c), c, noise_mode="const", deterministic=True)
            for key, resolution in (("image", G.img_resolution), ("image_raw", G.neural_rendering_resolution)):
                truth = render_field(field, c, resolution, G.rendering_kwargs)["image"]
                fitted, truth = ((x.float().clamp(-1, 1) + 1) / 2 for x in (out[key], truth))
                psnr[key].append(_psnr(fitted, truth).cpu())
                if key == "image":
                    for who, images in (("generator", fitted), ("truth", truth)):
                        for name, value in face_contrasts(images, c, params).items():
                            contrasts[f"{who}_{name}"].append(value.cpu())
    values = {k: torch.cat(v) for k, v in contrasts.items()}
    result: dict[str, Any] = {
        "protocol": {"camera": "canonical", "psi": 1.0, "noise_mode": "const", "image_resolution": G.img_resolution,
                     "raw_resolution": G.neural_rendering_resolution, "landmark_radius": LANDMARK_RADIUS,
                     "recognisable": f"both contrasts >= {RECOGNISABLE_FRACTION} x the procedural head's"},
        "psnr_image": float(torch.cat(psnr["image"]).mean()),
        "psnr_image_raw": float(torch.cat(psnr["image_raw"]).mean()),
    }
    shown = torch.ones(len(z), dtype=torch.bool)
    for name in ("eyes", "mouth"):
        g, t = values[f"generator_{name}"], values[f"truth_{name}"]
        enough = g >= RECOGNISABLE_FRACTION * t
        shown &= enough
        result[name] = {"generator": float(g.mean()), "truth": float(t.mean()),
                        "fraction_shown": float(enough.float().mean())}
    result["fraction_recognisable"] = float(shown.float().mean())
    return result


def evaluate_generator(
    G,
    seeds: Sequence[int],
    oracle: GeometryOracle | None = None,
    psis: Sequence[float] = TRUNCATION_PSIS,
    batch: int = 4,
    progress: bool = False,
    rgb: bool = True,
) -> dict[str, Any]:
    """The quality-bar numbers (module docstring) of generator ``G`` over ``seeds``; JSON-ready.
    ``rgb=False`` skips the renders (``rgb_scores``)."""
    from tqdm import tqdm

    oracle = oracle or GeometryOracle()
    device = G.dataset_label_std.device
    z = z_from_seeds(list(seeds), G.z_dim).to(device)  # (S, z_dim)
    params = head_params_from_z(z.cpu())
    truth = score_heads(params, oracle)
    by_psi = {}
    for psi in tqdm(psis, desc="psi", disable=not progress):
        by_psi[psi] = _score_seeds(G, z, psi, oracle, batch)
    fitted = by_psi[1.0] if 1.0 in by_psi else _score_seeds(G, z, 1.0, oracle, batch)
    g, t = fitted.scores.numpy(), truth.scores.numpy()
    severities = params.defects.numpy()
    agreement = {
        "vs_procedural_oracle": {name: _spearman(g[:, k], t[:, k]) for k, name in enumerate(DEFECTS)},
        "vs_injected_severity": {name: _spearman(g[:, k], severities[:, k]) for k, name in enumerate(DEFECTS)},
    }
    agreement["vs_procedural_oracle"]["quality"] = _spearman(fitted.quality.numpy(), truth.quality.numpy())
    agreement["vs_injected_severity"]["quality"] = _spearman(fitted.quality.numpy(), -severities.sum(1))
    quality = fitted.quality.numpy()
    return {
        "protocol": {
            "seeds": [int(min(seeds)), int(max(seeds))], "n_seeds": len(seeds),
            "latent": "z = numpy RandomState(seed).randn(1, z_dim); canonical camera conditioning",
            "oracle": {"resolution": oracle.config.resolution, "level": oracle.config.level},
            "noise_mode": "const",
        },
        "spearman": agreement,
        "truncation": {str(psi): _summary(s) for psi, s in by_psi.items()},
        "procedural_truth": _summary(truth),
        "spread_psi_1": {"quality_std": float(quality.std()), "quality_p10": float(np.percentile(quality, 10)),
                         "quality_p90": float(np.percentile(quality, 90)),
                         "fraction_with_defect_score_above_0.25": float((g.max(1) > 0.25).mean())},
        **({"rgb": rgb_scores(G, z, batch)} if rgb else {}),
    }
