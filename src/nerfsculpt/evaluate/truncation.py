"""Is the fine-tune more than a slide toward the average face? (paper Table 4)

See docs/method/reference_method.md §7.3. Truncating a latent toward w_avg (psi -> 0) smooths
geometry and a reward may like that; a fine-tune that only did the same would move every sample
toward the psi = 0 sample. Per latent, three samples: x_orig (the original generator at ``psi``),
x_tuned (the tuned generator, same z and psi) and x_trunc (the original generator at psi = 0, the
average face), each as a flat vector of

- ``depth``: the canonical camera's depth map (``depth_resolution``^2, world units), and
- ``sigma``: raw sigma on the full ``sigma_resolution``^3 cube over the tri-plane box (no crop, no
  normalisation).

Per latent: d_orig = mean |x_tuned - x_orig|, d_trunc = mean |x_tuned - x_trunc|; with
delta = x_tuned - x_orig and m = x_trunc - x_orig, the projection alpha = <delta, m> / |m|^2, the
residual fraction |delta - alpha m| / |delta| and the cosine of delta and m. Reported: the share of
latents closer to the original (d_orig < d_trunc), the one-sided Wilcoxon signed-rank test and sign
test of H1: d_trunc > d_orig, and the means of alpha, the residual fraction and the cosine with
percentile-bootstrap 95 % intervals (2,000 resamples, seed 0). A pure slide toward the average face
has alpha > 0, residual ~ 0 and cosine ~ 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nerfsculpt.stats import bootstrap_mean, sign_test_greater, wilcoxon_greater

REPRESENTATIONS = ("depth", "sigma")
PROJECTION_RESAMPLES = 2000
"""Bootstrap resamples of the projection means (the reference's)."""


def projection(delta: np.ndarray, direction: np.ndarray) -> dict[str, float]:
    """alpha, residual fraction and cosine of a change ``delta`` [D] against a ``direction`` [D].

    alpha = <delta, m> / |m|^2 (how far along m), residual = |delta - alpha m| / |delta| (the share of
    the change not along m), cosine = <delta, m> / (|delta| |m|). NaN where |delta| or |m| is 0.
    """
    delta, direction = np.asarray(delta, dtype=np.float64), np.asarray(direction, dtype=np.float64)
    dot, norm_d, norm_m = float(delta @ direction), float(np.linalg.norm(delta)), float(np.linalg.norm(direction))
    if norm_d == 0 or norm_m == 0:
        return {"alpha": float("nan"), "residual_fraction": float("nan"), "cosine": float("nan")}
    alpha = dot / norm_m**2
    return {"alpha": alpha, "residual_fraction": float(np.linalg.norm(delta - alpha * direction) / norm_d),
            "cosine": dot / (norm_d * norm_m)}


def _sample(G: nn.Module, seed: int, psi: float, what: str, depth_resolution: int, sigma_resolution: int) -> np.ndarray:
    from nerfsculpt.camera import canonical_camera
    from nerfsculpt.geometry.sigma import sigma_grid
    from nerfsculpt.geometry.views import render_depth
    from nerfsculpt.latents import ws_from_seeds

    ws = ws_from_seeds(G, [seed], psi, None)  # (1, num_ws, w_dim); psi 0 -> w_avg on every layer
    if what == "depth":
        out = render_depth(G, ws, canonical_camera(device=ws.device), resolution=depth_resolution)  # (1, 1, 1, R, R)
    else:
        out = sigma_grid(G, ws, resolution=sigma_resolution)  # (1, R, R, R)
    return out.reshape(-1).double().cpu().numpy()


@torch.no_grad()
def truncation_baseline(before: nn.Module, after: nn.Module, seeds: Sequence[int], psi: float = 0.7,
                        depth_resolution: int = 128, sigma_resolution: int = 64,
                        progress: bool = False) -> dict[str, Any]:
    """Table 4 for both representations: {"depth": {...}, "sigma": {...}, "protocol": {...}}."""
    from tqdm import tqdm

    seeds = [int(s) for s in seeds]
    out: dict[str, Any] = {"protocol": {"seeds": len(seeds), "psi": psi, "truncated_psi": 0.0, "camera": "canonical",
                                        "depth_resolution": depth_resolution, "sigma_resolution": sigma_resolution,
                                        "noise_mode": "const", "bootstrap_resamples": PROJECTION_RESAMPLES}}
    for what in REPRESENTATIONS:
        trunc = _sample(before, seeds[0], 0.0, what, depth_resolution, sigma_resolution)  # the same for every z
        d_orig, d_trunc, rows = [], [], []
        for seed in tqdm(seeds, disable=not progress, unit="seed", desc=f"truncation baseline ({what})"):
            orig = _sample(before, seed, psi, what, depth_resolution, sigma_resolution)
            tuned = _sample(after, seed, psi, what, depth_resolution, sigma_resolution)
            d_orig.append(float(np.abs(tuned - orig).mean()))
            d_trunc.append(float(np.abs(tuned - trunc).mean()))
            rows.append(projection(tuned - orig, trunc - orig))
        d_orig_a, d_trunc_a = np.array(d_orig), np.array(d_trunc)
        summary: dict[str, Any] = {
            "closer_to_original": float((d_orig_a < d_trunc_a).mean()),
            "l1_to_original_mean": float(d_orig_a.mean()), "l1_to_truncated_mean": float(d_trunc_a.mean()),
            "wilcoxon": wilcoxon_greater(d_trunc_a, d_orig_a), "sign_test": sign_test_greater(d_trunc_a, d_orig_a),
        }
        for key in ("alpha", "residual_fraction", "cosine"):
            values = np.array([r[key] for r in rows])
            values = values[np.isfinite(values)]  # latents the tune did not change have no direction
            summary[key] = ({"mean": float(values.mean()), "ci95": bootstrap_mean(values, PROJECTION_RESAMPLES),
                             "n": len(values)} if len(values) else {"mean": None, "ci95": None, "n": 0})
        out[what] = summary
    return out
