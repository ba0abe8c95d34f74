"""Settings of the synthetic benchmark's commands, torch-free (``nerfsculpt --help`` builds options from them).

- :class:`FitConfig`: the hyper-parameters of ``synthetic.fit`` (the built-in generator's regression fit);
- :class:`SimulatedStudyConfig`: a preference study answered by simulated annotators
  (``synthetic.preferences.simulate_preferences``);
- :class:`SyntheticDatasetConfig`: a dataset zip of the procedural heads (``synthetic.dataset.write_dataset``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nerfsculpt.eg3d_dataset import DatasetError, PoseDistribution


@dataclass
class FitConfig:
    """Hyper-parameters of the regression fit (defaults = the shipped run)."""

    steps: int = 20000
    """Upper bound on optimisation steps (the time budget usually ends the run first)."""
    minutes: float | None = 57.0
    """Wall-clock budget; the run stops (and saves) when it is used up. None = no limit."""
    batch: int = 8
    """Latents per step for the sigma/colour losses."""
    lr: float = 2e-3
    """Adam learning rate (cosine-decayed to `lr_final_fraction` of it over the budget)."""
    lr_final_fraction: float = 0.05
    """Final learning rate as a fraction of `lr`."""
    uniform_points: int = 1024
    """Points per latent drawn uniformly in the box."""
    defect_points: int = 2048
    """Points per latent drawn uniformly in the defect regions (``DEFECT_BOXES``)."""
    surface_points: int = 2048
    """Points per latent kept among `candidate_points` for being closest to the target surface, over the
    whole box, and as many again over the face (``FACE_BOX``)."""
    candidate_points: int = 4096
    """Uniform candidates per latent and region in the first stage of surface sampling (``training_points``)."""
    colour_weight: float = 10.0
    """Weight of the colour loss. The decoder's hidden layer is shared with sigma; a weak colour loss leaves
    the colours carrying sigma's fine detail as noise."""
    colour_shell: float = 0.05
    """The colour loss covers every point (of all four sets) within this distance (world units) of the target
    surface; 0 = only the surface points. Rendering reads the colour a little inside the surface too."""
    defect_weight: float = 10.0
    """Extra weight of the sigma loss where a defect changes the target: a point weighs
    ``1 + defect_weight * min(1, d / 100)``, d the largest change of its target sigma that the latent's own
    defects, or all defects at severity 1, make to the clean head (``defect_weights``). Unweighted, the fit
    learns the head and leaves the small defects at a fraction of their size (forehead craters at ~13 %).
    Weighting where defects *could* be (severity 1), not only where they are, penalises drawing a defect
    the latent does not have as much as missing one it has. 0 = plain mean."""
    sigma_gain: float = 25.0
    """The decoder's sigma output learns this many times faster than its colours (``add_sigma_gain``)."""
    initial_sigma: float = -100.0
    """Initial sigma bias: most of the box is empty space, where the heads' sigma is -200."""
    defect_latent_scale: float = 2.0
    """The latent coordinates that set the defect severities (``heads.head_params_from_z``) are drawn from
    N(0, scale^2) instead of N(0, 1): a severity above 0.7 then occurs in 25 % of draws instead of 9 %, so the
    fit sees strong defects three times as often. Targets are still the exact heads of the drawn latents."""
    image_every: int = 4
    """Image losses every this many steps (0 = never)."""
    image_batch: int = 2
    """Latents per image step."""
    image_weight: float = 1.0
    """Weight of the image losses."""
    ema_beta: float = 0.999
    """Decay of the exponential moving average of the weights (the shipped G_ema)."""
    checkpoint_every: int = 250
    """Steps between checkpoints."""
    log_every: int = 50
    """Steps between log lines."""
    seed: int = 0
    """Seed of the initial weights and of every step's draws."""

    def validate(self) -> None:
        for name in ("steps", "batch", "uniform_points", "defect_points", "surface_points", "image_batch",
                     "checkpoint_every", "log_every"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.candidate_points < 2 * self.surface_points:
            raise ValueError("candidate_points must be >= 2 * surface_points")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be > 0 or None, got {self.minutes}")
        if not self.colour_shell >= 0:
            raise ValueError(f"colour_shell must be >= 0, got {self.colour_shell}")
        if not self.defect_weight >= 0:
            raise ValueError(f"defect_weight must be >= 0, got {self.defect_weight}")
        if not self.defect_latent_scale > 0:
            raise ValueError(f"defect_latent_scale must be > 0, got {self.defect_latent_scale}")
        if not 0 <= self.ema_beta < 1:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")


@dataclass(frozen=True)
class SimulatedStudyConfig:
    """A ranking study whose answers come from simulated annotators judging with the geometry oracle."""

    seeds: tuple[int, ...] = tuple(range(600))
    """Seeds the questions draw from (z = RandomState(seed).randn(1, z_dim))."""
    questions: int = 600
    """Number of questions."""
    items: str = "2"
    """Items per question: a number or a range within 2-6 (e.g. '2-4')."""
    annotators: int = 1
    """Simulated annotators; each answers every question."""
    temperature: float = 0.1
    """Bradley-Terry noise of the annotators in oracle units (0 = the oracle's exact order)."""
    cant_decide: float = 0.0
    """Probability that an annotator answers "can't decide"."""
    psi: float = 1.0
    """Truncation psi of the items."""
    resolution: int = 96
    """Sigma grid of the oracle (calibrated at 96-128)."""
    seed: int = 0
    """Seed of the question design and of the annotators (annotator k: seed + k)."""

    def validate(self) -> None:
        if self.annotators < 1 or self.questions < 1:
            raise ValueError("--annotators and --questions must be >= 1")
        if not 0 <= self.cant_decide <= 1 or not self.temperature >= 0:
            raise ValueError(f"--cant-decide must be in [0, 1] and --temperature >= 0, got {self.cant_decide}, "
                             f"{self.temperature}")
        if self.resolution < 16 or len(self.seeds) < 2:
            raise ValueError("--resolution must be >= 16 (the oracle is calibrated at 96-128) and --seeds hold >= 2")


def _synthetic_rendering_kwargs() -> dict[str, Any]:
    from nerfsculpt.synthetic.generator import SYNTHETIC_RENDERING_KWARGS

    return SYNTHETIC_RENDERING_KWARGS


@dataclass(frozen=True)
class SyntheticDatasetConfig:
    """Everything that determines the content of a synthetic dataset (saved in the zip)."""

    n: int
    """Number of images; each has its own head identity and pose."""
    resolution: int = 128
    """Image side: the generator's output resolution ``img_resolution`` (128 for the built-in synthetic G)."""
    seed: int = 0
    """Determines every pose and head (two independent streams derived from it)."""
    poses: PoseDistribution = field(default_factory=PoseDistribution)
    """Camera distribution."""
    rendering_kwargs: dict[str, Any] = field(default_factory=lambda: dict(_synthetic_rendering_kwargs()))
    """EG3D rendering options: the synthetic generator's by default (32 + 32 samples per ray over [2.25, 3.3])."""

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and self.n >= 1):
            raise DatasetError(f"n must be a positive integer, got {self.n!r}")
        r = self.resolution
        if not (isinstance(r, int) and r >= 4 and r & (r - 1) == 0):
            raise DatasetError(f"resolution must be a power of two >= 4 (EG3D datasets), got {r!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise DatasetError(f"seed must be a non-negative integer, got {self.seed!r}")
        self.poses.validate()
        from nerfsculpt.synthetic.render import resolve_rendering_kwargs

        try:
            object.__setattr__(self, "rendering_kwargs",
                               resolve_rendering_kwargs({**_synthetic_rendering_kwargs(), **self.rendering_kwargs}))
        except ValueError as e:
            raise DatasetError(str(e)) from e

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["poses"]["pivot"] = list(self.poses.pivot)
        return out
