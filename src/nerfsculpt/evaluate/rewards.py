"""What the reward says about a generator before and after fine-tuning.

See docs/method/reference_method.md §7.1, §7.3 and §7.6.

- :func:`reward_deltas`: the same latents through both generators; per-seed change of the reward
  and the distance of the reward network's embeddings (the paper's Fig. 7: seeds 200000-200099,
  psi 0.7);
- :func:`truncation_sweep`: mean and population std of the reward over psi (Table 5): a fine-tune
  that only moved samples toward the average face would gain most at psi 1 and nothing at psi 0;
- :func:`rank_consistency_across_psi`: whether one generator's samples rank alike at psi 0.7 and
  0.25 (Table 9).

Samples are scored exactly as the reward was trained (``reward.scoring``: the bundle's slab crop,
grid, noise mode and truncation cutoff, the canonical camera); :class:`Scorer` keeps each
(generator, psi) scoring so that analyses sharing one compute it once.

Example::

    scorer = Scorer(load_bundle("runs/reward/bundle"))
    deltas = reward_deltas(scorer, G_before, G_after, seeds=range(200000, 200100))
    sweep = truncation_sweep(scorer, G_after, seeds=range(200000, 200100))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nerfsculpt.stats import paired_summary, rank_consistency

EVAL_SEEDS = tuple(range(200000, 200100))
"""The paper's evaluation latents (docs/method/reference_method.md §7.1)."""
EVAL_PSI = 0.7
"""Truncation of the evaluation latents (§7.1)."""
SWEEP_PSIS = (0.0, 0.25, 0.5, 0.7, 1.0)
"""Table 5's truncations (§7.3)."""


@dataclass(frozen=True)
class ScoredSamples:
    """Rewards and reward-network embeddings of one generator's samples."""

    seeds: tuple[int, ...]
    """The seeds, z = RandomState(seed).randn(1, z_dim)."""
    psi: float
    """Their truncation."""
    rewards: np.ndarray
    """[S] rewards (an ensemble's: the members' mean)."""
    embeddings: np.ndarray
    """[S, E] embeddings f of the reward network (an ensemble's: its members' side by side)."""


class Scorer:
    """Scores generators' samples with one reward bundle, remembering each (generator, psi, seeds)."""

    def __init__(self, bundle: Any, progress: bool = False):
        self.bundle = bundle
        self.progress = progress
        self._done: dict[tuple[int, float, tuple[int, ...]], ScoredSamples] = {}

    @torch.no_grad()
    def __call__(self, G: nn.Module, seeds: Sequence[int], psi: float) -> ScoredSamples:
        from tqdm import tqdm

        from nerfsculpt.geometry.sigma import reward_slab
        from nerfsculpt.latents import ws_from_seeds

        seeds = tuple(int(s) for s in seeds)
        key = (id(G), float(psi), seeds)
        if key in self._done:
            return self._done[key]
        ext = self.bundle.extraction
        spec = dataclasses.replace(ext.slab_spec, cube_length=float(G.rendering_kwargs["box_warp"]))
        device = next(self.bundle.model.parameters()).device
        rewards, embeddings = [], []
        for seed in tqdm(seeds, disable=not self.progress, unit="seed", desc=f"reward psi {psi:g}"):
            ws = ws_from_seeds(G, [seed], psi, ext.truncation_cutoff)
            slab = reward_slab(G, ws, spec, noise_mode=ext.noise_mode, eg3d_grid=ext.eg3d_grid)  # (1, X, Y, Z)
            outputs, _ = self.bundle.model.outputs(self.bundle.prepare_slabs(slab).to(device))
            rewards.append(outputs.reward.cpu())
            embeddings.append(outputs.embedding.cpu())
        scored = ScoredSamples(seeds, float(psi), torch.cat(rewards).double().numpy(),
                               torch.cat(embeddings).double().numpy())
        self._done[key] = scored
        return scored


def reward_deltas(scorer: Scorer, before: nn.Module, after: nn.Module, seeds: Sequence[int] = EVAL_SEEDS,
                  psi: float = EVAL_PSI) -> dict[str, Any]:
    """The reward change of each latent from ``before`` to ``after`` (same z, same psi, same camera).

    Returns the paired summary of delta = r(after) - r(before) (mean with its bootstrap interval,
    median, shares positive and negative), the per-seed Euclidean distance of the embeddings
    (mean, median), and the per-seed table.
    """
    a, b = scorer(before, seeds, psi), scorer(after, seeds, psi)
    delta = b.rewards - a.rewards
    distance = np.linalg.norm(b.embeddings - a.embeddings, axis=1)  # (S,)
    return {"delta": paired_summary(delta), "before_mean": float(a.rewards.mean()),
            "after_mean": float(b.rewards.mean()),
            "embedding_distance": {"mean": float(distance.mean()), "median": float(np.median(distance))},
            "per_seed": [{"seed": s, "before": float(x), "after": float(y), "delta": float(y - x),
                          "embedding_distance": float(d)}
                         for s, x, y, d in zip(a.seeds, a.rewards, b.rewards, distance, strict=True)]}


def truncation_sweep(scorer: Scorer, G: nn.Module, seeds: Sequence[int] = EVAL_SEEDS,
                     psis: Sequence[float] = SWEEP_PSIS) -> list[dict[str, float]]:
    """Mean and population std (ddof 0, as the reference) of the reward at each psi (Table 5)."""
    rows = []
    for psi in psis:
        r = scorer(G, seeds, psi).rewards
        rows.append({"psi": float(psi), "mean": float(r.mean()), "std": float(r.std()), "n": len(r)})
    return rows


def rank_consistency_across_psi(scorer: Scorer, G: nn.Module, seeds: Sequence[int] = EVAL_SEEDS,
                                psi: float = EVAL_PSI, other_psi: float = 0.25, k: int = 10,
                                pool: int = 50) -> dict[str, float]:
    """Spearman / Pearson of the rewards at ``psi`` and ``other_psi``, top-k in top-pool overlaps, std ratio (Table 9).

    ``k`` and ``pool`` shrink with the sample count (k = S / 10, pool = S / 2 at most) so that a reduced
    run measures the same shares as the paper's 10 of 100 within 50 of 100.
    """
    n = len(seeds)
    k, pool = max(1, min(k, n // 10)), max(1, min(pool, n // 2))
    return rank_consistency(scorer(G, seeds, psi).rewards, scorer(G, seeds, other_psi).rewards, k=k, pool=pool)
