"""``nerfsculpt finetune``: fine-tune a generator with a sigma reward (paper §3.2.3).

Registered by ``cli.build_parser``; imports nothing heavy at import time. The options mirror
``finetune.config.FinetuneConfig`` field by field (same names, same defaults).
"""

from __future__ import annotations

import argparse
import json
import os

from nerfsculpt.cli import UsageError, _HelpFormatter, _init_distributed, _resolve_device, _usage


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a tri-plane generator: EG3D's GAN loop + lambda_r * clamped reward + lambda_c * sigma consistency.

        nerfsculpt finetune --reward runs/reward/bundle --data-free --out runs/tune            # built-in synthetic G
        nerfsculpt finetune --reward runs/reward/bundle --data-free --lambda-r 0 --out runs/control
        nerfsculpt finetune --generator ffhq512-128.pkl --reward runs/reward-paper --data FFHQ_512.zip --out runs/ffhq
        nerfsculpt finetune ... --preset reference        # as the reference code ran (see below)
        nerfsculpt finetune ... --out runs/tune --resume  # continue from RUN/latest.json
        nerfsculpt finetune ... --dry-run                 # print the configuration and batch arithmetic, exit
        torchrun --nproc_per_node=4 -m nerfsculpt finetune --generator ffhq512-128.pkl ...   # 4 GPUs

    Defaults are the paper's: batch 16, 20 kimg (1,250 iterations), R1 gamma 20, lambda_r 10 with the
    reward clamped to [-10, 10], lambda_c 0.01 on the 64^3 sigma cube (psi 0.7) against the frozen
    pretrained G_ema, one combined generator objective (Eq. 6). The control run (--lambda-r 0) keeps
    the consistency term, as the paper describes.

    --preset reference reproduces what the reference fork ran: a separate reward optimiser step,
    micro-batches of one image (no minibatch-std groups, no pose swap), no lazy-regularisation gain
    (effective R1 gamma 1.25), and a control without the consistency term.

    Real images for the discriminator: --data ZIP (EG3D dataset: PNGs + dataset.json with 25-number
    labels, e.g. FFHQ_512.zip, or 'nerfsculpt synthetic dataset'), or --data-free (renders of the
    frozen pretrained generator at poses from --labels or an FFHQ-like prior). A checkpoint without a
    discriminator (the built-in synthetic generator) gets a new one.

    RUN/ holds config.json, log.jsonl (one line per tick: losses, kimg/s, reward and clamp rate),
    rewards/tick-K.csv (seeds 300000-300199 on G_ema, psi 1), images/tick-K.png, meshes/tick-K/,
    snapshots/ (safetensors; any command takes a snapshot directory as --generator) and latest.json.
    """
    from nerfsculpt.finetune.config import FinetuneConfig, reference_preset
    from nerfsculpt.finetune.run import describe, finetune
    from nerfsculpt.latents import parse_seeds

    fields = {name: getattr(args, name) for name in _CONFIG_OPTIONS}
    for name in ("trajectory_seeds", "image_seeds", "mesh_seeds"):
        try:
            fields[name] = tuple(parse_seeds(fields[name])) if fields[name] not in ("", "none") else ()
        except ValueError as error:
            raise UsageError(f"--{name.replace('_', '-')}: {error}") from None
    fields["betas"] = tuple(args.betas)
    fields["micro_batch"] = args.micro_batch or None
    config = FinetuneConfig(**fields)
    if args.preset == "reference":
        config = reference_preset(config)
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
    "kimg", "batch", "micro_batch", "seed", "lambda_r", "lambda_c", "reward_clamp", "reward_standardise",
    "reward_psi", "consistency_psi",
    "consistency_resolution", "truncation_cutoff", "reward_step", "reward_lr", "chunk_points", "sigma_autocast",
    "reward_checkpointing",
    "g_lr", "d_lr", "r1_gamma", "g_reg_interval", "d_reg_interval", "lazy_gain", "density_reg",
    "density_reg_points", "density_reg_perturbation", "pose_swap_prob", "ema_kimg", "data", "data_free", "labels",
    "discriminator", "tick_kimg", "snapshot_ticks", "trajectory_seeds", "image_seeds", "mesh_seeds",
    "mesh_resolution", "max_bad_steps", "tensorboard",
)
"""``FinetuneConfig`` fields set from the command line (``betas`` is handled apart)."""


def _cutoff(text: str) -> int | None:
    return None if text == "all" else int(text)


def add_finetune_command(subparsers, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.finetune.config import FinetuneConfig

    d = FinetuneConfig()
    p = subparsers.add_parser("finetune", parents=[common], help="fine-tune a generator with a sigma reward",
                              description=_usage(cmd_finetune.__doc__), formatter_class=_HelpFormatter)
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--generator", default="synthetic", metavar="PATH|NAME",
                    help="EG3D .pkl, a converted directory, a fine-tuning snapshot, or a built-in name")
    io.add_argument("--reward", metavar="BUNDLE", help="sigma_slab reward bundle (needed unless --lambda-r 0)")
    io.add_argument("--out", required=True, metavar="RUN", help="run directory")
    io.add_argument("--resume", action="store_true", help="continue the run in --out from its latest snapshot")
    io.add_argument("--data", metavar="ZIP", help="EG3D dataset zip of real images (PNG + dataset.json)")
    io.add_argument("--data-free", action="store_true",
                    help="no real images: the discriminator's reals are renders of the frozen pretrained generator")
    io.add_argument("--labels", metavar="JSON|ZIP",
                    help="camera labels for --data-free (dataset.json or a dataset zip); default an FFHQ-like prior")
    io.add_argument("--discriminator", metavar="PATH", help="checkpoint whose D to start from (default: the "
                    "generator checkpoint's, else a new one)")
    io.add_argument("--allow-reward-mismatch", action="store_true",
                    help="use a reward trained on another kind of generator (different resolution or box)")
    io.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    io.add_argument("--dry-run", action="store_true",
                    help="print the resolved configuration and batch arithmetic, do nothing")
    io.add_argument("--preset", choices=("paper", "reference"), default="paper",
                    help="'reference': separate reward step, micro-batches of 1, no lazy gains, control without L_c")

    run = p.add_argument_group("length and batch")
    run.add_argument("--kimg", type=float, default=d.kimg, help="length in thousands of images per phase")
    run.add_argument("--batch", type=int, default=d.batch, help="images per iteration over all processes")
    run.add_argument("--micro-batch", type=int, default=0,
                     help="images per forward pass on one process; 0 = the whole per-process batch")
    run.add_argument("--seed", type=int, default=d.seed, help="seed of every random draw")

    terms = p.add_argument_group("the paper's terms (Eq. 6-7)")
    terms.add_argument("--lambda-r", type=float, default=d.lambda_r, help="reward weight; 0 = control run")
    terms.add_argument("--lambda-c", type=float, default=d.lambda_c, help="sigma-consistency weight")
    terms.add_argument("--reward-clamp", type=float, default=d.reward_clamp, help="clamp of the reward")
    terms.add_argument("--reward-standardise", choices=("auto", "on", "off"), default=d.reward_standardise,
                       help="L_r on (r - mean) / std of the trajectory seeds' tick-0 rewards: 'on', 'off' (the paper), "
                            "'auto' = on when most of those rewards are beyond the clamp (no gradient there)")
    terms.add_argument("--reward-psi", type=float, default=d.reward_psi, help="truncation of the rewarded latents")
    terms.add_argument("--consistency-psi", type=float, default=d.consistency_psi,
                       help="truncation of the consistency latents")
    terms.add_argument("--consistency-resolution", type=int, default=d.consistency_resolution,
                       help="consistency cube samples per axis")
    terms.add_argument("--truncation-cutoff", type=_cutoff, default=d.truncation_cutoff,
                       help="w layers truncated ('all' = every layer)")
    terms.add_argument("--reward-step", choices=("combined", "separate"), default=d.reward_step,
                       help="one generator objective (paper) or a separate Adam step (reference)")
    terms.add_argument("--reward-lr", type=float, default=d.reward_lr, help="lr of the separate reward step")
    terms.add_argument("--chunk-points", type=int, default=d.chunk_points, help="decoder points per chunk")
    terms.add_argument("--no-reward-checkpointing", dest="reward_checkpointing", action="store_false",
                       help="keep the reward network's activations (faster, about twice the memory)")
    terms.add_argument("--sigma-autocast", choices=("auto", "bf16", "fp16", "fp32"), default=d.sigma_autocast,
                       help="decoder precision of the reward slab (auto: bf16 on CUDA, fp32 on CPU)")

    gan = p.add_argument_group("EG3D's GAN recipe")
    gan.add_argument("--g-lr", type=float, default=d.g_lr, help="G learning rate (before lazy-reg adjustment)")
    gan.add_argument("--d-lr", type=float, default=d.d_lr, help="D learning rate (before lazy-reg adjustment)")
    gan.add_argument("--betas", type=float, nargs=2, default=d.betas, help="Adam betas")
    gan.add_argument("--r1-gamma", type=float, default=d.r1_gamma, help="R1 weight (both D images)")
    gan.add_argument("--g-reg-interval", type=int, default=d.g_reg_interval, help="density reg every N iterations")
    gan.add_argument("--d-reg-interval", type=int, default=d.d_reg_interval, help="R1 every N iterations")
    gan.add_argument("--no-lazy-gain", dest="lazy_gain", action="store_false",
                     help="do not multiply the lazy regularisers by their interval (the reference)")
    gan.add_argument("--density-reg", type=float, default=d.density_reg, help="density regulariser weight")
    gan.add_argument("--density-reg-points", type=int, default=d.density_reg_points, help="points per sample")
    gan.add_argument("--density-reg-perturbation", type=float, default=d.density_reg_perturbation,
                     help="std of the point perturbation")
    gan.add_argument("--pose-swap-prob", type=float, default=d.pose_swap_prob,
                     help="generator pose-conditioning swap probability")
    gan.add_argument("--ema-kimg", type=float, default=None, help="G_ema half-life (default batch * 10 / 32)")

    mon = p.add_argument_group("monitoring and snapshots")
    mon.add_argument("--tick-kimg", type=float, default=d.tick_kimg, help="kimg per tick")
    mon.add_argument("--snapshot-ticks", type=int, default=d.snapshot_ticks, help="snapshot every N ticks")
    mon.add_argument("--trajectory-seeds", default="300000-300199", help="seeds scored every tick ('none': off)")
    mon.add_argument("--image-seeds", default="2-6", help="seeds of the per-tick image grid ('none': off)")
    mon.add_argument("--mesh-seeds", default="2,3", help="seeds of the per-tick meshes ('none': off)")
    mon.add_argument("--mesh-resolution", type=int, default=d.mesh_resolution, help="grid of the per-tick meshes")
    mon.add_argument("--max-bad-steps", type=int, default=d.max_bad_steps,
                     help="abort after N consecutive NaN/Inf steps")
    mon.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard")
    p.set_defaults(handler=cmd_finetune, command="finetune")
