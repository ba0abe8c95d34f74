"""``nerfsculpt finetune``: fine-tune a generator with a sigma reward (paper §3.2.3).

Registered by ``cli.build_parser``; imports nothing heavy at import time. The options mirror
``finetune.config.FinetuneConfig`` field by field (same names, same defaults); an option left out
takes the preset's value (``--preset``), one given explicitly overrides it.
"""

from __future__ import annotations

import argparse
import json
import os

from nerfsculpt.cli import UsageError, _HelpFormatter, _init_distributed, _resolve_device, _usage


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a tri-plane generator: EG3D's GAN loop + lambda_r * clamped reward + lambda_c * sigma consistency.

        nerfsculpt finetune --reward runs/reward/bundle --preset synthetic --out runs/tune    # built-in synthetic G
        nerfsculpt finetune --preset synthetic --lambda-r 0 --out runs/control              # its control run
        nerfsculpt finetune --generator ffhq512-128.pkl --reward runs/reward-paper --data FFHQ_512.zip --out runs/ffhq
        nerfsculpt finetune ... --preset reference        # as the reference code ran (see below)
        nerfsculpt finetune ... --out runs/tune --resume  # continue from RUN/latest.json
        nerfsculpt finetune ... --dry-run                 # print the configuration and batch arithmetic, exit
        torchrun --nproc_per_node=4 -m nerfsculpt finetune --generator ffhq512-128.pkl ...   # 4 GPUs
        nerfsculpt finetune compare runs/tune runs/control     # synthetic benchmark: the oracle's verdict
        nerfsculpt finetune interpolate runs/tune               # G_alpha between G_0 and G, each scored

    Defaults are the paper's: batch 16, 20 kimg (1,250 iterations), R1 gamma 20, lambda_r 10 with the
    reward clamped to [-10, 10], lambda_c 0.01 on the 64^3 sigma cube (psi 0.7) against the frozen
    pretrained G_ema, one combined generator objective (Eq. 6). The control run (--lambda-r 0) keeps
    the consistency term, as the paper describes.

    --preset reference reproduces what the reference fork ran: a separate reward optimiser step,
    micro-batches of one image (no minibatch-std groups, no pose swap), no lazy-regularisation gain
    (effective R1 gamma 1.25), and a control without the consistency term.

    --preset synthetic is the recipe for the built-in synthetic generator on a CPU (minutes): 100
    iterations at batch 4, G lr 2.5e-4, no density regulariser, G_ema half-life 0.1 kimg, the reward
    calibrated to the paper's reward scale (clamp 10), a 32^3 consistency cube, data-free reals, 64
    trajectory seeds.
    Options given explicitly override a preset's values.

    Real images for the discriminator: --data ZIP (EG3D dataset: PNGs + dataset.json with 25-number
    labels, e.g. FFHQ_512.zip, or 'nerfsculpt synthetic dataset'), or --data-free (renders of the
    frozen pretrained generator at poses from --labels or an FFHQ-like prior). A checkpoint without a
    discriminator (the built-in synthetic generator) gets a new one.

    RUN/ holds config.json, log.jsonl (one line per tick: losses, kimg/s, reward and clamp rate),
    rewards/tick-K.csv (seeds 300000-300199 on G_ema, psi 1), images/tick-K.png, meshes/tick-K/,
    snapshots/ (safetensors; any command takes a snapshot directory as --generator) and latest.json;
    on the synthetic benchmark also the gold curve: oracle/tick-K.csv and gold_curve.png (--oracle).
    """
    from nerfsculpt.finetune.config import FinetuneConfig, apply_preset
    from nerfsculpt.finetune.run import describe, finetune
    from nerfsculpt.latents import parse_seeds

    if args.out is None:
        raise UsageError("--out RUN is required (the run directory)")

    fields = {name: getattr(args, name) for name in _CONFIG_OPTIONS if hasattr(args, name)}  # given explicitly
    for name in ("trajectory_seeds", "image_seeds", "mesh_seeds"):
        if name in fields:
            try:
                fields[name] = tuple(parse_seeds(fields[name])) if fields[name] not in ("", "none") else ()
            except ValueError as error:
                raise UsageError(f"--{name.replace('_', '-')}: {error}") from None
    if "micro_batch" in fields:
        fields["micro_batch"] = fields["micro_batch"] or None
    config = apply_preset(args.preset, FinetuneConfig(**fields), keep=fields)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.dry_run:
        print(json.dumps(describe(config, args.generator, args.reward, world_size), indent=2))
        return 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(args.device, local_rank, world_size)
    _init_distributed(device, world_size)
    summary = finetune(config, args.generator, args.reward, args.out, device, resume=args.resume,
                       progress=not args.no_progress, allow_reward_mismatch=args.allow_reward_mismatch)
    last = summary["last_tick"] or {}
    first = summary["first_tick"] or {}
    if "traj_reward_mean" in last:
        print(f"trajectory seeds: mean reward {first.get('traj_reward_mean', float('nan')):.3f} -> "
              f"{last['traj_reward_mean']:.3f}")
    print(f"finished {summary['iterations']} iterations ({summary['kimg']:g} kimg); latest snapshot "
          f"{summary['latest_snapshot']} (use it as --generator)")
    return 0


_CONFIG_OPTIONS = (
    "kimg", "batch", "micro_batch", "seed", "lambda_r", "lambda_c", "reward_clamp", "reward_clamp_standardised",
    "reward_standardise", "reward_objective", "uwo_beta", "reward_grad_clip",
    "reward_psi", "consistency_psi",
    "consistency_resolution", "truncation_cutoff", "reward_step", "reward_lr", "chunk_points", "sigma_autocast",
    "reward_checkpointing",
    "g_lr", "d_lr", "betas", "r1_gamma", "g_reg_interval", "d_reg_interval", "lazy_gain", "density_reg",
    "density_reg_points", "density_reg_perturbation", "pose_swap_prob", "ema_kimg", "data", "data_free", "labels",
    "discriminator", "tick_kimg", "snapshot_ticks", "trajectory_seeds", "image_seeds", "mesh_seeds",
    "mesh_resolution", "oracle", "oracle_resolution", "evaluator", "early_stop", "early_stop_patience",
    "max_bad_steps", "tensorboard",
)
"""``FinetuneConfig`` fields settable from the command line."""


def _cutoff(text: str) -> int | None:
    return None if text == "all" else int(text)


def add_finetune_command(subparsers, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.finetune.config import EARLY_STOPS, PRESETS, REWARD_OBJECTIVES, REWARD_SCALES, FinetuneConfig

    d = FinetuneConfig()
    p = subparsers.add_parser("finetune", parents=[common], help="fine-tune a generator with a sigma reward",
                              description=_usage(cmd_finetune.__doc__), formatter_class=_HelpFormatter)

    def option(group, name: str, help: str, default=None, **kwargs) -> None:
        """A FinetuneConfig field: left unset unless given, so that a preset's value is not overridden."""
        shown = getattr(d, name) if default is None else default
        flag = kwargs.pop("flag", "--" + name.replace("_", "-"))
        suffix = "" if shown is None or shown is False else f" (default: {shown})"  # an unset path, an off flag
        group.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=help + suffix, **kwargs)

    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--generator", default="synthetic", metavar="PATH|NAME",
                    help="EG3D .pkl, a converted directory, a fine-tuning snapshot, or a built-in name")
    io.add_argument("--reward", metavar="BUNDLE", help="sigma_slab reward bundle (needed unless --lambda-r 0)")
    io.add_argument("--out", metavar="RUN", help="run directory (required)")
    io.add_argument("--resume", action="store_true", help="continue the run in --out from its latest snapshot")
    option(io, "data", "EG3D dataset zip of real images (PNG + dataset.json)", metavar="ZIP")
    option(io, "data_free", "no real images: the discriminator's reals are renders of the frozen pretrained "
           "generator", action="store_const", const=True)
    option(io, "labels", "camera labels for --data-free (dataset.json or a dataset zip); default an FFHQ-like "
           "prior", metavar="JSON|ZIP")
    option(io, "discriminator", "checkpoint whose D to start from (default: the generator checkpoint's, else a "
           "new one)", metavar="PATH")
    io.add_argument("--allow-reward-mismatch", action="store_true",
                    help="use a reward trained on another kind of generator (different resolution or box)")
    io.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    io.add_argument("--dry-run", action="store_true",
                    help="print the resolved configuration and batch arithmetic, do nothing")
    io.add_argument("--preset", choices=PRESETS, default="paper",
                    help="settings to start from; options given explicitly override them. 'reference': separate "
                         "reward step, micro-batches of 1, no lazy gains, control without L_c; 'synthetic': the "
                         "CPU-minutes recipe for the built-in synthetic generator (docs/finetune.md)")

    run = p.add_argument_group("length and batch")
    option(run, "kimg", "length in thousands of images per phase", type=float)
    option(run, "batch", "images per iteration over all processes", type=int)
    option(run, "micro_batch", "images per forward pass on one process; 0 = the whole per-process batch",
           default=0, type=int)
    option(run, "seed", "seed of every random draw", type=int)

    terms = p.add_argument_group("the paper's terms (Eq. 6-7)")
    option(terms, "lambda_r", "reward weight; 0 = control run", type=float)
    option(terms, "lambda_c", "sigma-consistency weight", type=float)
    option(terms, "reward_clamp", "clamp of the raw reward", type=float)
    option(terms, "reward_clamp_standardised", "clamp of the standardised reward, in std of the tick-0 rewards",
           type=float)
    option(terms, "reward_standardise", "how L_r reads r, from the mean and std of the trajectory seeds' tick-0 "
           "rewards: 'off' raw (the paper); 'calibrate' mapped to the paper's released reward's scale (mean 5.76, "
           "std 2.32) and clamped at --reward-clamp, so the clamp bites 1.8 std above the pretrained mean as the "
           "paper's did; 'on' (r - mean) / std clamped at --reward-clamp-standardised; 'auto' = calibrate when most "
           "of those rewards are beyond the clamp (no gradient there), else off", choices=REWARD_SCALES)
    option(terms, "reward_psi", "truncation of the rewarded latents", type=float)
    option(terms, "consistency_psi", "truncation of the consistency latents", type=float)
    option(terms, "consistency_resolution", "consistency cube samples per axis", type=int)
    option(terms, "truncation_cutoff", "w layers truncated ('all' = every layer)", type=_cutoff)
    option(terms, "reward_step", "one generator objective (paper) or a separate Adam step (reference)",
           choices=("combined", "separate"))
    option(terms, "reward_lr", "lr of the separate reward step", type=float)
    option(terms, "chunk_points", "decoder points per chunk", type=int)
    option(terms, "reward_checkpointing", "keep the reward network's activations (faster, about twice the "
           "memory)", default="checkpointing on", flag="--no-reward-checkpointing", action="store_const", const=False)
    option(terms, "sigma_autocast", "decoder precision of the reward slab (auto: bf16 on CUDA, fp32 on CPU)",
           choices=("auto", "bf16", "fp16", "fp32"))

    gan = p.add_argument_group("EG3D's GAN recipe")
    option(gan, "g_lr", "G learning rate (before lazy-reg adjustment)", type=float)
    option(gan, "d_lr", "D learning rate (before lazy-reg adjustment)", type=float)
    option(gan, "betas", "Adam betas", type=float, nargs=2)
    option(gan, "r1_gamma", "R1 weight (both D images)", type=float)
    option(gan, "g_reg_interval", "density reg every N iterations", type=int)
    option(gan, "d_reg_interval", "R1 every N iterations", type=int)
    option(gan, "lazy_gain", "do not multiply the lazy regularisers by their interval (the reference)",
           default="gains on", flag="--no-lazy-gain", action="store_const", const=False)
    option(gan, "density_reg", "density regulariser weight", type=float)
    option(gan, "density_reg_points", "points per sample", type=int)
    option(gan, "density_reg_perturbation", "std of the point perturbation", type=float)
    option(gan, "pose_swap_prob", "generator pose-conditioning swap probability", type=float)
    option(gan, "ema_kimg", "G_ema half-life in kimg", default="batch * 10 / 32", type=float)

    mon = p.add_argument_group("monitoring and snapshots")
    option(mon, "tick_kimg", "kimg per tick", type=float)
    option(mon, "snapshot_ticks", "snapshot every N ticks", type=int)
    option(mon, "trajectory_seeds", "seeds scored every tick ('none': off)", default="300000-300199")
    option(mon, "image_seeds", "seeds of the per-tick image grid ('none': off)", default="2-6")
    option(mon, "mesh_seeds", "seeds of the per-tick meshes ('none': off)", default="2,3")
    option(mon, "mesh_resolution", "grid of the per-tick meshes", type=int)
    option(mon, "oracle", "the gold curve: the synthetic benchmark's geometry oracle on the trajectory seeds every "
           "tick (RUN/oracle/, RUN/gold_curve.png); auto = when the generator has the built-in synthetic one's "
           "architecture", choices=("auto", "on", "off"))
    option(mon, "oracle_resolution", "sigma grid of the gold curve's oracle", type=int)
    guard = p.add_argument_group("over-optimisation safeguards (docs/finetune.md)")
    option(guard, "reward_objective", "how L_r combines an ensemble reward's members (reward train --ensemble): "
           "their mean, 'uwo' mean - --uwo-beta * variance, or 'wco' the lowest member", choices=REWARD_OBJECTIVES)
    option(guard, "uwo_beta", "weight of the members' variance in 'uwo', in the units L_r reads", type=float)
    option(guard, "reward_grad_clip", "clip the L2 norm of lambda_r L_r's gradient over G's weights per iteration "
           "(logged before clipping as reward/grad_norm); default no clipping (the paper)", type=float)
    option(guard, "evaluator", "a reward the run does not optimise (e.g. trained on held-out questions), scored on "
           "the trajectory seeds every tick as a held-out judge (RUN/evaluator/)", metavar="BUNDLE")
    option(guard, "early_stop", "stop when a held-out judge has not improved for --early-stop-patience ticks: the "
           "gold curve's oracle quality (synthetic benchmark) or --evaluator's mean reward; the judge's best G_ema "
           "is kept in RUN/best/ whenever one is logged", choices=EARLY_STOPS)
    option(guard, "early_stop_patience", "ticks without a new best before stopping", type=int)
    option(mon, "max_bad_steps", "abort after N consecutive NaN/Inf steps", type=int)
    option(mon, "tensorboard", "also log to RUN/tensorboard", default="off", action="store_const", const=True)
    p.set_defaults(handler=cmd_finetune, command="finetune")
    after = p.add_subparsers(title="after a run (nerfsculpt finetune COMMAND --help)", metavar="COMMAND")
    _add_interpolate(after, common)
    _add_compare(after, common)


