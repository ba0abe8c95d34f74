"""The report's pictures (PNG, matplotlib's Agg canvas; no display needed).

Each function draws one figure from an analysis's result and writes it atomically; it returns the
path written.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from nerfsculpt.atomic import write_atomic


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_atomic(path, buffer.getvalue())


def reward_deltas_png(result: dict[str, Any], path: Path) -> Path:
    """Fig. 7: the histogram of the per-seed reward change and each seed's before -> after."""
    rows = result["per_seed"]
    delta = np.array([r["delta"] for r in rows])
    figure = _figure(10, 4)
    left, right = figure.subplots(1, 2)
    left.hist(delta, bins=max(5, min(30, len(delta) // 3)), color="tab:blue", alpha=0.8)
    left.axvline(0.0, color="black", linewidth=0.8)
    left.axvline(delta.mean(), color="tab:red", linestyle="--", label=f"mean {delta.mean():+.3g}")
    left.set_xlabel("reward change, tuned - original (same latent)")
    left.set_ylabel("seeds")
    left.legend(loc="best")
    order = np.argsort([r["before"] for r in rows])
    x = np.arange(len(rows))
    right.plot(x, [rows[i]["before"] for i in order], "o", color="grey", markersize=3, label="original")
    right.plot(x, [rows[i]["after"] for i in order], "o", color="tab:orange", markersize=3, label="tuned")
    right.set_xlabel("seeds, by the original's reward")
    right.set_ylabel("reward")
    right.legend(loc="best")
    return _save(figure, path)


def slope_png(slopes: dict[str, dict[str, Any]], path: Path) -> Path:
    """Figs. 8-9: final against initial per seed, with the OLS line and y = x, for each run."""
    figure = _figure(5 * len(slopes), 4.5)
    axes = np.atleast_1d(figure.subplots(1, len(slopes)))
    for axis, (name, s) in zip(axes, slopes.items(), strict=True):
        initial, final = np.array(s["initial"]), np.array(s["final"])
        axis.plot(initial, final, "o", markersize=3, alpha=0.7)
        span = np.array([initial.min(), initial.max()])
        axis.plot(span, span, color="grey", linewidth=0.8, label="no change (b = 1)")
        axis.plot(span, s["a"] + s["b"] * span, color="tab:red",
                  label=f"b = {s['b']:.2f} [{s['b_ci95'][0]:.2f}, {s['b_ci95'][1]:.2f}]")
        axis.set_xlabel(f"initial {s['measure']} (tick 0)")
        axis.set_ylabel(f"final {s['measure']} (tick {s['tick']})")
        axis.set_title(name)
        axis.legend(loc="best")
    return _save(figure, path)


def sweep_png(sweeps: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Table 5 as a plot: mean reward +- std against psi, one line per generator."""
    figure = _figure(6, 4)
    axis = figure.subplots()
    for name, rows in sweeps.items():
        psi = [r["psi"] for r in rows]
        axis.errorbar(psi, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], marker="o", capsize=3,
                      label=name)
    axis.set_xlabel("truncation psi")
    axis.set_ylabel("reward (mean +- std)")
    axis.legend(loc="best")
    return _save(figure, path)


def renders_png(before: np.ndarray, after: np.ndarray, seeds: list[int], path: Path) -> Path:
    """Before/after clay renders side by side: rows = seeds, columns = views of the original, then the tuned."""
    from nerfsculpt.atomic import png_bytes

    # before, after: (S, V, R, R, 3) uint8 -> one image (S * R, 2 * V * R, 3) with a white gap between the models
    s, v, r = before.shape[:3]
    gap = np.full((s, r, r // 8, 3), 255, dtype=np.uint8)
    rows = [np.concatenate([*before[i], gap[i], *after[i]], axis=1) for i in range(s)]
    return write_atomic(path, png_bytes(np.concatenate(rows, axis=0)))


def embedding_png(result: dict[str, Any], path: Path) -> Path:
    """The reward embeddings in 2-D (UMAP or PCA), coloured by regime and by model, with their silhouettes."""
    figure = _figure(10, 4.5)
    for axis, (name, r) in zip(figure.subplots(1, 2), result.items(), strict=True):
        xy, labels = np.array(r["xy"]), np.array(r["labels"])
        for label in dict.fromkeys(labels):
            mask = labels == label
            axis.plot(xy[mask, 0], xy[mask, 1], "o", markersize=4, alpha=0.7, label=label)
        axis.set_title(f"{name}: silhouette {r['silhouette']:.3f} ({r['projection'].upper()})")
        axis.legend(loc="best")
    return _save(figure, path)


def attribution_png(summary: dict[str, Any], path: Path) -> Path:
    """Mean Shapley value and integrated gradient of the reward change per region."""
    names = list(summary["regions"])
    shap = [summary["regions"][n]["shapley_mean"] for n in names]
    ig = [summary["regions"][n]["ig_mean"] for n in names]
    figure = _figure(max(6, 0.8 * len(names)), 4)
    axis = figure.subplots()
    x = np.arange(len(names))
    axis.bar(x - 0.2, shap, width=0.4, label="Shapley (mean)")
    axis.bar(x + 0.2, ig, width=0.4, label="integrated gradients (mean)")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xticks(x, names, rotation=30, ha="right")
    axis.set_ylabel("reward change per seed (mean)")
    axis.legend(loc="best")
    return _save(figure, path)
