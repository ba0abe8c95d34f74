"""``nerfsculpt reward ...``: reward bundles -- import the paper's released model, score geometry.

Imports nothing heavy at import time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any

from nerfsculpt.cli.common import (
    HelpFormatter,
    UsageError,
    add_config_options,
    add_run_options,
    command_group,
    config_from_args,
    resolve_device,
    torchrun_session,
    usage,
)


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
    """Score geometry with a reward bundle; writes a CSV of seed,reward (an ensemble: seed,reward,reward_std,member_k).

        nerfsculpt reward score --bundle runs/reward --generator synthetic --seeds 0-99 --out scores.csv
        nerfsculpt reward score --bundle runs/reward-paper --generator ffhq512-128.pkl --seeds 0-9 --psi 0.7
        nerfsculpt reward score --bundle runs/reward --bank bank/ --out scores.csv

    From a generator, each seed's latent z = RandomState(seed).randn(1, z_dim) is mapped at the
    canonical camera with the bundle's truncation cutoff and noise mode, at --psi (default: the psi
    the reward was trained on); sigma is sampled on the reward slab exactly as in training. From a
    bank, its slabs are scored after checking they were cut and sampled the same way.

    An ensemble bundle of K members writes seed,reward,reward_std,member_0,...,member_{K-1}: reward
    is the members' mean, reward_std their population standard deviation (divided by K, not K - 1).
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
    from nerfsculpt.reward.scoring import score_bank_members, score_seeds_members

    device = resolve_device(args.device)
    bundle = load_bundle(args.bundle, device=device, representation="sigma_slab")
    if args.bank is not None:
        from nerfsculpt.geometry.bank import open_bank

        seeds, members = score_bank_members(bundle, open_bank(args.bank), seeds, batch=args.batch,
                                            progress=not args.no_progress)
    else:
        from nerfsculpt.generator.builtin import resolve_generator

        G, _ = resolve_generator(args.generator, device)
        members = score_seeds_members(bundle, G, seeds, psi=args.psi, batch=args.batch, progress=not args.no_progress)
    rewards = members.mean(0)  # (K, S) -> (S,)
    scores = dict(zip(seeds, rewards.tolist(), strict=True))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if bundle.members == 1:
        writer.writerow(["seed", "reward"])
        writer.writerows((seed, f"{value:.6f}") for seed, value in scores.items())
    else:
        spread = members.std(0, correction=0)  # population standard deviation over the K members, (S,)
        writer.writerow(["seed", "reward", "reward_std", *(f"member_{k}" for k in range(bundle.members))])
        for seed, value, std, each in zip(seeds, rewards.tolist(), spread.tolist(), members.T.tolist(), strict=True):
            writer.writerow([seed, f"{value:.6f}", f"{std:.6f}", *(f"{r:.6f}" for r in each)])  # each: (K,)
    if args.out:
        from nerfsculpt.atomic import write_atomic

        write_atomic(args.out, text.getvalue().encode())
        values = sorted(scores.values())
        print(f"wrote {len(scores)} rewards to {args.out} (median {values[len(values) // 2]:.3f}, "
              f"min {values[0]:.3f}, max {values[-1]:.3f})")
    else:
        print(text.getvalue(), end="")
    return 0