def cmd_finetune_interpolate(args: argparse.Namespace) -> int:
    """Generators between the pretrained G_0 and a run's fine-tuned G, each saved and scored.

        nerfsculpt finetune interpolate runs/tune                          # alpha 0.25, 0.5, 0.75, 1
        nerfsculpt finetune interpolate runs/tune --alphas 0.1,0.3 --reward runs/heldout/bundle

    G_alpha = G_0 + alpha (G - G_0) on G_ema's weights (G_0 = RUN/pretrained, G = the latest
    snapshot or --snapshot). Each G_alpha is written to RUN/interpolate/<iteration>/alpha-A/ (use it
    as --generator) and scored on the run's trajectory seeds (or --seeds) at psi 1: the reward of the
    run's bundle or of --reward (give a held-out evaluator to choose alpha on a judge the run did not
    optimise), and on the synthetic benchmark the oracle's quality and the sigma drift from G_0.
    """
    from nerfsculpt.finetune.interpolate import interpolate_run, interpolation_table
    from nerfsculpt.latents import parse_seeds

    try:
        alphas = [float(a) for a in args.alphas.split(",")]
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    except ValueError as error:
        raise UsageError(f"--alphas / --seeds: {error}") from None
    summary = interpolate_run(args.run, alphas, snapshot=args.snapshot, seeds=seeds, reward=args.reward,
                              oracle=args.oracle, device=_resolve_device(args.device, 0, 1),
                              progress=not args.no_progress)
    print(interpolation_table(summary), end="")
    return 0


