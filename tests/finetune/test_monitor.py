"""The gold curve's per-tick oracle scores (``finetune.monitor.OracleTrajectory``)."""

import copy
import csv
import dataclasses

import numpy as np
import pytest
import torch

from nerfsculpt.finetune.monitor import OracleTrajectory
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.synthetic.heads import DEFECTS
from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig
from nerfsculpt.synthetic.preferences import oracle_scores

SEEDS = (300000, 300001, 300002)


@pytest.fixture(scope="module")
def synthetic():
    return resolve_generator("synthetic")[0]


def test_scores_equal_the_oracle_and_the_drift_is_zero_for_the_pretrained_generator(synthetic, tmp_path):
    gold = OracleTrajectory(synthetic, SEEDS, resolution=32)
    record = gold(tmp_path, 0, synthetic)
    expected = oracle_scores(synthetic, SEEDS, GeometryOracle(OracleConfig(resolution=32)))
    quality = -np.stack([expected[s] for s in SEEDS]).sum(1)  # the oracle's weights are all 1
    assert record["oracle_quality_mean"] == pytest.approx(quality.mean(), abs=1e-9)
    assert record["oracle_quality_std"] == pytest.approx(quality.std(ddof=1), abs=1e-9)
    for k, name in enumerate(DEFECTS):
        assert record[f"oracle_{name}_mean"] == pytest.approx(np.mean([expected[s][k] for s in SEEDS]), abs=1e-9)
    assert record["sigma_drift"] == 0.0
    with open(tmp_path / "oracle" / "tick-000000.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seed"]) for r in rows] == list(SEEDS) and list(rows[0]) == ["seed", "quality", *DEFECTS,
                                                                               "sigma_drift"]
    assert float(rows[1]["quality"]) == pytest.approx(quality[1], abs=1e-6)


def test_the_drift_is_the_mean_absolute_sigma_change(synthetic, tmp_path):
    """Raising the decoder's sigma output by 3 everywhere moves every voxel by exactly 3."""
    moved = copy.deepcopy(synthetic)
    last = moved.decoder.net[-1]  # FC -> [sigma, 32 colours]; sigma is the raw first output
    with torch.no_grad():
        last.bias[0] += 3.0 / last.bias_gain
    record = OracleTrajectory(synthetic, SEEDS, resolution=16)(tmp_path, 1, moved)
    assert record["sigma_drift"] == pytest.approx(3.0, abs=1e-4)


def test_an_ensembles_trajectory_logs_the_members_disagreement(tmp_path):
    from nerfsculpt.finetune.monitor import inlier_stats, reward_trajectory
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.reward.bundle import Extraction, RewardBundle
    from nerfsculpt.reward.ensemble import RewardEnsemble
    from nerfsculpt.reward.scoring import score_seeds_members
    from nerfsculpt.reward.sigma_net import SigmaRewardNet
    from tests.reward.tiny import SMALL_SLAB, TINY_SIGMA

    G, _ = resolve_generator("tiny-random")
    nets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        nets.append(SigmaRewardNet(TINY_SIGMA))
    bundle = RewardBundle(RewardEnsemble(nets, seeds=[0, 1, 2]).eval(),
                          Extraction(slab=dataclasses.asdict(SMALL_SLAB)), {})
    record = reward_trajectory(tmp_path, 0, bundle, G, (5, 6), clamp=10.0)
    members = score_seeds_members(bundle, G, (5, 6), psi=1.0)  # (3, 2)
    assert record["traj_reward_mean"] == pytest.approx(float(members.mean()), abs=1e-6)
    own = [inlier_stats(m) for m in members]
    assert record["traj_member_iqr_mean"] == pytest.approx([m for m, _ in own])
    z = (members - torch.tensor([m for m, _ in own])[:, None]) / torch.tensor([s for _, s in own])[:, None]
    spread = float(z.std(0, correction=0).mean())  # each member in its own std units: offsets do not count
    assert spread > 0 and record["traj_disagreement"] == pytest.approx(spread, abs=1e-5)
    shifted = reward_trajectory(tmp_path, 1, bundle, G, (5, 6), clamp=10.0,
                                member_baseline=([m + 1 for m, _ in own], [s for _, s in own]))
    assert shifted["traj_disagreement"] > 0  # against a fixed baseline the members' gap shows
    single = RewardBundle(nets[0].eval(), bundle.extraction, {})
    assert "traj_disagreement" not in reward_trajectory(tmp_path, 0, single, G, (5, 6), clamp=10.0)