def cmd_reward_train(args: argparse.Namespace) -> int:
    """Train a sigma reward on a study's rankings; writes OUT/bundle and the Table-1 report.

        nerfsculpt synthetic preferences --db prefs.sqlite          # simulated rankings of 'synthetic'
        nerfsculpt reward train --db prefs.sqlite --out runs/reward --model small --slab-resolution 64 \\
            --lr 1e-3 --batch 4       # CPU-sized; the defaults are the paper's (GPU)
        nerfsculpt reward train --db paper.sqlite --generator ffhq512-128.pkl --out runs/paper --device cuda
        torchrun --nproc_per_node 2 -m nerfsculpt reward train --db paper.sqlite ...  # K GPUs: batch K x --batch
        nerfsculpt reward train --db prefs.sqlite --out runs/ens --model small --slab-resolution 64 --ensemble 4

    Answers become ranked lists (best/worst, or --pairs full), split 70/15/15 by question (the
    reference's partition) or by annotator, each list with a high-quality anchor (seeds
    100000-100999 at psi 0.25, split 700/150/150). Slabs come from the study's generator (computed
    once, cached as float16 under OUT/slab_cache) or from --bank directories (one per psi).
    Defaults are the paper's: objective 'paper' (Eq. 4 + 1e-2 L1 reconstruction), Adam 1e-5, weight
    decay 1e-4, batch 1, <= 10 epochs, early stopping after 3 epochs without a lower validation
    loss, seed 42. Rerunning with the same --out resumes.

    --ensemble K trains K networks of the same --model, member k with seed --seed + k (and, with
    --bootstrap, on its own bootstrap resample of the training lists), each in its resumable run
    OUT/member-<k> (finished members are not retrained), sharing OUT/slab_cache; OUT/bundle holds
    all of them and scores with their mean (Coste et al. 2023; docs/reward.md "Ensembles").
    """
    import dataclasses

    from nerfsculpt.reward.config import (
        MODELS,
        EnsembleConfig,
        RewardDataConfig,
        RewardModelConfig,
        RewardTrainConfig,
    )

    model, data = config_from_args(RewardModelConfig, args), config_from_args(RewardDataConfig, args)
    batch = {} if hasattr(args, "batch") else {"batch": MODELS[model.model][1]}  # the paper's for the model
    config = config_from_args(RewardTrainConfig, args, **batch)
    ensemble = config_from_args(EnsembleConfig, args)
    try:
        from nerfsculpt.reward.pipeline import check_slab_fits

        for part in (model, config, ensemble):
            part.validate()
        check_slab_fits(model.model, model.slab_resolution)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.dry_run:
        print(json.dumps({"db": args.db, "out": args.out, "device": args.device, "model": dataclasses.asdict(model),
                          "data": dataclasses.asdict(data), "train_config": dataclasses.asdict(config),
                          "ensemble_config": dataclasses.asdict(ensemble)}, indent=2, default=str))
        return 0
    from nerfsculpt.reward.pipeline import train_reward

    with torchrun_session(args.device) as session:
        result = train_reward(args.db, args.out, model, data, config, ensemble, device=session.device,
                              progress=not args.no_progress and session.rank == 0)
    if result["bundle"] is not None:
        print(f"{result['report']}bundle: {result['bundle']}")
    return 0


