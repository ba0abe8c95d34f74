"""What a fine-tuning run writes every tick: reward trajectories of fixed seeds, an image grid, a few meshes.

- ``RUN/rewards/tick-<k>.csv``: seed,reward of ``trajectory_seeds`` (300000-300199) scored on G_ema at
  psi 1, canonical camera, constant noise (the paper's Fig. 8; docs/method/reference_method.md §5.7); with an
  ensemble reward the log also has ``traj_disagreement``, the mean over seeds of the members' std, each
  member in units of its own tick-0 std;
- ``RUN/images/tick-<k>.png``: G_ema's images of ``image_seeds`` (rows) from the front and at yaw
  -0.5 / +0.5 rad (columns), psi 1, constant noise;
- ``RUN/meshes/tick-<k>/seed-<s>.ply``: the sigma = 10 surface of ``mesh_seeds`` at psi 0.7 (§7.9);
- ``RUN/oracle/tick-<k>.csv`` (the gold curve, on the synthetic benchmark): the geometry oracle's
  quality and defect scores of the trajectory seeds' sigma on G_ema, and each seed's sigma drift
  from the pretrained generator; ``RUN/gold_curve.png`` plots them against the reward (``figures``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nerfsculpt.atomic import write_atomic
from nerfsculpt.camera import canonical_camera, look_at_pose, make_label, split_label
from nerfsculpt.finetune.losses import clamp_rate
from nerfsculpt.latents import ws_from_seeds
from nerfsculpt.reward.bundle import RewardBundle

GRID_YAWS = (0.0, -0.5, 0.5)
"""Columns of the per-tick image grid: yaw offsets (rad) from the front view."""
MESH_PSI = 0.7

TICK_NAME = "tick-{tick:06d}"
"""Stem of every per-tick file of a run: rewards/, oracle/, images/ (PNG), meshes/ (a folder)."""


def logged_ticks(run: str | Path, folder: str) -> list[int]:
    """The ticks with a ``RUN/folder/tick-NNNNNN.csv``, sorted (other files are ignored)."""
    stems = (p.stem.removeprefix("tick-") for p in (Path(run) / folder).glob("tick-*.csv"))
    return sorted(int(stem) for stem in stems if stem.isdigit())


def read_tick_table(run: str | Path, folder: str, tick: int) -> dict[int, dict[str, float]]:
    """``RUN/folder/tick-NNNNNN.csv`` as {seed: {column: value}}."""
    with (Path(run) / folder / f"{TICK_NAME.format(tick=tick)}.csv").open(newline="") as f:
        return {int(row["seed"]): {k: float(v) for k, v in row.items() if k != "seed"} for row in csv.DictReader(f)}


def inlier_stats(values: torch.Tensor) -> tuple[float, float]:  # [S] -> (mean, std)
    """Mean and std of the values within 1.5 IQR of the quartiles (the reference's ``normalise_scalar_rwd``)."""
    q1, q3 = torch.quantile(values, torch.tensor([0.25, 0.75])).tolist()
    inliers = values[(values >= q1 - 1.5 * (q3 - q1)) & (values <= q3 + 1.5 * (q3 - q1))]
    return float(inliers.mean()), float(inliers.std()) if len(inliers) > 1 else 0.0


def reward_trajectory(run: Path, tick: int, reward: RewardBundle, G_ema: nn.Module, seeds: tuple[int, ...],
                      clamp: float, prefix: str = "traj",
                      member_baseline: tuple[list[float], list[float]] | None = None) -> dict[str, Any]:
    """Score ``seeds`` on G_ema at psi 1, write ``rewards/tick-<k>.csv`` (``evaluator/`` for the held-out
    evaluator, ``prefix`` 'eval'); returns summary statistics ``<prefix>_reward_mean``, ...

    For an ensemble also each member's inlier mean and std (``member_iqr_mean``/``_std``: the per-member
    calibration at tick 0) and ``disagreement``: the members' std per seed, averaged over the seeds, with
    each member in units of its own ``member_baseline`` (tick 0's; this tick's when not given). Members of a
    Bradley-Terry ensemble differ by arbitrary offsets and scales, which this removes."""
    from nerfsculpt.reward.scoring import score_seeds_members

    members = score_seeds_members(reward, G_ema, seeds, psi=1.0, batch=4)  # (K, S)
    rewards = members.mean(dim=0)  # (S,)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["seed", "reward"])
    writer.writerows((seed, f"{value:.6f}") for seed, value in zip(seeds, rewards.tolist(), strict=True))
    folder = run / ("rewards" if prefix == "traj" else "evaluator")
    folder.mkdir(exist_ok=True)
    write_atomic(folder / f"{TICK_NAME.format(tick=tick)}.csv", text.getvalue().encode())
    iqr_mean, iqr_std = inlier_stats(rewards)
    stats = {"reward_mean": float(rewards.mean()), "reward_median": float(rewards.median()),
             "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0, "clamp_rate": clamp_rate(rewards, clamp),
             "iqr_mean": iqr_mean, "iqr_std": iqr_std}
    if len(members) > 1:  # the over-optimisation alarm: members disagree where the generator left their data
        own = [inlier_stats(m) for m in members]
        stats["member_iqr_mean"], stats["member_iqr_std"] = [m for m, _ in own], [s for _, s in own]
        means, stds = member_baseline or (stats["member_iqr_mean"], stats["member_iqr_std"])
        z = (members - torch.tensor(means)[:, None]) / torch.tensor(stds).clamp_min(1e-12)[:, None]  # (K, S)
        stats["disagreement"] = float(z.std(dim=0, correction=0).mean())
    return {f"{prefix}_{key}": value for key, value in stats.items()}


def grid_cameras(device: torch.device) -> torch.Tensor:  # -> [V, 25]
    """The canonical camera turned by :data:`GRID_YAWS` about the look-at point (same radius and focal)."""
    _, intrinsics = split_label(canonical_camera(device=device))  # (1, 3, 3)
    poses = look_at_pose(list(GRID_YAWS), 0.0, device=device)  # (V, 4, 4)
    return make_label(poses, intrinsics[0])


def image_grid(run: Path, tick: int, G_ema: nn.Module, seeds: tuple[int, ...]) -> Path:
    """Write ``images/tick-<k>.png``: one row per seed, one column per yaw of :data:`GRID_YAWS`."""
    from nerfsculpt.geometry.shading import render_rgb, save_png

    device = G_ema.dataset_label_std.device
    cameras = grid_cameras(device)  # (V, 25)
    with torch.no_grad():
        ws = ws_from_seeds(G_ema, seeds, psi=1.0)  # (S, num_ws, w_dim)
    rows = [np.concatenate(list(render_rgb(G_ema, ws[i : i + 1].expand(len(cameras), -1, -1), cameras)), axis=1)
            for i in range(len(seeds))]  # S x (H, V*W, 3)
    (run / "images").mkdir(exist_ok=True)
    return save_png(run / "images" / f"{TICK_NAME.format(tick=tick)}.png", np.concatenate(rows, axis=0))


def tick_meshes(run: Path, tick: int, G_ema: nn.Module, seeds: tuple[int, ...], resolution: int) -> list[Path]:
    """Write ``meshes/tick-<k>/seed-<s>.ply``: sigma = 10 surfaces at psi 0.7 ("eg3d" border cleared)."""
    from nerfsculpt.geometry.mesh import extract_mesh, save_mesh
    from nerfsculpt.geometry.sigma import sigma_grid

    directory = run / "meshes" / TICK_NAME.format(tick=tick)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        with torch.no_grad():
            cube = sigma_grid(G_ema, ws_from_seeds(G_ema, [seed], psi=MESH_PSI, cutoff=14), resolution)[0]
        try:
            mesh = extract_mesh(cube, level=10.0, cube_length=float(G_ema.rendering_kwargs["box_warp"]), border="eg3d")
        except ValueError:  # no surface at sigma = 10 for this seed
            continue
        paths.append(save_mesh(mesh, directory / f"seed-{seed:06d}.ply"))
    return paths


class OracleTrajectory:
    """The gold curve: the geometry oracle on the trajectory seeds' sigma of G_ema, every tick.

    On the synthetic benchmark the oracle is the ground truth that the learnt reward only
    approximates: a reward that climbs while the oracle's quality falls is reward over-optimisation.
    The sigma drift, mean |sigma(G_ema) - sigma(G_old)| over the seeds' cubes (psi 1, raw sigma), is
    how far the generator has moved (the GAN counterpart of RLHF's KL to the reference model).
    """

    def __init__(self, G_old: nn.Module, seeds: tuple[int, ...], resolution: int, batch: int = 4):
        from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig

        self.oracle = GeometryOracle(OracleConfig(resolution=resolution))
        self.seeds, self.batch = tuple(seeds), batch
        self.reference = self._cubes(G_old)  # (S, R, R, R) of the pretrained generator, kept for the drift

    def _cubes(self, G: nn.Module) -> torch.Tensor:  # -> [S, R, R, R]
        from nerfsculpt.geometry.sigma import sigma_grid

        resolution = self.oracle.config.resolution
        with torch.no_grad():
            return torch.cat([sigma_grid(G, ws_from_seeds(G, self.seeds[i : i + self.batch], psi=1.0), resolution)
                              for i in range(0, len(self.seeds), self.batch)]).cpu()

    def score(self, G: nn.Module) -> tuple[Any, torch.Tensor]:
        """(the oracle's scores of G's sigma on the seeds, each seed's sigma drift [S] from G_old)."""
        cubes = self._cubes(G)  # (S, R, R, R)
        return self.oracle(cubes), (cubes - self.reference).abs().mean(dim=(1, 2, 3))

    def __call__(self, run: Path, tick: int, G_ema: nn.Module) -> dict[str, Any]:
        """Score G_ema, write ``oracle/tick-<k>.csv``; returns the means (``oracle_quality_mean``, ...)."""
        from nerfsculpt.synthetic.heads import DEFECTS

        scores, drift = self.score(G_ema)  # drift: (S,)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["seed", "quality", *DEFECTS, "sigma_drift"])
        for i, seed in enumerate(self.seeds):
            writer.writerow([seed, f"{scores.quality[i].item():.6f}", *(f"{v:.6f}" for v in scores.scores[i].tolist()),
                             f"{drift[i].item():.6f}"])
        (run / "oracle").mkdir(exist_ok=True)
        write_atomic(run / "oracle" / f"{TICK_NAME.format(tick=tick)}.csv", text.getvalue().encode())
        means = {f"oracle_{name}_mean": float(scores.scores[:, k].mean()) for k, name in enumerate(DEFECTS)}
        return {"oracle_quality_mean": float(scores.quality.mean()), "oracle_quality_std": float(scores.quality.std()),
                **means, "sigma_drift": float(drift.mean())}
