"""Benchmark: the reward step of fine-tuning at full size, nerfsculpt's path vs the reference's approach.

One reward step = forward and backward of -clamp(r(slab(G(z))), -10, 10) for one latent (batch 1
on CPU; the paper's batch is 16 micro-batches of this), with the full-size FFHQ generator
(``ffhq512_config``, random weights: time and memory do not depend on the values) and the
full-size sigma reward (12.7M parameters) on the 128 x 141 x 129 reward slab at 256^3 on EG3D's
grid. The two paths compute the same reward:

- ``reference``: the slab's 2.3M points in three chunks of at most 1e6, each chunk re-running
  mapping + backbone + decoder with its full autograd graph kept (reference_method.md §5.3), then
  the concatenated slab normalised and scored;
- ``nerfsculpt``: ``finetune.objective.GeometryTerms``: mapping + backbone once, the decoder in
  checkpointed chunks (``geometry.sigma.reward_slab(differentiable=True)``), the reward network with
  activation checkpointing (``reward_checkpointing``, the default);
- ``nerfsculpt-no-reward-ckpt``: the same with the reward network's activations kept
  (``--no-reward-checkpointing``): faster, more memory;
- ``nerfsculpt-exact-grid``: the default path for a reward trained on the exact grid (``reward train
  --slab-grid exact``): the tri-plane lookups factorise (3 R^2 instead of 3 R^3 bilinear samples),
  which removes most of the slab's cost. The paper's released reward reads EG3D's grid.

Each path runs in a fresh subprocess; on CPU the peak is the process's resident set size with
glibc serving allocations above 64 KiB by mmap (as ``benchmarks/reward_memory.py``), and the idle
process (networks built) is subtracted to give the step's own memory. Target: >= 2x faster and
>= 2x less memory. Usage::

    python benchmarks/finetune_step.py                  # CPU, both paths, 2 steps each (takes minutes)
    python benchmarks/finetune_step.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _measure import peak_mib, timed_steps

PATHS = ("reference", "nerfsculpt", "nerfsculpt-no-reward-ckpt", "nerfsculpt-exact-grid")


def _build(device: str, reward_checkpointing: bool = True, eg3d_grid: bool = True):
    import copy

    import torch

    from nerfsculpt.finetune.config import FinetuneConfig
    from nerfsculpt.finetune.objective import GeometryTerms
    from nerfsculpt.generator.config import ffhq512_config
    from nerfsculpt.generator.triplane import TriPlaneGenerator
    from nerfsculpt.reward.bundle import Extraction, RewardBundle
    from nerfsculpt.reward.sigma_net import SigmaRewardNet

    torch.manual_seed(0)
    G = TriPlaneGenerator(ffhq512_config()).to(device).train()
    reward = RewardBundle(SigmaRewardNet().to(device).eval(), Extraction(eg3d_grid=eg3d_grid), {})
    config = FinetuneConfig(data_free=True, lambda_c=0.0, reward_checkpointing=reward_checkpointing)  # L_r alone
    terms = GeometryTerms(config, reward, copy.deepcopy(G))  # G_old (frozen; unused without L_c)
    z = torch.randn(1, G.z_dim, device=device)
    return G, reward, terms, z


def _reference_step(G, reward, z) -> None:
    """Three chunks, each re-running mapping + backbone with its full graph (the reference's G_depth)."""
    import torch

    from nerfsculpt.camera import canonical_camera
    from nerfsculpt.finetune.losses import clamped_reward_loss
    from nerfsculpt.geometry.slab import reward_slab_coordinates
    from nerfsculpt.reward.sigma_net import sigma_input

    xyz = reward_slab_coordinates(eg3d_grid=True).to(z.device)  # (2328192, 3)
    c = canonical_camera(device=z.device)
    sigma = []
    for chunk in xyz.split(1_000_000):
        ws = G.mapping(z, c, truncation_psi=1.0, truncation_cutoff=14)
        sigma.append(G.sample_mixed(chunk[None], None, ws, noise_mode="const")["sigma"][0, :, 0])
    slab = torch.cat(sigma).reshape(1, *reward.extraction.slab_spec.shape)  # (1, X, Y, Z)
    clamped_reward_loss(reward.model(sigma_input(slab)).reshape(1)).backward()


def _child(path: str, device: str, steps: int) -> dict:
    import torch

    G, reward, terms, z = _build(device, reward_checkpointing=path != "nerfsculpt-no-reward-ckpt",
                                 eg3d_grid=path != "nerfsculpt-exact-grid")
    idle = peak_mib(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        idle = torch.cuda.memory_allocated() / 2**20

    def step() -> None:
        if path == "reference":
            _reference_step(G, reward, z)
        else:
            loss, _ = terms(G, z)
            loss.backward()
        G.zero_grad(set_to_none=True)

    step_s = timed_steps(step, device, steps)
    peak = peak_mib(device)
    return {"path": path, "peak_mib": peak, "idle_mib": idle, "step_s": step_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=2, help="steps per path (the fastest is reported)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.device, args.steps)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    rows = {}
    for path in PATHS:
        out = subprocess.run([sys.executable, __file__, "--child", path, "--device", args.device, "--steps",
                              str(args.steps)], capture_output=True, text=True, env=env, check=True)
        rows[path] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"reward step, full-size generator + reward, batch 1, {args.device}")
    print(f"{'path':<28}{'step (s)':>10}{'peak (MiB)':>12}{'above idle (MiB)':>18}{'speed-up':>10}{'memory':>8}")
    ref = rows["reference"]
    for path, r in rows.items():
        above = r["peak_mib"] - r["idle_mib"]
        print(f"{path:<28}{r['step_s']:>10.2f}{r['peak_mib']:>12.0f}{above:>18.0f}"
              f"{ref['step_s'] / r['step_s']:>9.2f}x{(ref['peak_mib'] - ref['idle_mib']) / above:>7.2f}x")
    print("speed-up = reference time / path time; memory = reference / path memory above idle")


if __name__ == "__main__":
    main()