def _add_interpolate(subparsers, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.finetune.config import DEFAULT_ALPHAS

    p = subparsers.add_parser("interpolate", parents=[common], help="score generators between G_0 and a run's G",
                              description=_usage(cmd_finetune_interpolate.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("run", metavar="RUN", help="fine-tuning run directory")
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS), metavar="LIST",
                   help="fractions of the fine-tuning step, each in (0, 1]")
    p.add_argument("--snapshot", default=None, metavar="DIR", help="snapshot to interpolate (default: the latest)")
    p.add_argument("--seeds", default=None, metavar="LIST", help="seeds to score (default: the run's trajectory seeds)")
    p.add_argument("--reward", default=None, metavar="BUNDLE", help="reward to score with (default: the run's)")
    p.add_argument("--oracle", default=None, choices=("auto", "on", "off"),
                   help="also score with the synthetic benchmark's oracle (default: as the run did; auto: on the "
                        "built-in generator)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_finetune_interpolate, command="finetune interpolate")


def cmd_finetune_compare(args: argparse.Namespace) -> int:
    """Judge a tuned run against its control with the synthetic benchmark's oracle (the gold judge).

        nerfsculpt finetune compare runs/tune runs/control --out verdict.json

    Both runs must have tracked the same trajectory seeds with the gold curve on (RUN/oracle/). Per
    seed: the oracle quality's change from tick 0 to the last tick (or --tick). A seed counts as
    improved when its gain exceeds the tolerance, by default the 95th percentile of the control's
    absolute per-seed changes. Prints the four criteria of docs/finetune.md (improved share, paired
    bootstrap interval, control drift, reward rise), slope b and the per-defect table. Exit code 1
    when a criterion fails.
    """
    from nerfsculpt.atomic import write_atomic
    from nerfsculpt.finetune.compare import compare_runs, verdict_markdown

    result = compare_runs(args.tuned, args.control, tick=args.tick, tolerance=args.tolerance)
    if args.out:
        write_atomic(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(verdict_markdown(result), end="")
    return 0 if result["passed"] else 1


def _add_compare(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("compare", parents=[common], help="judge a tuned run against its control (oracle)",
                              description=_usage(cmd_finetune_compare.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("tuned", metavar="TUNED", help="run directory of the tuned run")
    p.add_argument("control", metavar="CONTROL", help="run directory of the control (--lambda-r 0)")
    p.add_argument("--tick", type=int, default=None, help="tick to judge (default: each run's last)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="gain a seed needs to count as improved (default: the 95th percentile of the control's "
                        "absolute per-seed changes)")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the verdict here")
    p.set_defaults(handler=cmd_finetune_compare, command="finetune compare")
