"""``nerfsculpt reward ...``: reward bundles -- import the paper's released model, score geometry.

Registered by ``cli.build_parser``; imports nothing heavy at import time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any

from nerfsculpt.cli import UsageError, _HelpFormatter, _init_distributed, _resolve_device, _usage, command_group


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

    device = _resolve_device(args.device, 0, 1)
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


def _open_study(args: argparse.Namespace):
    from nerfsculpt.preferences.store import PreferenceStore

    try:
        store = PreferenceStore(args.db, create=False)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    return store, store.choose_study(args.study)


def _input_source(args: argparse.Namespace, extraction, store, study: str, device, cache_dir):
    """Where the reward's raw inputs come from: banks (--bank, one per psi; needed for depth maps and
    point clouds) or, for sigma slabs, the study's generator (--generator overrides its spec)."""
    from nerfsculpt.reward.bundle import BundleError
    from nerfsculpt.reward.data import BankInputs, GeneratorSlabs
    from nerfsculpt.reward.pipeline import study_generator

    if args.bank:
        from nerfsculpt.geometry.bank import open_bank

        return BankInputs([open_bank(b) for b in args.bank], extraction)
    if extraction.representation != "sigma_slab":
        raise UsageError(f"{extraction.representation} rewards read sample banks: pass --bank (one per psi, made "
                         f"with 'nerfsculpt sample --what depth,points ...')")
    from nerfsculpt.generator.builtin import resolve_generator

    spec, fingerprint, _ = study_generator(store, study)
    G, info = resolve_generator(args.generator or spec, device)
    if fingerprint and info.fingerprint != fingerprint:
        raise BundleError(f"the study's items come from a generator with fingerprint {fingerprint[:12]}..., "
                          f"{args.generator or spec!r} has {info.fingerprint[:12]}...; pass the generator that "
                          f"made the ranked samples with --generator")
    return GeneratorSlabs(G, extraction, cache_dir=cache_dir, fingerprint=info.fingerprint)


def cmd_reward_train(args: argparse.Namespace) -> int:
    """Train a sigma reward on a study's rankings; writes OUT/bundle and the Table-1 report.

        nerfsculpt synthetic preferences --db prefs.sqlite          # simulated rankings of 'synthetic'
        nerfsculpt reward train --db prefs.sqlite --out runs/reward --model small --slab-resolution 64 \
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

    from nerfsculpt.reward.ensemble import EnsembleConfig
    from nerfsculpt.reward.pipeline import MODELS
    from nerfsculpt.reward.train import RewardTrainConfig

    if args.batch is None:
        args.batch = MODELS[args.model][1]
    if args.resnet_weights is not None and not args.model.startswith("depth"):
        raise UsageError("--resnet-weights only applies to --model depth1 or depth3")
    config = RewardTrainConfig(objective=args.objective, lr=args.lr, weight_decay=args.weight_decay,
                               batch=args.batch, max_epochs=args.epochs, patience=args.patience, seed=args.seed,
                               anchors=not args.no_anchors, checkpointing=args.checkpointing,
                               precision=args.precision, tensorboard=args.tensorboard)
    ensemble = EnsembleConfig(members=args.ensemble, bootstrap=args.bootstrap)
    try:
        config.validate()
        ensemble.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    _check_slab_fits(args.model, args.slab_resolution)
    if args.dry_run:
        print(json.dumps({**{k: v for k, v in vars(args).items() if k != "handler"},
                          "train_config": dataclasses.asdict(config), "ensemble_config": dataclasses.asdict(ensemble)},
                         indent=2, default=str))
        return 0
    return _train(args, config, ensemble)


def _check_slab_fits(model: str, resolution: int) -> None:
    """UsageError unless the sigma model's U-Net can halve the slab cut at ``resolution`` once per level."""
    import dataclasses

    from nerfsculpt.geometry.slab import REWARD_SLAB
    from nerfsculpt.reward.sigma_net import SIGMA_PRESETS, min_slab_side

    if resolution < 2:
        raise UsageError(f"--slab-resolution must be >= 2, got {resolution}")
    if model not in SIGMA_PRESETS:
        return
    shape = dataclasses.replace(REWARD_SLAB, resolution=resolution).shape
    need = min_slab_side(SIGMA_PRESETS[model])
    if min(shape) < need:
        fits = [m for m in SIGMA_PRESETS if min(shape) >= min_slab_side(SIGMA_PRESETS[m])]
        raise UsageError(f"--slab-resolution {resolution} cuts a {'x'.join(map(str, shape))} slab; --model {model} "
                         f"needs every side >= {need}: raise --slab-resolution"
                         + (f" or use --model {' or '.join(fits)}" if fits else ""))


