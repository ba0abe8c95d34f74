"""What a fine-tuning run writes every tick: reward trajectories of fixed seeds, an image grid, a few meshes.

- ``RUN/rewards/tick-<k>.csv``: seed,reward of ``trajectory_seeds`` (300000-300199) scored on G_ema at
  psi 1, canonical camera, constant noise (the paper's Fig. 8; reference_method.md §5.7);
- ``RUN/images/tick-<k>.png``: G_ema's images of ``image_seeds`` (rows) from the front and at yaw
  -0.5 / +0.5 rad (columns), psi 1, constant noise;
- ``RUN/meshes/tick-<k>/seed-<s>.ply``: the sigma = 10 surface of ``mesh_seeds`` at psi 0.7 (§7.9).
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


def reward_trajectory(run: Path, tick: int, reward: RewardBundle, G_ema: nn.Module, seeds: tuple[int, ...],
                      clamp: float) -> dict[str, Any]:
    """Score ``seeds`` on G_ema at psi 1, write ``rewards/tick-<k>.csv``; returns summary statistics."""
    from nerfsculpt.reward.scoring import score_seeds

    rewards = score_seeds(reward, G_ema, seeds, psi=1.0, batch=4)  # (S,)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["seed", "reward"])
    writer.writerows((seed, f"{value:.6f}") for seed, value in zip(seeds, rewards.tolist(), strict=True))
    (run / "rewards").mkdir(exist_ok=True)
    write_atomic(run / "rewards" / f"tick-{tick:06d}.csv", text.getvalue().encode())
    q1, q3 = torch.quantile(rewards, torch.tensor([0.25, 0.75])).tolist()
    inliers = rewards[(rewards >= q1 - 1.5 * (q3 - q1)) & (rewards <= q3 + 1.5 * (q3 - q1))]
    return {"traj_reward_mean": float(rewards.mean()), "traj_reward_median": float(rewards.median()),
            "traj_reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            "traj_clamp_rate": clamp_rate(rewards, clamp),
            "traj_iqr_mean": float(inliers.mean()), "traj_iqr_std": float(inliers.std()) if len(inliers) > 1 else 0.0}


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
    return save_png(run / "images" / f"tick-{tick:06d}.png", np.concatenate(rows, axis=0))


def tick_meshes(run: Path, tick: int, G_ema: nn.Module, seeds: tuple[int, ...], resolution: int) -> list[Path]:
    """Write ``meshes/tick-<k>/seed-<s>.ply``: sigma = 10 surfaces at psi 0.7 ("eg3d" border cleared)."""
    from nerfsculpt.geometry.mesh import extract_mesh, save_mesh
    from nerfsculpt.geometry.sigma import sigma_grid

    directory = run / "meshes" / f"tick-{tick:06d}"
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
