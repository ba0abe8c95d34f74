"""How the reward network's embedding separates samples (docs/method/reference_method.md §7.8).

- :func:`silhouette`: the mean silhouette score of labelled points under the Euclidean distance
  (Rousseeuw 1987; what ``sklearn.metrics.silhouette_score`` computes): for each point, a = its mean
  distance to the other points of its label, b = the smallest mean distance to the points of another
  label, s = (b - a) / max(a, b) (0 for a point alone in its label).
- :func:`project_2d`: a 2-D picture of the embeddings: UMAP when ``umap-learn`` is installed (after
  PCA to min(50, n - 1) components, 25 neighbours, min_dist 0.1, seed 42, as the reference), else the
  first two principal components.
- :func:`embedding_structure`: the paper's two experiments: the tuned generator's samples at psi
  0.25 / 0.7 / 1 labelled by psi (does the reward see the truncation regime?), each regime on its own
  block of latents as the reference (seeds - 100000, seeds, seeds + 100000: 100000-..., 200000-...,
  300000-... for the default seeds), and the original against the tuned generator at psi 0.7 on the
  same latents, labelled by model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

REGIME_PSIS = (0.25, 0.7, 1.0)
"""The truncation regimes of the paper's first embedding experiment."""


def silhouette(points: np.ndarray, labels: Sequence[Any]) -> float:
    """Mean silhouette score of ``points`` [N, D] with ``labels`` [N] (at least two labels)."""
    x = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    names = np.unique(labels)
    assert len(names) >= 2, f"a silhouette needs at least two labels, got {names.tolist()}"
    squared = (x * x).sum(1)
    distance = np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2 * x @ x.T, 0, None))  # (N, N)
    np.fill_diagonal(distance, 0.0)
    scores = np.zeros(len(x))
    for i in range(len(x)):
        own = labels == labels[i]
        if own.sum() == 1:
            continue  # alone in its label: 0
        a = distance[i, own].sum() / (own.sum() - 1)
        b = min(distance[i, labels == name].mean() for name in names if name != labels[i])
        scores[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(scores.mean())


def project_2d(points: np.ndarray, seed: int = 42) -> tuple[np.ndarray, str]:
    """([N, 2] coordinates, the method used: 'umap' or 'pca')."""
    x = np.asarray(points, dtype=np.float64)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    try:
        import umap
    except ImportError:
        return centred @ vt[:2].T, "pca"
    reduced = centred @ vt[: min(50, len(x) - 1)].T
    reducer = umap.UMAP(n_neighbors=min(25, len(x) - 1), min_dist=0.1, random_state=seed, init="spectral")
    return reducer.fit_transform(reduced), "umap"


def embedding_structure(scorer: Any, before: Any, after: Any, seeds: Sequence[int], psi: float = 0.7,
                        regimes: Sequence[float] = REGIME_PSIS) -> dict[str, Any]:
    """Silhouettes and 2-D projections of the reward embeddings f of the paper's two experiments."""
    blocks = [[s + 100000 * (k - 1) for s in seeds] for k in range(len(regimes))]  # disjoint latents per regime
    regime = [scorer(after, block, p) for block, p in zip(blocks, regimes, strict=True)]
    regime_points = np.concatenate([r.embeddings for r in regime])
    regime_labels = np.repeat([f"psi {p:g}" for p in regimes], len(seeds))
    models = [scorer(before, seeds, psi), scorer(after, seeds, psi)]
    model_points = np.concatenate([m.embeddings for m in models])
    model_labels = np.repeat(["original", "tuned"], len(seeds))
    out = {}
    for name, points, labels in (("regimes", regime_points, regime_labels), ("models", model_points, model_labels)):
        xy, method = project_2d(points)
        out[name] = {"silhouette": silhouette(points, labels), "projection": method, "xy": xy.tolist(),
                     "labels": labels.tolist()}
    return out