def _train(args: argparse.Namespace, config, ensemble) -> int:
    """Join torchrun's process group if there is one, train, leave the group."""
    import os
    from pathlib import Path

    import torch

    out = Path(args.out)
    world_size, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(args.device, local_rank, world_size)
    rank = _init_distributed(device, world_size)
    try:
        return _train_ranked(args, config, ensemble, out, device, rank, world_size)
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()


def _train_ranked(args: argparse.Namespace, config, ensemble, out, device, rank: int, world_size: int) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from nerfsculpt.atomic import write_atomic
    from nerfsculpt.reward.bundle import generator_record, save_bundle
    from nerfsculpt.reward.data import items_of, prepare
    from nerfsculpt.reward.ensemble import member_runs
    from nerfsculpt.reward.losses import weights_for
    from nerfsculpt.reward.pipeline import MODELS, build_model, data_fingerprint, extraction_for, splits_from_store
    from nerfsculpt.reward.train import evaluate, format_table, train, train_anchor_seed

    store, study = _open_study(args)
    with store:
        extraction = extraction_for(store, study, args.slab_resolution, eg3d_grid=args.slab_grid == "eg3d",
                                    representation=MODELS[args.model][0])
        splits = splits_from_store(store, study, mode=args.pairs, by=args.split_by, seed=args.split_seed)
        source = _input_source(args, extraction, store, study, device, out / "slab_cache")
    splits.check(config.anchors)
    lists = {name: splits.lists(name, config.anchors, seed=config.seed) for name in ("train", "val", "test")}
    epochs = [splits.lists("train", config.anchors, seed=train_anchor_seed(config, epoch))
              for epoch in range(config.max_epochs)]
    runs = member_runs(splits, config, ensemble) if ensemble.members > 1 else []  # seeds + k, resampled lists
    items = items_of([r for part in (*lists.values(), *epochs, *(run.lists_read() for run in runs))
                      for r in part])  # with every anchor drawn
    if rank == 0:
        print(f"study {study!r}: {len(splits.train)} / {len(splits.val)} / {len(splits.test)} train / val / test "
              f"lists; {len(items)} inputs", flush=True)
    prepare(source, items[rank::world_size], progress=not args.no_progress and rank == 0)  # each rank a share
    if world_size > 1:
        torch.distributed.barrier()  # every share is in the disk cache (or the banks) now
    if ensemble.members > 1:
        model, record, results, report = _train_members(args, config, ensemble, splits, source, out, device)
    else:
        torch.manual_seed(config.seed)
        model = build_model(args.model, args.resnet_weights, args.train_backbone).to(device)
        summary = train(model, splits, source, out, config, progress=not args.no_progress)
        weights = weights_for(config.objective)
        results = {"test": evaluate(model, lists["test"], source, weights, batch=config.batch),
                   "val": evaluate(model, lists["val"], source, weights, batch=config.batch)}
        best = summary["best_epoch"] + 1 if summary["best_epoch"] is not None else "-"
        record = {"summary": summary}
        report = f"{format_table(results)}\n{summary['stopped']}; best epoch {best} of {summary['epochs']}; "
    if rank > 0:
        return 0
    training = {"config": dataclasses.asdict(config), "study": study, "world_size": world_size,
                "db": str(Path(args.db).resolve()), "pairs": args.pairs, "split_by": args.split_by,
                "split_seed": args.split_seed, "model_preset": args.model, "data": data_fingerprint(splits), **record}
    generator = generator_record(source.G) if hasattr(source, "G") else None  # banks do not keep the network
    bundle = save_bundle(out / "bundle", model.cpu(), extraction, training=training, metrics=results, overwrite=True,
                         generator=generator)
    text = json.dumps({"training": training, "metrics": results}, indent=2) + "\n"
    write_atomic(out / "metrics.json", text.encode())
    print(f"{report}bundle: {bundle}")
    return 0


