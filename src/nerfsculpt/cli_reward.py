"""``nerfsculpt reward ...``: reward bundles -- import the paper's released model, score geometry.

Registered by ``cli.build_parser``; imports nothing heavy at import time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any

from nerfsculpt.cli import UsageError, _HelpFormatter, _resolve_device, _usage, command_group


def cmd_reward_import_reference(args: argparse.Namespace) -> int:
    """Convert the paper's released reward (best_model.pt + run_config.yaml) into a nerfsculpt bundle.

        nerfsculpt reward import-reference CM/RWD_MODELS_FOR_TUNING/7wnzkgie runs/reward-paper

    The .pt file is read with torch.load(weights_only=True) (tensors only, no code runs), the
    architecture is read off the weights and checked against the run config, and the weights load
    strictly. The bundle (model.safetensors + config.json) scores identically to the reference
    network and records the released model's input transforms (reward slab at 256^3 on EG3D's
    sampling grid, min-max 0-100, psi 1 / anchors 0.25, cutoff 14, const noise).
    """
    from nerfsculpt.reward.reference import import_reference

    out = import_reference(args.release, args.out, overwrite=args.overwrite)
    print(f"wrote the reward bundle {out} (score with 'nerfsculpt reward score --bundle {out} ...')")
    return 0


def cmd_reward_score(args: argparse.Namespace) -> int:
    """Score geometry with a reward bundle; writes a CSV of seed,reward.

        nerfsculpt reward score --bundle runs/reward --generator synthetic --seeds 0-99 --out scores.csv
        nerfsculpt reward score --bundle runs/reward-paper --generator ffhq512-128.pkl --seeds 0-9 --psi 0.7
        nerfsculpt reward score --bundle runs/reward --bank bank/ --out scores.csv

    From a generator, each seed's latent z = RandomState(seed).randn(1, z_dim) is mapped at the
    canonical camera with the bundle's truncation cutoff and noise mode, at --psi (default: the psi
    the reward was trained on); sigma is sampled on the reward slab exactly as in training. From a
    bank, its slabs are scored after checking they were cut and sampled the same way.
    """
    from nerfsculpt.latents import parse_seeds

    if (args.bank is None) == (args.generator is None):
        raise UsageError("give either --bank or --generator (with --seeds)")
    seeds = None
    if args.seeds is not None:
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as error:
            raise UsageError(f"--seeds: {error}") from None
    if args.generator is not None and seeds is None:
        raise UsageError("--generator needs --seeds (e.g. --seeds 0-99)")
    if args.dry_run:
        print(json.dumps({k: v for k, v in vars(args).items() if k not in ("handler",)}, indent=2, default=str))
        return 0
    from nerfsculpt.reward.bundle import load_bundle
    from nerfsculpt.reward.scoring import score_bank, score_seeds

    device = _resolve_device(args.device, 0, 1)
    bundle = load_bundle(args.bundle, device=device, representation="sigma_slab")
    if args.bank is not None:
        from nerfsculpt.geometry.bank import open_bank

        scores = score_bank(bundle, open_bank(args.bank), seeds, batch=args.batch, progress=not args.no_progress)
    else:
        from nerfsculpt.generator.builtin import resolve_generator

        G, _ = resolve_generator(args.generator, device)
        rewards = score_seeds(bundle, G, seeds, psi=args.psi, batch=args.batch, progress=not args.no_progress)
        scores = dict(zip(seeds, rewards.tolist(), strict=True))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["seed", "reward"])
    writer.writerows((seed, f"{value:.6f}") for seed, value in scores.items())
    if args.out:
        from nerfsculpt.atomic import write_atomic

        write_atomic(args.out, text.getvalue().encode())
        values = sorted(scores.values())
        print(f"wrote {len(scores)} rewards to {args.out} (median {values[len(values) // 2]:.3f}, "
              f"min {values[0]:.3f}, max {values[-1]:.3f})")
    else:
        print(text.getvalue(), end="")
    return 0


def add_reward_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    group = command_group(subparsers, common, "reward", "reward models: import the paper's, score geometry",
                          "Reward models read geometry (the sigma slab) and return a quality score.\n\n"
                          "    nerfsculpt reward import-reference RELEASE_DIR runs/reward-paper\n"
                          "    nerfsculpt reward score --bundle runs/reward-paper --generator G.pkl --seeds 0-9")
    p = group.add_parser("import-reference", parents=[common], help="the paper's released reward -> a bundle",
                         description=_usage(cmd_reward_import_reference.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("release", metavar="RELEASE_DIR", help="directory with best_model.pt and run_config.yaml")
    p.add_argument("out", metavar="OUT", help="bundle directory to write (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at OUT")
    p.set_defaults(handler=cmd_reward_import_reference, command="reward import-reference")

    p = group.add_parser("score", parents=[common], help="score a generator's seeds or a bank's slabs",
                         description=_usage(cmd_reward_score.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("--bundle", required=True, metavar="DIR", help="reward bundle (config.json + model.safetensors)")
    p.add_argument("--generator", default=None, metavar="PATH|NAME", help="generator to sample (with --seeds)")
    p.add_argument("--bank", default=None, metavar="DIR", help="sample bank whose slabs to score")
    p.add_argument("--seeds", default=None, metavar="LIST", help="seeds, e.g. 0-99,120 (bank: default all)")
    p.add_argument("--psi", type=float, default=None, help="truncation psi (default: the bundle's training psi)")
    p.add_argument("--batch", type=int, default=1, help="samples per forward pass")
    p.add_argument("--out", default=None, metavar="CSV", help="write seed,reward here (default: print)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration, do nothing")
    p.set_defaults(handler=cmd_reward_score, command="reward score")
