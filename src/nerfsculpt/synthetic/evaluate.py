"""The quality bar of a generator fitted to the procedural heads, measured on held-out seeds.

    nerfsculpt synthetic evaluate --generator synthetic --seeds 900000-900199 --out quality.json

For each seed s, z = RandomState(s).randn(1, z_dim) (seeds never drawn by the fit, which uses torch
generators) is mapped at the canonical camera. Measured:

- agreement: Spearman correlation, over the seeds, between the oracle of the generator's sigma and
  the oracle of the procedural head of the same z (per defect and for the total quality), and between
  the generator's oracle scores and the injected severities;
- truncation: mean oracle scores and quality at psi in {0, 0.25, 0.5, 0.7, 1.0} (the paper's
  Table 5 protocol: geometry should improve as psi -> 0);
- spread: how much quality varies across seeds at psi = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from nerfsculpt.camera import canonical_camera
from nerfsculpt.latents import z_from_seeds
from nerfsculpt.synthetic.heads import DEFECTS, head_params_from_z
from nerfsculpt.synthetic.oracle import GeometryOracle, OracleScores, score_generator, score_heads

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


def evaluate_generator(
    G,
    seeds: Sequence[int],
    oracle: GeometryOracle | None = None,
    psis: Sequence[float] = TRUNCATION_PSIS,
    batch: int = 4,
    progress: bool = False,
) -> dict[str, Any]:
    """The quality-bar numbers (module docstring) of generator ``G`` over ``seeds``; JSON-ready."""
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
    }
