"""The fine-tuning configuration: every setting of the loop, with the paper's values as defaults.

The defaults are the paper's method (§3.2.3, Eq. 5-7) on EG3D's training recipe (docs/method/eg3d.md §5.2-5.3)
with the fine-tuning numbers of docs/method/reference_method.md §5.1: batch 16, R1 gamma 20, 20 kimg,
lambda_r 10, lambda_c 0.01, reward clamp [-10, 10]. :func:`reference_preset` gives the settings
under which the reference fork actually ran (docs/method/reference_method.md Appendix A rows 8, 11-13, 21).

Example::

    config = FinetuneConfig(kimg=2, batch=8)
    plan = batch_plan(config, world_size=1)     # iterations, micro-batches, ticks
    config = reference_preset(config)           # separate reward step, micro-batches of 1, no lazy gains
    config = apply_preset("synthetic", FinetuneConfig(lambda_r=0), keep={"lambda_r"})  # CPU recipe, a control
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from nerfsculpt.errors import NerfsculptError

RewardStep = Literal["combined", "separate"]
REWARD_STEPS = get_args(RewardStep)
DEFAULT_TRAJECTORY_SEEDS = tuple(range(300000, 300200))
"""Seeds whose reward is tracked every tick (docs/method/reference_method.md §5.7; the paper's Fig. 8)."""


class FinetuneError(NerfsculptError, ValueError):
    """Fine-tuning cannot start or continue: bad configuration, input or state (the message says what to do)."""


PAPER_REWARD_MEAN = 5.76
"""Mean score of the paper's released sigma reward on pretrained EG3D FFHQ samples at psi 0.7 (paper Table 8)."""
PAPER_REWARD_STD = 2.32
"""Standard deviation of those scores (paper Table 8): the scale on which the paper's clamp at 10 acts."""
RewardScale = Literal["auto", "off", "calibrate", "on"]
REWARD_SCALES = get_args(RewardScale)
"""Choices of ``FinetuneConfig.reward_standardise``."""
DEFAULT_ALPHAS = (0.25, 0.5, 0.75, 1.0)
"""``finetune interpolate``: the fractions of the fine-tuning step scored by default (alpha = 0, the
pretrained generator, always is)."""
RewardObjective = Literal["mean", "uwo", "wco"]
REWARD_OBJECTIVES = get_args(RewardObjective)
"""Choices of ``FinetuneConfig.reward_objective``."""
EarlyStop = Literal["off", "oracle", "evaluator"]
EARLY_STOPS = get_args(EarlyStop)
"""Choices of ``FinetuneConfig.early_stop``."""


@dataclass
class FinetuneConfig:
    """Settings of one fine-tuning run (saved as ``config.json`` in the run directory)."""

    # ---- length and batch (paper: 20 kimg at batch 16)
    kimg: float = 20.0
    """Length in thousands of generated images per phase (20 kimg at batch 16 = 1,250 iterations)."""
    batch: int = 16
    """Images per iteration over all processes."""
    micro_batch: int | None = None
    """Images per forward/backward pass on one process; None = the whole per-process batch (EG3D). The
    reference used 1, which also disables minibatch-std and pose swapping (docs/method/reference_method.md §5.1)."""
    seed: int = 0
    """Seed of every random draw (latents, poses, real images, regulariser points), per iteration."""

    # ---- the paper's terms (Eq. 6-7)
    lambda_r: float = 10.0
    """Weight of the reward loss L_r = -clamp(r, -clamp, clamp); 0 = the control run."""
    lambda_c: float = 0.01
    """Weight of the sigma-consistency loss L_c (kept in the control, as the paper says; the reference's
    control dropped it: pass 0)."""
    reward_clamp: float = 10.0
    """Reward clamp: no gradient beyond [-reward_clamp, reward_clamp] (§3.2.3)."""
    reward_clamp_standardised: float = 2.0
    """Clamp of the standardised reward (reward_standardise), in standard deviations of the pretrained
    generator's tick-0 rewards. Measured on the synthetic benchmark: at 10 std (no clamp in effect) the
    live generator exploited a small reward within 100 iterations (held-out oracle quality fell on 75 %
    of the seeds); at 2 std it improved on 79-96 % (docs/finetune.md)."""
    reward_standardise: RewardScale = "auto"
    """How L_r reads the reward r, from the mean and std of the trajectory seeds' rewards at tick 0 (values
    within 1.5 IQR of the quartiles, as the reference's ``normalise_scalar_rwd``). 'off': raw r (the paper);
    'calibrate': r mapped onto the paper's released reward's scale, ``PAPER_REWARD_MEAN + PAPER_REWARD_STD *
    (r - mean) / std``, then clamped at ``reward_clamp`` as in the paper, so the clamp stops the push
    (10 - 5.76) / 2.32 = 1.8 std above the pretrained mean, where the paper's did; 'on': (r - mean) / std
    clamped at ``reward_clamp_standardised``; 'auto': 'calibrate' if more than half of the tick-0 rewards
    lie beyond the clamp, where raw L_r has no gradient (a reward trained here has an arbitrary offset),
    else 'off' (the released reward runs as in the paper)."""
    reward_objective: RewardObjective = "mean"
    """How L_r combines the members of an ensemble reward (``reward train --ensemble K``; Coste et al. 2023):
    'mean' of the members, 'uwo' (uncertainty-weighted) mean - ``uwo_beta`` * variance over the members, or
    'wco' (worst case) the lowest member. Each member is read on the scale ``reward_standardise`` sets from
    the ensemble's mean. A single reward is its own mean and worst member."""
    uwo_beta: float = 0.1
    """Weight of the members' variance in 'uwo' (Coste et al.'s value for RL fine-tuning), in the units L_r
    reads (the paper's reward scale after 'calibrate')."""
    reward_grad_clip: float | None = None
    """Clip the L2 norm of lambda_r L_r's gradient over G's parameters, per iteration and process, at this value
    before it joins the GAN and consistency gradients; None = no clipping (the paper). With Adam, a reward
    gradient much larger than the others sets every weight's step alone; the norm before clipping is logged
    as ``reward/grad_norm``."""
    reward_psi: float = 1.0
    """Truncation of the latents whose sigma slab is rewarded (reference: 1.0)."""
    consistency_psi: float = 0.7
    """Truncation of the latents of the consistency cube (reference: 0.7)."""
    consistency_resolution: int = 64
    """Samples per axis of the consistency cube over the whole tri-plane box (64^3)."""
    truncation_cutoff: int | None = 14
    """Number of w layers truncated for the reward and consistency latents."""
    reward_step: RewardStep = "combined"
    """'combined': one generator objective GAN + lambda_r L_r + lambda_c L_c (Eq. 6, the paper); 'separate':
    a second Adam step on lambda_r L_r + lambda_c L_c with its own latents each iteration (the reference)."""
    reward_lr: float = 0.0025
    """Learning rate of the separate reward optimiser (only with reward_step='separate')."""
    chunk_points: int = 1 << 20
    """Decoder points per checkpointed chunk when sampling sigma for the reward and consistency terms."""
    reward_checkpointing: bool = True
    """Recompute the reward network's activations in the backward pass (activation checkpointing): about
    half the reward's memory for about 1.5x its time (``benchmarks/reward_memory.py``)."""
    sigma_autocast: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Decoder precision for the reward slab: 'auto' (bfloat16 on CUDA, float32 on CPU), 'bf16', 'fp16' or
    'fp32'. The consistency cube is always float32 (its differences are smaller than bf16's resolution)."""

    # ---- EG3D's GAN recipe (docs/method/eg3d.md §5.2-5.3)
    g_lr: float = 0.0025
    """Generator Adam learning rate before the lazy-regularisation adjustment (0.002 after it)."""
    d_lr: float = 0.002
    """Discriminator Adam learning rate before the adjustment (0.002 * 16/17 after it)."""
    betas: tuple[float, float] = (0.0, 0.99)
    """Adam betas before the adjustment (beta2 ** (k/(k+1)) after it)."""
    r1_gamma: float = 20.0
    """R1 weight on both discriminator images (paper's fine-tuning; EG3D's FFHQ training used 1)."""
    g_reg_interval: int = 4
    """Density regularisation every this many iterations (lazy regularisation)."""
    d_reg_interval: int = 16
    """R1 every this many iterations (lazy regularisation)."""
    lazy_gain: bool = True
    """Multiply the lazy regularisers by their interval (EG3D). False reproduces the reference, whose
    effective R1 gamma was 20/16 = 1.25 and density weight 0.25/4."""
    density_reg: float = 0.25
    """Weight of EG3D's density regulariser (L1 between sigma at random points and at perturbed points)."""
    density_reg_points: int = 1000
    """Random points per sample, uniform in [-1, 1]^3."""
    density_reg_perturbation: float = 0.004
    """Std of the point perturbation."""
    pose_swap_prob: float = 0.5
    """Probability of conditioning G on another sample's camera (generator pose-conditioning swap)."""
    ema_kimg: float | None = None
    """Half-life of G_ema in kimg; None = batch * 10 / 32 (5 at batch 16)."""

    # ---- discriminator data
    data: str | None = None
    """EG3D dataset zip of real images (PNG + dataset.json), e.g. FFHQ or 'nerfsculpt synthetic dataset'."""
    data_free: bool = False
    """No real images: the discriminator's "real" images are renders of the frozen pretrained generator."""
    labels: str | None = None
    """Camera labels for data-free mode (a dataset.json, or a zip holding one); None = an FFHQ-like prior."""
    discriminator: str | None = None
    """Checkpoint whose D to start from; None = the generator checkpoint's D, or a freshly built one."""

    # ---- monitoring and snapshots
    tick_kimg: float = 1.0
    """Images per tick in kimg (reference: 1): logs, trajectories, grids and meshes are written per tick."""
    snapshot_ticks: int = 5
    """Write a resumable snapshot every this many ticks (and always at the end)."""
    trajectory_seeds: tuple[int, ...] = DEFAULT_TRAJECTORY_SEEDS
    """Seeds scored on G_ema every tick at psi 1 (the reward trajectories of Fig. 8); empty = none."""
    image_seeds: tuple[int, ...] = (2, 3, 4, 5, 6)
    """Seeds of the per-tick image grid (the reference's visualisation seeds)."""
    mesh_seeds: tuple[int, ...] = (2, 3)
    """Seeds whose sigma = 10 mesh (psi 0.7) is written every tick; empty = none."""
    mesh_resolution: int = 128
    """Grid of the per-tick meshes."""
    oracle: Literal["auto", "on", "off"] = "auto"
    """The gold curve: score the trajectory seeds' sigma on G_ema with the synthetic benchmark's geometry
    oracle every tick (``RUN/oracle/``, ``RUN/gold_curve.png``). 'auto': when the pretrained generator has
    the built-in synthetic generator's architecture (the oracle judges procedural heads only); 'on'; 'off'."""
    oracle_resolution: int = 64
    """Grid of the gold curve's sigma cubes (the oracle is calibrated at 96-128; 64 costs a third of 96)."""
    evaluator: str | None = None
    """A reward bundle the run does not optimise (e.g. trained on held-out questions), scored on the
    trajectory seeds every tick as a held-out judge (``eval_reward_mean`` in the log)."""
    early_stop: EarlyStop = "off"
    """Stop when a held-out judge has not improved for ``early_stop_patience`` ticks: 'oracle' (the gold
    curve's mean quality, synthetic benchmark), 'evaluator' (``evaluator``'s mean reward) or 'off'. The
    G_ema of the judge's best tick is kept in RUN/best/ either way when a judge is logged."""
    early_stop_patience: int = 2
    """Ticks without a new best of the judge before the run stops."""
    max_bad_steps: int = 10
    """Abort after this many consecutive optimiser steps skipped for NaN/Inf losses or gradients."""
    tensorboard: bool = False
    """Also log to RUN/tensorboard (needs the tensorboard package); RUN/log.jsonl is always written."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the configuration (e.g. the preset's name)."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("trajectory_seeds", "image_seeds", "mesh_seeds"):
            setattr(self, name, tuple(int(s) for s in getattr(self, name)))

    def validate(self) -> None:
        """Raise FinetuneError naming the first setting that cannot work."""
        positive = ("kimg", "batch", "g_lr", "d_lr", "reward_lr", "reward_clamp", "reward_clamp_standardised",
                    "tick_kimg", "chunk_points", "density_reg_points", "consistency_resolution", "g_reg_interval",
                    "d_reg_interval", "snapshot_ticks", "max_bad_steps", "mesh_resolution")
        for name in positive:
            if not getattr(self, name) > 0:
                raise FinetuneError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lambda_r", "lambda_c", "r1_gamma", "density_reg", "density_reg_perturbation"):
            if not getattr(self, name) >= 0:
                raise FinetuneError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.pose_swap_prob <= 1:
            raise FinetuneError(f"pose_swap_prob must be in [0, 1], got {self.pose_swap_prob}")
        if self.reward_step not in REWARD_STEPS:
            raise FinetuneError(f"reward_step must be one of {REWARD_STEPS}, got {self.reward_step!r}")
        if self.sigma_autocast not in ("auto", "bf16", "fp16", "fp32"):
            raise FinetuneError(f"sigma_autocast must be auto, bf16, fp16 or fp32, got {self.sigma_autocast!r}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise FinetuneError(f"micro_batch must be >= 1, got {self.micro_batch}")
        if self.ema_kimg is not None and self.ema_kimg <= 0:
            raise FinetuneError(f"ema_kimg must be > 0, got {self.ema_kimg}")
        if self.data_free == (self.data is not None):
            raise FinetuneError("give the discriminator's real images: a dataset zip (--data) or --data-free")
        if self.oracle not in ("auto", "on", "off"):
            raise FinetuneError(f"oracle must be auto, on or off, got {self.oracle!r}")
        if self.oracle_resolution < 16:
            raise FinetuneError(f"oracle_resolution must be >= 16, got {self.oracle_resolution}")
        if self.reward_standardise not in REWARD_SCALES:
            raise FinetuneError(f"reward_standardise must be one of {', '.join(REWARD_SCALES)}, got "
                                f"{self.reward_standardise!r}")
        if self.reward_standardise in ("on", "calibrate") and not self.trajectory_seeds:
            raise FinetuneError(f"reward_standardise {self.reward_standardise!r} needs trajectory seeds (their tick-0 "
                                f"rewards set the scale)")
        if self.reward_objective not in REWARD_OBJECTIVES:
            raise FinetuneError(f"reward_objective must be one of {', '.join(REWARD_OBJECTIVES)}, got "
                                f"{self.reward_objective!r}")
        if self.reward_grad_clip is not None and not self.reward_grad_clip > 0:
            raise FinetuneError(f"reward_grad_clip must be > 0 (or unset), got {self.reward_grad_clip}")
        if self.uwo_beta < 0:
            raise FinetuneError(f"uwo_beta must be >= 0, got {self.uwo_beta}")
        if self.early_stop not in EARLY_STOPS:
            raise FinetuneError(f"early_stop must be one of {', '.join(EARLY_STOPS)}, got {self.early_stop!r}")
        if self.early_stop_patience < 1:
            raise FinetuneError(f"early_stop_patience must be >= 1, got {self.early_stop_patience}")
        if self.early_stop == "evaluator" and self.evaluator is None:
            raise FinetuneError("early_stop 'evaluator' needs --evaluator BUNDLE (a reward the run does not optimise)")
        if (self.early_stop != "off" or self.evaluator is not None) and not self.trajectory_seeds:
            raise FinetuneError("early stopping and --evaluator score the trajectory seeds; give --trajectory-seeds")
        if self.early_stop == "oracle" and self.oracle == "off":
            raise FinetuneError("early_stop 'oracle' needs the gold curve: drop --oracle off")
        if self.labels is not None and not self.data_free:
            raise FinetuneError("--labels is for --data-free runs; a dataset's own labels are used with --data")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise FinetuneError(f"betas must be two numbers in [0, 1), got {self.betas}")

    @property
    def resolved_ema_kimg(self) -> float:
        """G_ema half-life in kimg: ``batch * 10 / 32`` unless set (docs/method/eg3d.md §5.3)."""
        return self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise FinetuneError(f"unknown fine-tuning settings {unknown}")
        return cls(**d)


def reference_preset(config: FinetuneConfig) -> FinetuneConfig:
    """``config`` changed to run as the reference fork did (docs/method/reference_method.md §5.1-5.5, Appendix A).

    A separate reward optimiser step (row 8), micro-batches of one image (row 13), no lazy-regularisation
    gain (rows 11-12) and, for a control run (lambda_r = 0), no consistency term either (row 21).
    """
    return dataclasses.replace(
        config, reward_step="separate", micro_batch=1, lazy_gain=False,
        lambda_c=config.lambda_c if config.lambda_r > 0 else 0.0, extra={**config.extra, "preset": "reference"},
    )


def synthetic_preset(config: FinetuneConfig) -> FinetuneConfig:
    """``config`` changed to the recipe measured on the built-in synthetic generator (docs/finetune.md).

    100 iterations at batch 4 (0.4 kimg, minutes on a CPU), a tick every 25 iterations with 64
    trajectory seeds; G lr 2.5e-4 and no density regulariser, because that generator was fitted to
    procedural heads without EG3D's regulariser and away from a GAN equilibrium: at the paper's lr or
    with the regulariser the control run alone reshapes its geometry; G_ema half-life 0.1 kimg (25
    iterations) so that G_ema follows within the run; the reward calibrated to the paper's reward scale
    (a reward trained here has an arbitrary offset) and clamped at 10 as the paper's; a 32^3
    consistency cube. Real images data-free unless a dataset is given.
    """
    return dataclasses.replace(
        config, kimg=0.4, batch=4, tick_kimg=0.1, snapshot_ticks=2, g_lr=2.5e-4, density_reg=0.0, ema_kimg=0.1,
        reward_standardise="calibrate", consistency_resolution=32,
        trajectory_seeds=tuple(range(300000, 300064)), data_free=config.data is None,
        extra={**config.extra, "preset": "synthetic"},
    )


PRESETS = ("paper", "reference", "synthetic")
"""Names of :func:`apply_preset`: 'paper' = the defaults."""


def apply_preset(name: str, config: FinetuneConfig, keep=()) -> FinetuneConfig:
    """``config`` under the preset ``name``, except the fields named in ``keep`` (set explicitly by the user)."""
    presets = {"paper": lambda c: c, "reference": reference_preset, "synthetic": synthetic_preset}
    if name not in presets:
        raise FinetuneError(f"preset must be one of {PRESETS}, got {name!r}")
    return dataclasses.replace(presets[name](config), **{k: getattr(config, k) for k in keep})


def lazy_regularisation(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple[float, float]]:
    """Adam settings for a network regularised every ``interval`` steps (EG3D / StyleGAN2, docs/method/eg3d.md §5.3).

    The learning rate is multiplied by ``k / (k + 1)`` and each beta raised to that power, so that main
    + regulariser steps move the weights as much as the main steps alone would.

    >>> lazy_regularisation(0.0025, (0.0, 0.99), 4)
    (0.002, (0.0, 0.992...))
    """
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


@dataclass(frozen=True)
class BatchPlan:
    """How a run's images are split over processes, passes and iterations."""

    world_size: int
    """Processes (torchrun's --nproc_per_node times nodes)."""
    per_process: int
    """Images per iteration on one process."""
    micro_batch: int
    """Images per forward/backward pass."""
    accumulation: int
    """Passes per phase on one process (gradients accumulated)."""
    iterations: int
    """Total iterations: ceil(kimg * 1000 / batch)."""
    images: int
    """Images per phase over the run: iterations * batch."""
    iterations_per_tick: int
    """Iterations between ticks: ceil(tick_kimg * 1000 / batch)."""
    ticks: int
    """Ticks after tick 0 (the last may be shorter)."""

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def batch_plan(config: FinetuneConfig, world_size: int = 1) -> BatchPlan:
    """The batch arithmetic of ``config`` on ``world_size`` processes; FinetuneError if it does not divide."""
    if config.batch % world_size:
        raise FinetuneError(f"batch {config.batch} does not split over {world_size} processes; use a multiple "
                            f"of {world_size}")
    per_process = config.batch // world_size
    micro = per_process if config.micro_batch is None else config.micro_batch
    if per_process % micro:
        raise FinetuneError(f"micro_batch {micro} does not divide the {per_process} images per process")
    iterations = math.ceil(config.kimg * 1000 / config.batch)
    per_tick = math.ceil(config.tick_kimg * 1000 / config.batch)
    return BatchPlan(world_size=world_size, per_process=per_process, micro_batch=micro,
                     accumulation=per_process // micro, iterations=iterations, images=iterations * config.batch,
                     iterations_per_tick=per_tick, ticks=math.ceil(iterations / per_tick))
