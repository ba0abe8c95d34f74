"""The quality-bar evaluation on a stand-in generator whose answers are known."""

from types import SimpleNamespace

import pytest
import torch

from nerfsculpt.synthetic import evaluate as evaluate_module
from nerfsculpt.synthetic.heads import DEFECTS, head_params_from_z
from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig, score_heads


def test_a_perfect_generator_agrees_with_the_procedural_truth_and_improves_with_truncation(monkeypatch):
    # Stand-in: the generator of seed s *is* the procedural head of its z, and truncation with psi
    # shrinks z towards 0 (the clean mean head), as truncation in w does for a fitted generator.
    def perfect(G, z, psi, oracle, batch):
        return score_heads(head_params_from_z(z * psi), oracle)

    monkeypatch.setattr(evaluate_module, "_score_seeds", perfect)
    G = SimpleNamespace(z_dim=64, dataset_label_std=torch.ones(25))
    oracle = GeometryOracle(OracleConfig(resolution=96))  # the oracle is calibrated at 96-128
    seeds = list(range(100, 116))
    result = evaluate_module.evaluate_generator(G, seeds, oracle, psis=(0.0, 0.5, 1.0))

    assert result["protocol"]["n_seeds"] == 16
    assert result["spearman"]["vs_procedural_oracle"]["quality"] == 1.0
    for name in DEFECTS:
        rho = result["spearman"]["vs_procedural_oracle"][name]
        assert rho is None or rho == pytest.approx(1.0)  # None: that defect is absent from every one of the 16 seeds
    quality = [result["truncation"][str(psi)]["quality"] for psi in (0.0, 0.5, 1.0)]
    assert quality[0] >= quality[1] >= quality[2]
    assert result["truncation"]["0.0"]["quality"] > -0.05  # psi = 0: the clean mean head
    assert result["truncation"]["1.0"] == result["procedural_truth"]
