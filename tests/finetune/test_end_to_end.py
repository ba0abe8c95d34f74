"""Synthetic end-to-end: a reward learnt from simulated preferences improves the oracle geometry; the control does not.

The whole method on the built-in synthetic benchmark: the reward of ``tests.synthetic_reward``
(trained on a simulated annotator's answers; the oracle never reaches it) fine-tunes the default
synthetic generator with ``--preset synthetic`` cut to 50 iterations at batch 2, data-free reals.
The control is the same run with lambda_r = 0 (L_c kept). The judge is the geometry oracle on
held-out seeds (64^3), on G_ema, as the paper evaluates.

Measured on 2 CPU cores (docs/finetune.md, "Synthetic end-to-end"): oracle quality of the pretrained
generator -0.90; tuned G_ema +0.15 on average, 81 % of the seeds better, 66 % better by more than
0.05; control +0.01, 16 % better by more than 0.05. Re-running the same weights with perturbations
of their size moves a seed's score by about +-0.03, hence the 0.05 margin.
"""

import numpy as np
import pytest
import torch

from nerfsculpt.finetune.config import FinetuneConfig, apply_preset
from nerfsculpt.finetune.run import finetune
from nerfsculpt.finetune.snapshot import latest_snapshot
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.generator.checkpoint import load_generator
from nerfsculpt.reward.bundle import generator_record, save_bundle
from nerfsculpt.synthetic.oracle import GeometryOracle
from nerfsculpt.synthetic.preferences import oracle_scores
from tests.synthetic_reward import ORACLE

HELD_OUT = list(range(50000, 50032))
"""Seeds that no question, trajectory or training latent used."""
MARGIN = 0.05
"""A seed counts as better when its oracle quality rises by more than this (the noise is about 0.03)."""
SHORT = {"batch": 2, "kimg": 0.1, "tick_kimg": 0.05, "ema_kimg": 0.05, "trajectory_seeds": tuple(range(300000, 300032)),
         "image_seeds": (), "mesh_seeds": (), "oracle": "off"}
"""The synthetic preset at CI size: 50 iterations, G_ema half-life 25 iterations, 32 trajectory seeds; no gold
curve (the test judges the held-out seeds itself)."""


def _quality(G) -> np.ndarray:
    """Oracle quality (minus the summed defect scores) of the held-out seeds."""
    judged = oracle_scores(G, HELD_OUT, GeometryOracle(ORACLE))
    return -np.stack([judged[s] for s in HELD_OUT]).sum(1)


def _tune(tmp_path, reward, **changes) -> tuple[np.ndarray, dict]:
    """Oracle quality of the run's final G_ema and the run's summary."""
    fields = {**SHORT, **changes}
    config = apply_preset("synthetic", FinetuneConfig(**fields), keep=fields)
    summary = finetune(config, "synthetic", reward, tmp_path, torch.device("cpu"), progress=False)
    return _quality(load_generator(latest_snapshot(tmp_path), torch.device("cpu"))), summary


def _report(name: str, delta: np.ndarray) -> str:
    return (f"{name}: mean {delta.mean():+.3f}, median {np.median(delta):+.3f}, better {np.mean(delta > 0):.0%}, "
            f"better by > {MARGIN} {np.mean(delta > MARGIN):.0%}, worse by > {MARGIN} {np.mean(delta < -MARGIN):.0%}")


@pytest.mark.slow
def test_fine_tuning_with_a_learnt_reward_improves_the_oracle_geometry(synthetic_reward, tmp_path):
    G, _ = resolve_generator("synthetic")
    bundle = save_bundle(tmp_path / "reward", synthetic_reward.net, synthetic_reward.extraction,
                         generator=generator_record(G))
    before = _quality(G)
    tuned, summary = _tune(tmp_path / "tuned", bundle)
    control, _ = _tune(tmp_path / "control", None, lambda_r=0.0)
    gained, drifted = tuned - before, control - before
    report = "\n".join([f"pretrained quality {before.mean():+.3f}", _report("tuned", gained),
                        _report("control", drifted)])
    print(report)

    first, last = summary["first_tick"], summary["last_tick"]
    assert last["traj_reward_mean"] > first["traj_reward_mean"], report  # the reward itself went up
    assert np.mean(gained > MARGIN) >= 0.55 and gained.mean() > 0.08, report  # most held-out seeds improve
    assert np.mean(drifted > MARGIN) <= 0.30 and abs(drifted.mean()) < 0.05, report  # the control does not
    assert np.mean(gained < -MARGIN) <= 0.15, report