def _train_members(args: argparse.Namespace, config, ensemble, splits, source, out, device):
    """Train the --ensemble members (``reward.ensemble.train_ensemble``): (the ensemble, its training record,
    metrics of the ensemble with the members' under ``members``, the Table-1 report of each and of the mean)."""
    from nerfsculpt.reward.ensemble import train_ensemble
    from nerfsculpt.reward.pipeline import build_model
    from nerfsculpt.reward.train import format_table

    def build():
        return build_model(args.model, args.resnet_weights, args.train_backbone).to(device)

    result = train_ensemble(build, splits, source, out, config, ensemble, progress=not args.no_progress)
    record = {"members": [{k: v for k, v in m.items() if k != "metrics"} for m in result.members]}
    metrics = {**result.metrics, "members": [m["metrics"] for m in result.members]}
    report = ""
    for k, member in enumerate(result.members):
        summary = member["summary"]
        best = summary["best_epoch"] + 1 if summary["best_epoch"] is not None else "-"
        report += (f"member {k + 1}/{ensemble.members} (seed {member['seed']}, {member['run']}): {summary['stopped']}; "
                   f"best epoch {best} of {summary['epochs']}\n{format_table(member['metrics'])}\n")
    report += (f"ensemble of {ensemble.members} members{' (bootstrap)' if ensemble.bootstrap else ''}, scored by "
               f"their mean reward\n{format_table(result.metrics)}\n")
    return result.model, record, metrics, report


