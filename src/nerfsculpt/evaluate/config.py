"""The settings of ``nerfsculpt evaluate``, torch-free (the command line builds its options from them).

Defaults are the paper's protocols (docs/method/reference_method.md §7); lower the counts for quick
runs (``--seeds 200000-200019``), the report records what ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Analysis = Literal["rewards", "sweep", "consistency", "slope", "truncation", "embedding", "attribution", "identity",
                   "oracle", "study", "image_shift", "fid"]
ANALYSES = get_args(Analysis)
"""The analyses of a report, in its order."""


@dataclass(frozen=True)
class EvaluateConfig:
    """What ``nerfsculpt evaluate`` measures and on how many samples."""

    seeds: tuple[int, ...] = tuple(range(200000, 200100))
    """Latents of the same-latent analyses (the paper's 200000-200099)."""
    psi: float = 0.7
    """Their truncation (the paper's 0.7)."""
    sweep_psis: tuple[float, ...] = (0.0, 0.25, 0.5, 0.7, 1.0)
    """Truncations of the reward sweep (Table 5)."""
    consistency_psi: float = 0.25
    """The second truncation of the rank-consistency analysis (Table 9: 0.7 against 0.25)."""
    depth_resolution: int = 128
    """Side of the canonical depth maps of the truncation-baseline analysis (Table 4)."""
    sigma_resolution: int = 64
    """Sigma grid of the truncation-baseline analysis (the full cube, Table 4)."""
    permutations: int = 8
    """Random region orders per seed of the Shapley values (region attribution; the reference's 8)."""
    ig_steps: int = 8
    """Integrated-gradient steps (region attribution; the reference's 8)."""
    oracle_resolution: int = 96
    """Sigma grid of the synthetic benchmark's oracle (calibrated at 96-128)."""
    respondents: int = 17
    """Simulated respondents of the A/B study on the built-in generator (the paper's 17)."""
    temperature: float = 0.1
    """Their Bradley-Terry noise, in oracle units."""
    cant_decide: float = 0.05
    """Their probability of answering "no preference" (the paper's study: 33 of 680, 0.049)."""
    fid_samples: int = 50000
    """Generated images per FID/KID set (EG3D's FID-50k); FID rises as the count falls, so compare only
    reports of one count."""
    shift_samples: int = 256
    """Images per generator of the pixel-space image shift (no model file needed)."""
    renders: int = 4
    """Seeds shown as before/after clay renders in the report."""
    skip: tuple[Analysis, ...] = ()
    """Analyses not to run (listed as skipped in the report)."""

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if len(self.seeds) < 3:
            raise ValueError(f"--seeds: the analyses need at least 3 seeds, got {len(self.seeds)}")
        if not self.sweep_psis:
            raise ValueError("--sweep-psis: give at least one truncation")
        for name in ("fid_samples", "respondents", "permutations", "ig_steps", "depth_resolution", "shift_samples"):
            least = 2 if name in ("fid_samples", "shift_samples") else 1
            if getattr(self, name) < least:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(self, name)}")
        if self.renders < 0 or self.sigma_resolution < 2 or self.oracle_resolution < 16:
            raise ValueError("--renders must be >= 0, --sigma-resolution >= 2 and --oracle-resolution >= 16")
        if not 0 <= self.cant_decide <= 1 or self.temperature < 0:
            raise ValueError("--cant-decide must be in [0, 1] and --temperature >= 0")
