"""The settings of reward training, torch-free (``nerfsculpt --help`` builds its options from them).

- :class:`RewardModelConfig`: which network reads which geometry (``--model``, the slab's grid);
- :class:`RewardDataConfig`: which study, where its inputs come from, how it is split;
- :class:`RewardTrainConfig`: the optimisation (the paper's, docs/method/reference_method.md §4.7);
- :class:`EnsembleConfig`: K members and their data (Coste et al. 2023).

``reward.pipeline.train_reward`` takes all four.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = get_args(Precision)
RewardModelName = Literal["full", "small", "tiny", "depth1", "depth3", "pointnet", "pointnet2"]

MODELS: dict[RewardModelName, tuple[str, int]] = {
    "full": ("sigma_slab", 1), "small": ("sigma_slab", 1), "tiny": ("sigma_slab", 1),
    "depth1": ("depth_single", 8),
    "depth3": ("depth_triple", 8), "pointnet": ("points", 4), "pointnet2": ("points", 2),
}
"""``--model`` names: (representation, the paper's batch size). ``full``/``small``/``tiny``: the sigma reward at
the paper's size or CPU sizes; ``depth1``/``depth3``: ResNet-50 on 1 or 3 depth maps; ``pointnet``/``pointnet2``."""


@dataclass(frozen=True)
class RewardModelConfig:
    """The reward network and the geometry it reads."""

    model: RewardModelName = "full"
    """Sigma reward at the paper's size ('full', 12.7M parameters, slabs >= 64^3), 'small' for CPU runs on 64^3
    slabs, 'tiny' for 32^3 slabs (the synthetic benchmark's recipe); baselines (read --bank): ResNet-50 on 1 or 3
    depth maps ('depth1', 'depth3'), PointNet, PointNet++."""
    slab_resolution: int = 256
    """Grid the reward slab is cut from (the paper: 256 -> [128, 141, 129])."""
    slab_grid: Literal["eg3d", "exact"] = "eg3d"
    """Sigma at EG3D's create_samples points (as the paper's data) or on the exact grid."""
    resnet_weights: str | None = None
    """Depth models: start the ResNet-50 from a torchvision resnet50 state dict (.pth read tensors-only, or
    .safetensors); None = random weights."""
    train_backbone: bool = False
    """Depth models: train the ResNet-50 too."""

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        if self.resnet_weights is not None and not self.model.startswith("depth"):
            raise ValueError("--resnet-weights only applies to --model depth1 or depth3")


@dataclass(frozen=True)
class RewardDataConfig:
    """Which rankings a reward learns from, where their geometry comes from, and how they are split."""

    study: str | None = None
    """Study to use; None = the database's only study."""
    generator: str | None = None
    """Generator of the ranked samples; None = the one the study's items name."""
    bank: tuple[str, ...] = ()
    """Read the inputs from sample banks instead (one bank per psi, e.g. the anchors'); needed for depth maps
    and point clouds."""
    pairs: Literal["best_worst", "full"] = "best_worst"
    """Ranked lists from best/worst answers (the paper) or from full rankings."""
    split_by: Literal["question", "annotator"] = "question"
    """Unit of the 70/15/15 partition."""
    split_seed: int = 42
    """Seed of the partition (the reference: 42)."""


@dataclass
class RewardTrainConfig:
    """Optimisation of the reward (defaults: the paper's, docs/method/reference_method.md §4.7)."""

    objective: Literal["paper", "reference"] = "paper"
    """``paper`` (Eq. 4 + 1e-2 L1 reconstruction) or ``reference`` (what the reference code optimises)."""
    lr: float = 1e-5
    """Adam learning rate (constant)."""
    weight_decay: float = 1e-4
    """Adam's coupled L2 weight decay."""
    batch: int = 1
    """Ranked lists per step (the paper: 1 for sigma)."""
    max_epochs: int = 10
    """Upper bound on epochs."""
    patience: int = 3
    """Early stopping: stop after this many epochs in a row without a lower validation loss (>= 1)."""
    seed: int = 42
    """Seed of the initial weights, the epoch orders and the anchor draws."""
    anchors: bool = True
    """Prepend a high-quality anchor to every list ([x_HQ > x_w > x_l], §3.3)."""
    checkpointing: bool = False
    """Recompute U-Net activations in the backward pass (less memory)."""
    precision: Precision = "fp32"
    """``fp32``, or ``bf16`` / ``fp16`` autocast on CUDA (fp16 with a gradient scaler)."""
    checkpoint_every: int = 200
    """Steps between resumable checkpoints (and at every epoch end)."""
    log_every: int = 20
    """Steps between log lines."""
    tensorboard: bool = False
    """Also write the log as TensorBoard events to ``OUT/tensorboard`` (needs the ``tensorboard`` package)."""

    def validate(self) -> None:
        from nerfsculpt.reward.losses import weights_for

        weights_for(self.objective)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("batch", "max_epochs", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 1 or self.lr <= 0:
            raise ValueError("patience must be >= 1 and lr > 0")


@dataclass(frozen=True)
class EnsembleConfig:
    """How many members an ensemble has and how their data differ (``reward train --ensemble/--bootstrap``)."""

    members: int = 1
    """K networks of the same ``--model``; member k trains with seed ``seed + k`` (1 = a single reward)."""
    bootstrap: bool = False
    """Train member k on a bootstrap resample of the training lists, seeded by ``seed + k`` (needs K > 1)."""

    def validate(self) -> None:
        if self.members < 1:
            raise ValueError(f"an ensemble needs >= 1 members, got {self.members}")
        if self.bootstrap and self.members == 1:
            raise ValueError("bootstrap resamples the training lists per member; it needs an ensemble of >= 2 "
                             "members (--ensemble K)")