def cmd_reward_eval(args: argparse.Namespace) -> int:
    """Table-1 accuracies of a reward bundle on a study's split (scalar and pair heads, 95 % CIs).

        nerfsculpt reward eval --bundle runs/reward/bundle --db prefs.sqlite
        nerfsculpt reward eval --bundle runs/paper/bundle --db paper.sqlite --generator ffhq512-128.pkl --split val

    The split is recomputed as in training (same --pairs, --split-by, --split-seed); "all pairs"
    uses the anchored lists (one anchor each, fixed draw), "regular only" the (winner, loser) pairs.
    """
    from pathlib import Path

    from nerfsculpt.atomic import write_atomic
    from nerfsculpt.reward.bundle import load_bundle
    from nerfsculpt.reward.losses import weights_for
    from nerfsculpt.reward.pipeline import splits_from_store
    from nerfsculpt.reward.train import evaluate, format_table

    device = _resolve_device(args.device, 0, 1)
    bundle = load_bundle(args.bundle, device=device)
    store, study = _open_study(args)
    with store:
        splits = splits_from_store(store, study, mode=args.pairs, by=args.split_by, seed=args.split_seed)
        source = _input_source(args, bundle.extraction, store, study, device, None)
    seed = bundle.config.get("training", {}).get("config", {}).get("seed", 42)
    lists = splits.lists(args.split, not args.no_anchors, seed=seed)
    if not lists:
        raise UsageError(f"the {args.split} split of study {study!r} is empty")
    result = evaluate(bundle.model, lists, source, weights_for(args.objective), progress=not args.no_progress)
    if args.out:
        write_atomic(Path(args.out), (json.dumps({args.split: result}, indent=2) + "\n").encode())
    print(format_table({args.split: result}))
    return 0


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, metavar="SQLITE", help="preference database")
    p.add_argument("--study", default=None, help="study to use (default: the database's only study)")
    p.add_argument("--generator", default=None, metavar="PATH|NAME",
                   help="generator of the ranked samples (default: the one the study's items name)")
    p.add_argument("--bank", action="append", default=None, metavar="DIR",
                   help="read slabs from sample banks instead (repeat: one bank per psi, e.g. the anchors')")
    p.add_argument("--pairs", default="best_worst", choices=("best_worst", "full"),
                   help="ranked lists from best/worst (the paper) or from full rankings")
    p.add_argument("--split-by", default="question", choices=("question", "annotator"), help="partition unit")
    p.add_argument("--split-seed", type=int, default=42, help="seed of the 70/15/15 partition (the reference: 42)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_reward_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    group = command_group(subparsers, common, "reward",
                          "sigma reward models: train (Bradley-Terry), evaluate, score, import",
                          "Reward models read geometry (the sigma slab) and return a quality score; they learn\n"
                          "from ranked preferences with the paper's Bradley-Terry objective.\n\n"
                          "    nerfsculpt reward train --db prefs.sqlite --out runs/reward\n"
                          "    nerfsculpt reward eval --bundle runs/reward/bundle --db prefs.sqlite\n"
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

    p = group.add_parser("train", parents=[common], help="train a sigma reward on a study's rankings",
                         description=_usage(cmd_reward_train.__doc__), formatter_class=_HelpFormatter)
    _add_data_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (resumed if it has a checkpoint)")
    p.add_argument("--model", default="full",
                   choices=("full", "small", "tiny", "depth1", "depth3", "pointnet", "pointnet2"),
                   help="sigma reward at the paper's size (12.7M parameters, slabs >= 64^3), 'small' for CPU runs "
                        "on 64^3 slabs, 'tiny' for 32^3 slabs (the synthetic benchmark's recipe); "
                        "baselines (read --bank): ResNet-50 on 1 or 3 depth maps, PointNet, PointNet++")
    p.add_argument("--resnet-weights", default=None, metavar="FILE",
                   help="depth models: start the ResNet-50 from a torchvision resnet50 state dict "
                        "(.pth read tensors-only, or .safetensors); default random weights")
    p.add_argument("--train-backbone", action="store_true", help="depth models: train the ResNet-50 too")
    p.add_argument("--slab-resolution", type=int, default=256,
                   help="grid the reward slab is cut from (the paper: 256 -> [128, 141, 129])")
    p.add_argument("--slab-grid", default="eg3d", choices=("eg3d", "exact"),
                   help="sigma at EG3D's create_samples points (as the paper's data) or the exact grid")
    p.add_argument("--objective", default="paper", choices=("paper", "reference"),
                   help="paper: Eq. 4 + 1e-2 reconstruction; reference: what the reference code optimises")
    p.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="Adam (coupled L2) weight decay")
    p.add_argument("--batch", type=int, default=None,
                   help="ranked lists per step (default: the paper's: sigma 1, depth 8, PointNet 4, PointNet++ 2)")
    p.add_argument("--epochs", type=int, default=10, help="maximum epochs")
    p.add_argument("--patience", type=int, default=3, help="stop after this many epochs without a better val loss")
    p.add_argument("--seed", type=int, default=42, help="seed of the weights, orders and anchor draws")
    p.add_argument("--no-anchors", action="store_true", help="train on [winner, loser] only")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train K networks that differ in seed (--seed + k), in OUT/member-<k>; the bundle holds all")
    p.add_argument("--bootstrap", action="store_true",
                   help="with --ensemble K > 1: each member trains on a bootstrap resample of the training lists")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing (less memory)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="autocast precision on CUDA (CPU always runs fp32)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to OUT/tensorboard (needs the tensorboard package); OUT/log.jsonl always")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration, do nothing")
    p.set_defaults(handler=cmd_reward_train, command="reward train")

    p = group.add_parser("eval", parents=[common], help="Table-1 accuracies of a bundle on a study's split",
                         description=_usage(cmd_reward_eval.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("--bundle", required=True, metavar="DIR", help="reward bundle")
    _add_data_arguments(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="partition to evaluate")
    p.add_argument("--objective", default="paper", choices=("paper", "reference"), help="loss reported beside")
    p.add_argument("--no-anchors", action="store_true", help="evaluate [winner, loser] lists only")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the result here")
    p.set_defaults(handler=cmd_reward_eval, command="reward eval")
