"""Score geometry with a reward bundle: from a generator and seeds, or from a sample bank.

Both paths give the network exactly the input it was trained on (``RewardBundle.prepare_slabs``):
the bundle's slab crop and sampling grid, min-max 0-100, (Z, Y, X) order. From a generator, the
latents follow the bundle's rules too (canonical camera, truncation cutoff, noise mode); psi
defaults to the bundle's ``psi`` and may be set per call (the paper scores psi 0.7 samples with a
reward trained at psi 1).

An ensemble bundle's reward is the mean of its K members; the ``*_members`` functions return every
member's reward ([K, S]; [1, S] for a single network).

Example::

    bundle = load_bundle("runs/reward")
    G, _ = resolve_generator("synthetic")
    rewards = score_seeds(bundle, G, range(10))            # [10]
    members = score_seeds_members(bundle, G, range(10))    # [K, 10]
    rewards = score_bank(bundle, open_bank("bank"))        # {seed: reward}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nerfsculpt.latents import ws_from_seeds
from nerfsculpt.reward.bundle import BundleError, Extraction, RewardBundle


def score_seeds(bundle: RewardBundle, G: nn.Module, seeds: Sequence[int], psi: float | None = None,
                batch: int = 1, progress: bool = False) -> Tensor:  # -> [len(seeds)]
    """Rewards of a generator's samples ``z = RandomState(seed).randn(1, z_dim)``, ``batch`` latents at a time
    (an ensemble's: the mean over its members)."""
    return score_seeds_members(bundle, G, seeds, psi, batch, progress).mean(0)


def score_seeds_members(bundle: RewardBundle, G: nn.Module, seeds: Sequence[int], psi: float | None = None,
                        batch: int = 1, progress: bool = False) -> Tensor:  # -> [K, len(seeds)]
    """Every member's rewards of a generator's samples, as :func:`score_seeds`; [1, S] for a single network."""
    from tqdm import tqdm

    from nerfsculpt.geometry.sigma import reward_slab

    ext = bundle.extraction
    psi = ext.psi if psi is None else float(psi)
    spec = dataclasses.replace(ext.slab_spec, cube_length=float(G.rendering_kwargs["box_warp"]))
    seeds = list(seeds)
    rewards = []
    with torch.no_grad(), tqdm(total=len(seeds), disable=not progress, unit="seed", desc="score") as bar:
        for start in range(0, len(seeds), batch):
            chunk = seeds[start : start + batch]
            ws = ws_from_seeds(G, chunk, psi, ext.truncation_cutoff)
            slab = reward_slab(G, ws, spec, noise_mode=ext.noise_mode, eg3d_grid=ext.eg3d_grid)  # (B, X, Y, Z)
            rewards.append(bundle.score_slabs_members(slab))  # (K, B)
            bar.update(len(chunk))
    return torch.cat(rewards, dim=1)  # (K, S)


def check_bank_matches(extraction: Extraction, manifest: dict) -> None:
    """Raise BundleError unless the bank's slabs were cut and sampled as ``extraction`` says (a reward's inputs)."""
    slab = manifest.get("extraction", {}).get("slab")
    if slab is None:
        raise BundleError("the bank has no reward slabs; add them with 'nerfsculpt sample --what slab ...'")
    ours = dataclasses.asdict(extraction.slab_spec)
    theirs = dict(slab["spec"])
    theirs["cube_length"] = ours["cube_length"] = None  # the crop is of the generator's box, whatever its size
    if theirs != ours:
        raise BundleError(f"the bank's slab crop {slab['spec']} differs from the reward's {extraction.slab}; "
                          f"sample a bank with the reward's slab resolution")
    grid = "eg3d" if extraction.eg3d_grid else "exact"
    if slab["grid"] != grid:
        raise BundleError(f"the bank's slabs were sampled on the {slab['grid']!r} grid, the reward reads the "
                          f"{grid!r} grid; resample the bank with --slab-grid {grid}")


def score_bank(bundle: RewardBundle, bank, seeds: Sequence[int] | None = None, batch: int = 1,
               progress: bool = False) -> dict[int, float]:
    """Rewards of a bank's slabs: {seed: reward} for ``seeds`` (default: every seed with a finished slab);
    an ensemble's: the mean over its members."""
    seeds, members = score_bank_members(bundle, bank, seeds, batch, progress)
    return dict(zip(seeds, members.mean(0).tolist(), strict=True))


def score_bank_members(bundle: RewardBundle, bank, seeds: Sequence[int] | None = None, batch: int = 1,
                       progress: bool = False) -> tuple[list[int], Tensor]:  # -> (S seeds, [K, S])
    """The seeds scored and every member's rewards of their slabs, as :func:`score_bank`."""
    from tqdm import tqdm

    check_bank_matches(bundle.extraction, bank.manifest)
    seeds = bank.seeds(["slab"]) if seeds is None else list(seeds)
    if not seeds:
        raise BundleError(f"{bank.path} has no finished slabs to score")
    rewards = []
    for start in tqdm(range(0, len(seeds), batch), disable=not progress, unit="batch", desc="score"):
        chunk = seeds[start : start + batch]
        slabs = torch.stack([bank.load(seed, "slab") for seed in chunk])  # (B, X, Y, Z)
        rewards.append(bundle.score_slabs_members(slabs))  # (K, B)
    return seeds, torch.cat(rewards, dim=1)  # (K, S)
