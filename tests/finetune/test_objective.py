import copy
import dataclasses

import pytest
import torch

from nerfsculpt.finetune.objective import GeometryTerms
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.reward.bundle import Extraction, RewardBundle
from tests.finetune.conftest import Fullness, tiny_run
from tests.reward.tiny import SMALL_SLAB


@pytest.fixture
def setup():
    G_old, _ = resolve_generator("tiny-random")
    G = copy.deepcopy(G_old).requires_grad_(True)
    reward = RewardBundle(Fullness(), Extraction(slab=dataclasses.asdict(SMALL_SLAB)), {})
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    return G, G_old, reward, z


def test_consistency_is_zero_for_the_pretrained_generator_and_grows_with_drift(setup):
    G, G_old, reward, z = setup
    terms = GeometryTerms(tiny_run(lambda_r=0.0, consistency_resolution=8), None, G_old)
    loss, stats = terms(G, z)
    assert loss.item() == pytest.approx(0.0, abs=1e-8)  # batched vs per-latent backbone: rounding only
    with torch.no_grad():
        G.decoder.net[0].bias.add_(0.5)  # shifts sigma everywhere
    loss, stats = terms(G, z)
    assert stats["L_c"] > 0 and loss.item() == pytest.approx(0.01 * stats["L_c"])


def test_reward_gradients_reach_the_backbone_and_the_decoder(setup):
    G, G_old, reward, z = setup
    terms = GeometryTerms(tiny_run(lambda_c=0.0), reward, G_old)
    loss, stats = terms(G, z)
    loss.backward()
    assert stats["reward"].shape == (2,)
    for module in (G.backbone.synthesis, G.backbone.mapping, G.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), module
    assert all(p.grad is None for p in reward.model.parameters())  # the reward network stays frozen


def test_the_standardising_baseline_and_the_clamp(setup):
    G, G_old, reward, z = setup
    terms = GeometryTerms(tiny_run(lambda_c=0.0), reward, G_old)
    raw = terms(G, z)[1]["reward"]
    terms.baseline = (raw.mean().item(), 0.5)
    torch.testing.assert_close(terms(G, z)[1]["reward"], (raw - raw.mean()) / 0.5)
    terms.baseline = (raw.max().item() + 100.0, 1.0)  # every reward far below -10: no gradient at all
    G.zero_grad(set_to_none=True)
    loss, _ = terms(G, z)
    loss.backward()
    assert loss.item() == pytest.approx(100.0)  # 10 * -clamp(r, -10, 10) = 10 * 10
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in G.parameters())