def cmd_reward_eval(args: argparse.Namespace) -> int:
    """Table-1 accuracies of a reward bundle on a study's split (scalar and pair heads, 95 % CIs).

        nerfsculpt reward eval --bundle runs/reward/bundle --db prefs.sqlite
        nerfsculpt reward eval --bundle runs/paper/bundle --db paper.sqlite --generator ffhq512-128.pkl --split val

    The split is recomputed as in training (same --pairs, --split-by, --split-seed); "all pairs"
    uses the anchored lists (one anchor each, fixed draw), "regular only" the (winner, loser) pairs.
    """
    from nerfsculpt.atomic import write_atomic
    from nerfsculpt.reward.config import RewardDataConfig
    from nerfsculpt.reward.pipeline import evaluate_reward
    from nerfsculpt.reward.train import format_table

    result = evaluate_reward(args.bundle, args.db, config_from_args(RewardDataConfig, args), split=args.split,
                             objective=args.objective, anchors=not args.no_anchors, device=resolve_device(args.device),
                             progress=not args.no_progress)
    if args.out:
        write_atomic(args.out, (json.dumps({args.split: result}, indent=2) + "\n").encode())
    print(format_table({args.split: result}))
    return 0


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    from nerfsculpt.reward.config import RewardDataConfig

    p.add_argument("--db", required=True, metavar="SQLITE", help="preference database")
    add_config_options(p, RewardDataConfig, metavars={"bank": "DIR"},
                       helps={"bank": "read slabs from sample banks instead (repeat: one bank per psi, e.g. the "
                                      "anchors'); needed for depth maps and point clouds"})
    add_run_options(p, dry_run=False)


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register the reward command group."""
    group = command_group(subparsers, common, "reward",
                          "sigma reward models: train (Bradley-Terry), evaluate, score, import",
                          "Reward models read geometry (the sigma slab) and return a quality score; they learn\n"
                          "from ranked preferences with the paper's Bradley-Terry objective.\n\n"
                          "    nerfsculpt reward train --db prefs.sqlite --out runs/reward\n"
                          "    nerfsculpt reward eval --bundle runs/reward/bundle --db prefs.sqlite\n"
                          "    nerfsculpt reward import-reference RELEASE_DIR runs/reward-paper\n"
                          "    nerfsculpt reward score --bundle runs/reward-paper --generator G.pkl --seeds 0-9")
    p = group.add_parser("import-reference", parents=[common], help="the paper's released reward -> a bundle",
                         description=usage(cmd_reward_import_reference.__doc__), formatter_class=HelpFormatter)
    p.add_argument("release", metavar="RELEASE_DIR", help="directory with best_model.pt and run_config.yaml")
    p.add_argument("out", metavar="OUT", help="bundle directory to write (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at OUT")
    p.set_defaults(handler=cmd_reward_import_reference, command="reward import-reference")

    p = group.add_parser("score", parents=[common], help="score a generator's seeds or a bank's slabs",
                         description=usage(cmd_reward_score.__doc__), formatter_class=HelpFormatter)
    p.add_argument("--bundle", required=True, metavar="DIR", help="reward bundle (config.json + model.safetensors)")
    p.add_argument("--generator", default=None, metavar="PATH|NAME", help="generator to sample (with --seeds)")
    p.add_argument("--bank", default=None, metavar="DIR", help="sample bank whose slabs to score")
    p.add_argument("--seeds", default=None, metavar="LIST", help="seeds, e.g. 0-99,120 (bank: default all)")
    p.add_argument("--psi", type=float, default=None, help="truncation psi (default: the bundle's training psi)")
    p.add_argument("--batch", type=int, default=1, help="samples per forward pass")
    p.add_argument("--out", default=None, metavar="CSV", help="write seed,reward here (default: print)")
    add_run_options(p, dry_run=True)
    p.set_defaults(handler=cmd_reward_score, command="reward score")

    from nerfsculpt.reward.config import EnsembleConfig, RewardModelConfig, RewardTrainConfig

    p = group.add_parser("train", parents=[common], help="train a sigma reward on a study's rankings",
                         description=usage(cmd_reward_train.__doc__), formatter_class=HelpFormatter)
    _add_data_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (resumed if it has a checkpoint)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration, do nothing")
    add_config_options(p.add_argument_group("the network and its input"), RewardModelConfig,
                       metavars={"resnet_weights": "FILE"})
    add_config_options(p.add_argument_group("optimisation (the paper's defaults, GPU-sized)"), RewardTrainConfig,
                       unset=("batch",), aliases={"max_epochs": "--epochs"},
                       helps={"batch": "Ranked lists per step (default: the paper's for --model: sigma 1, depth 8, "
                                       "PointNet 4, PointNet++ 2)"})
    add_config_options(p.add_argument_group("ensembles (docs/reward.md)"), EnsembleConfig, metavars={"members": "K"},
                       flags={"members": "--ensemble"})
    p.set_defaults(handler=cmd_reward_train, command="reward train")

    p = group.add_parser("eval", parents=[common], help="Table-1 accuracies of a bundle on a study's split",
                         description=usage(cmd_reward_eval.__doc__), formatter_class=HelpFormatter)
    p.add_argument("--bundle", required=True, metavar="DIR", help="reward bundle")
    _add_data_arguments(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="partition to evaluate")
    p.add_argument("--objective", default="paper", choices=("paper", "reference"), help="loss reported beside")
    p.add_argument("--no-anchors", action="store_true", help="evaluate [winner, loser] lists only")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the result here")
    p.set_defaults(handler=cmd_reward_eval, command="reward eval")
