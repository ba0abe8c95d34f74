"""Figures of a fine-tuning run, drawn from its tick records (``RUN/log.jsonl``).

``gold_curve_png``: the proxy (the learnt reward of the trajectory seeds, in standard deviations of
its tick-0 spread) and the truth (the geometry oracle's quality, the same units) against kimg and
against the sigma drift from the pretrained generator. Reward over-optimisation shows as the two
curves parting: the proxy climbing while the truth falls (Gao et al. 2022, "Scaling laws for reward
model overoptimization").
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from nerfsculpt.atomic import write_atomic


def gold_curve_series(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """kimg, sigma drift, and the reward and oracle means as changes from tick 0 in tick-0 standard deviations."""
    ticks = [r for r in history if "oracle_quality_mean" in r]
    if not ticks:
        return {"kimg": [], "sigma_drift": [], "reward": [], "oracle": []}
    first = ticks[0]

    def change(key: str, spread_key: str) -> list[float]:
        if key not in first:
            return []
        spread = first.get(spread_key) or 1.0
        return [(r[key] - first[key]) / spread for r in ticks]

    return {"kimg": [r["kimg"] for r in ticks], "sigma_drift": [r["sigma_drift"] for r in ticks],
            "reward": change("traj_reward_mean", "traj_reward_std"),
            "oracle": change("oracle_quality_mean", "oracle_quality_std")}


def gold_curve_png(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Write the gold-curve figure of ``history`` to ``path`` (PNG); None when no tick has oracle scores."""
    series = gold_curve_series(history)
    if not series["kimg"]:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    for axis, x, label in zip(figure.subplots(1, 2), ("kimg", "sigma_drift"),
                              ("kimg", "sigma drift from the pretrained generator (mean |delta sigma|)"), strict=True):
        if series["reward"]:
            axis.plot(series[x], series["reward"], "o-", color="tab:orange", label="learnt reward (proxy)")
        axis.plot(series[x], series["oracle"], "s-", color="tab:blue", label="oracle quality (truth)")
        axis.axhline(0.0, color="grey", linewidth=0.8)
        axis.set_xlabel(label)
        axis.set_ylabel("change from tick 0 (tick-0 std)")
        axis.grid(alpha=0.3)
    figure.axes[0].legend(loc="best")
    figure.suptitle("Gold curve: trajectory seeds on G_ema")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_atomic(path, buffer.getvalue())
