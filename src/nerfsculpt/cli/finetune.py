"""``nerfsculpt finetune``: fine-tune a generator with a sigma reward (paper §3.2.3).

Imports nothing heavy at import time. The options are generated from ``finetune.config.FinetuneConfig``
(field names, docstrings as help, defaults); an option left out takes the preset's value (``--preset``),
one given explicitly overrides it.
"""

from __future__ import annotations

import argparse
import json

from nerfsculpt.cli.common import (
    UsageError,
    add_command,
    add_config_options,
    add_run_options,
    given_fields,
    parse_cutoff,
    resolve_device,
    torchrun_session,
    world,
)


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

    if args.out is None:
        raise UsageError("--out RUN is required (the run directory)")
    fields = given_fields(FinetuneConfig, args)  # given explicitly: they override the preset
    config = apply_preset(args.preset, FinetuneConfig(**fields), keep=fields)
    if args.dry_run:
        print(json.dumps(describe(config, args.generator, args.reward, world()[2]), indent=2))
        return 0
    with torchrun_session(args.device) as session:
        summary = finetune(config, args.generator, args.reward, args.out, session.device, resume=args.resume,
                           progress=not args.no_progress, allow_reward_mismatch=args.allow_reward_mismatch)
    last = summary["last_tick"] or {}
    first = summary["first_tick"] or {}
    if "traj_reward_mean" in last:
        print(f"trajectory seeds: mean reward {first.get('traj_reward_mean', float('nan')):.3f} -> "
              f"{last['traj_reward_mean']:.3f}")
    print(f"finished {summary['iterations']} iterations ({summary['kimg']:g} kimg); latest snapshot "
          f"{summary['latest_snapshot']} (use it as --generator)")
    return 0


_GROUPS = {
    "inputs and outputs": ("data", "data_free", "labels", "discriminator"),
    "length and batch": ("kimg", "batch", "micro_batch", "seed"),
    "the paper's terms (Eq. 6-7)": (
        "lambda_r", "lambda_c", "reward_clamp", "reward_clamp_standardised", "reward_standardise", "reward_psi",
        "consistency_psi", "consistency_resolution", "truncation_cutoff", "reward_step", "reward_lr", "chunk_points",
        "reward_checkpointing", "sigma_autocast"),
    "EG3D's GAN recipe": (
        "g_lr", "d_lr", "betas", "r1_gamma", "g_reg_interval", "d_reg_interval", "lazy_gain", "density_reg",
        "density_reg_points", "density_reg_perturbation", "pose_swap_prob", "ema_kimg"),
    "monitoring and snapshots": (
        "tick_kimg", "snapshot_ticks", "trajectory_seeds", "image_seeds", "mesh_seeds", "mesh_resolution", "oracle",
        "oracle_resolution", "max_bad_steps", "tensorboard"),
    "over-optimisation safeguards (docs/finetune.md)": (
        "reward_objective", "uwo_beta", "reward_grad_clip", "evaluator", "early_stop", "early_stop_patience"),
}
"""Where each ``FinetuneConfig`` field appears in ``nerfsculpt finetune --help``."""


def _micro_batch(text: str) -> int | None:
    """``--micro-batch``: 0 = the whole per-process batch (None in the config)."""
    return int(text) or None


def add_commands(subparsers, common: argparse.ArgumentParser) -> None:
    """Register finetune and its after-run commands (interpolate, compare)."""
    from nerfsculpt.finetune.config import PRESETS, FinetuneConfig

    p = add_command(subparsers, common, "finetune", cmd_finetune, help="fine-tune a generator with a sigma reward")
    groups = {title: p.add_argument_group(title) for title in _GROUPS}
    io = groups["inputs and outputs"]
    io.add_argument("--generator", default="synthetic", metavar="PATH|NAME",
                    help="EG3D .pkl, a converted directory, a fine-tuning snapshot, or a built-in name")
    io.add_argument("--reward", metavar="BUNDLE", help="sigma_slab reward bundle (needed unless --lambda-r 0)")
    io.add_argument("--out", metavar="RUN", help="run directory (required)")
    io.add_argument("--resume", action="store_true", help="continue the run in --out from its latest snapshot")
    io.add_argument("--allow-reward-mismatch", action="store_true",
                    help="use a reward trained on another kind of generator (different resolution or box)")
    io.add_argument("--preset", choices=PRESETS, default="paper",
                    help="settings to start from; options given explicitly override them. 'reference': separate "
                         "reward step, micro-batches of 1, no lazy gains, control without L_c; 'synthetic': the "
                         "CPU-minutes recipe for the built-in synthetic generator (docs/finetune.md)")
    add_run_options(io, dry_run=True, dry_run_help="print the resolved configuration and batch arithmetic, do nothing")
    for title, names in _GROUPS.items():
        add_config_options(groups[title], FinetuneConfig, only=names, unset=True,
                           types_={"truncation_cutoff": parse_cutoff, "micro_batch": _micro_batch},
                           metavars={"truncation_cutoff": "N|all", "data": "ZIP", "labels": "JSON|ZIP",
                                     "discriminator": "PATH", "evaluator": "BUNDLE", "micro_batch": "N"},
                           helps={"micro_batch": "Images per forward/backward pass on one process; 0 = the whole "
                                                 "per-process batch (EG3D). The reference used 1, which also disables "
                                                 "minibatch-std and pose swapping (default: 0)",
                                  "truncation_cutoff": "Number of w layers truncated for the reward and consistency "
                                                       "latents ('all' = every layer) (default: 14)",
                                  "ema_kimg": "Half-life of G_ema in kimg (default: batch * 10 / 32, 5 at batch 16)"})
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
                              oracle=args.oracle, device=resolve_device(args.device),
                              progress=not args.no_progress)
    print(interpolation_table(summary), end="")
    return 0


def _add_interpolate(subparsers, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.finetune.config import DEFAULT_ALPHAS

    p = add_command(subparsers, common, "interpolate", cmd_finetune_interpolate,
                    help="score generators between G_0 and a run's G", command="finetune interpolate")
    p.add_argument("run", metavar="RUN", help="fine-tuning run directory")
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS), metavar="LIST",
                   help="fractions of the fine-tuning step, each in (0, 1]")
    p.add_argument("--snapshot", default=None, metavar="DIR", help="snapshot to interpolate (default: the latest)")
    p.add_argument("--seeds", default=None, metavar="LIST", help="seeds to score (default: the run's trajectory seeds)")
    p.add_argument("--reward", default=None, metavar="BUNDLE", help="reward to score with (default: the run's)")
    p.add_argument("--oracle", default=None, choices=("auto", "on", "off"),
                   help="also score with the synthetic benchmark's oracle (default: as the run did; auto: on the "
                        "built-in generator)")
    add_run_options(p)


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
    p = add_command(subparsers, common, "compare", cmd_finetune_compare,
                    help="judge a tuned run against its control (oracle)", command="finetune compare")
    p.add_argument("tuned", metavar="TUNED", help="run directory of the tuned run")
    p.add_argument("control", metavar="CONTROL", help="run directory of the control (--lambda-r 0)")
    p.add_argument("--tick", type=int, default=None, help="tick to judge (default: each run's last)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="gain a seed needs to count as improved (default: the 95th percentile of the control's "
                        "absolute per-seed changes)")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the verdict here")
