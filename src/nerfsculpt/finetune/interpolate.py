"""Pick how far to go: generators on the line from the pretrained G_0 to a fine-tuned G, each scored.

``G_alpha = G_0 + alpha * (G - G_0)`` on every floating-point weight and buffer of G_ema (integer
buffers are G's). alpha = 1 is the fine-tuned generator, alpha = 0 the pretrained one; in between
lies a cheap trade of reward against drift, chosen after training (DRaFT and AlignProp interpolate
the same way). Each alpha is saved as a generator directory (``--generator`` of every command) and
scored on fixed seeds (G_ema, psi 1, canonical camera, constant noise):

- the reward of the run's bundle, or of another one (``reward``): give a held-out evaluator, e.g.
  one ensemble member trained on questions the tuning reward never saw, to choose alpha on a judge
  that the fine-tuning did not optimise;
- on the synthetic benchmark, the geometry oracle's mean quality and the sigma drift from G_0.

Example::

    table = interpolate_run("runs/tune", alphas=(0.25, 0.5, 0.75, 1.0))
    # RUN/interpolate/<iteration>/alpha-0.50/ ... and RUN/interpolate/<iteration>/summary.json
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nerfsculpt.atomic import write_atomic
from nerfsculpt.finetune.config import DEFAULT_ALPHAS, FinetuneError


def interpolate_generators(G_0: nn.Module, G_1: nn.Module, alpha: float) -> nn.Module:
    """A copy of ``G_1`` whose floating weights and buffers are ``G_0 + alpha * (G_1 - G_0)``."""
    ours, theirs = G_0.state_dict(), G_1.state_dict()
    if ours.keys() != theirs.keys() or any(ours[k].shape != theirs[k].shape for k in ours):
        raise FinetuneError("the two generators have different architectures; interpolate a run's snapshot with "
                            "its own RUN/pretrained")
    G = copy.deepcopy(G_1)
    G.load_state_dict({k: torch.lerp(ours[k], v, alpha) if v.is_floating_point() else v for k, v in theirs.items()})
    return G.eval().requires_grad_(False)


def interpolate_run(run: str | Path, alphas: Sequence[float] = DEFAULT_ALPHAS, snapshot: str | Path | None = None,
                    seeds: Sequence[int] | None = None, reward: str | Path | None = None, oracle: str | None = None,
                    oracle_resolution: int | None = None, device: torch.device | str = "cpu",
                    progress: bool = True) -> dict[str, Any]:
    """Save and score ``G_alpha`` of ``run``'s ``snapshot`` (default: the latest) for each alpha.

    ``seeds`` default to the run's trajectory seeds, ``reward`` to the run's bundle (None and a control
    run: no reward column), ``oracle`` (auto, on, off) to the run's own setting.
    Returns the summary also written to ``RUN/interpolate/<iteration>/summary.json``.
    """
    from tqdm import tqdm

    from nerfsculpt.finetune.monitor import OracleTrajectory
    from nerfsculpt.finetune.run import CONFIG_FILE, PRETRAINED_DIR, load_reward, oracle_applies
    from nerfsculpt.finetune.snapshot import latest_snapshot
    from nerfsculpt.generator.checkpoint import load_generator, save_network
    from nerfsculpt.reward.scoring import score_seeds

    run, device = Path(run), torch.device(device)
    if not (run / CONFIG_FILE).is_file() or not (run / PRETRAINED_DIR).is_dir():
        raise FinetuneError(f"{run} is not a fine-tuning run directory (needs {CONFIG_FILE} and {PRETRAINED_DIR}/)")
    alphas = sorted({float(a) for a in alphas})
    if not alphas or any(not 0 < a <= 1 for a in alphas):
        raise FinetuneError(f"alphas must lie in (0, 1], got {alphas}")
    saved = json.loads((run / CONFIG_FILE).read_text())
    snapshot = Path(snapshot) if snapshot is not None else latest_snapshot(run)
    if snapshot is None:
        raise FinetuneError(f"{run} has no snapshot yet; let the run reach its first snapshot")
    seeds = tuple(saved["config"]["trajectory_seeds"] if seeds is None else seeds)
    if not seeds:
        raise FinetuneError("no seeds to score: pass seeds (the run tracked no trajectory seeds)")
    reward = reward if reward is not None else saved.get("reward")
    bundle = load_reward(reward, device) if reward else None
    G_0 = load_generator(run / PRETRAINED_DIR, device)
    G_1 = load_generator(snapshot, device)
    gold = OracleTrajectory(G_0, seeds, oracle_resolution or saved["config"]["oracle_resolution"]) if (
        oracle_applies(oracle or saved["config"]["oracle"], G_0)) else None

    out = run / "interpolate" / snapshot.name
    rows = []
    for alpha in tqdm([0.0, *alphas], disable=not progress, unit="alpha", desc="interpolate"):
        G = G_0 if alpha == 0 else interpolate_generators(G_0, G_1, alpha)
        row: dict[str, Any] = {"alpha": alpha, "generator": str(run / PRETRAINED_DIR) if alpha == 0 else
                               str(out / f"alpha-{alpha:.2f}")}
        if alpha > 0:
            save_network(row["generator"], G_ema=G, overwrite=True,
                         meta={"interpolated": {"run": str(run), "snapshot": str(snapshot), "alpha": alpha}})
        if bundle is not None:
            rewards = score_seeds(bundle, G, seeds, psi=1.0, batch=4)  # (S,)
            row.update(reward_mean=float(rewards.mean()), reward_std=float(rewards.std()))
        if gold is not None:
            scores, drift = gold.score(G)
            row.update(oracle_quality_mean=float(scores.quality.mean()), sigma_drift=float(drift.mean()))
        rows.append(row)
    summary = {"run": str(run), "snapshot": str(snapshot), "seeds": [seeds[0], seeds[-1], len(seeds)],
               "reward": str(reward) if bundle is not None else None, "oracle": gold is not None, "alphas": rows}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def interpolation_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table, one row per alpha."""
    columns = [c for c in ("reward_mean", "oracle_quality_mean", "sigma_drift") if c in summary["alphas"][0]]
    lines = ["| alpha | " + " | ".join(columns) + " | generator |", "|---" * (len(columns) + 2) + "|"]
    for row in summary["alphas"]:
        lines.append(f"| {row['alpha']:.2f} | " + " | ".join(f"{row[c]:.4f}" for c in columns) +
                     f" | {row['generator']} |")
    return "\n".join(lines) + "\n"
