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


def test_the_calibrated_reward_is_on_the_papers_scale(setup):
    """'calibrate' (and 'auto' once it calibrates): 5.76 + 2.32 (r - mean) / std, clamped at the paper's 10."""
    G, G_old, reward, z = setup
    for setting in ("calibrate", "auto"):
        terms = GeometryTerms(tiny_run(lambda_c=0.0, reward_standardise=setting), reward, G_old)
        raw = terms(G, z)[1]["reward"]
        terms.baseline = (raw.mean().item(), 0.5)
        calibrated = terms(G, z)[1]["reward"]
        torch.testing.assert_close(calibrated, 5.76 + 2.32 * (raw - raw.mean()) / 0.5)
        assert terms.clamp == 10.0 and not terms.standardised
    lo, hi = raw.argsort().tolist()  # the higher sample 2 std above the mean: past the clamp, (10 - 5.76) / 2.32
    terms.baseline = (raw[hi].item() - 2.0, 1.0)
    G.zero_grad(set_to_none=True)
    loss, stats = terms(G, z)
    assert stats["reward"][hi].item() == pytest.approx(5.76 + 2.32 * 2.0, abs=1e-4)  # 10.4: beyond the clamp
    torch.testing.assert_close(loss, -10.0 * (stats["reward"][lo] + 10.0) / 2, atol=1e-4, rtol=0)


def test_the_standardising_baseline_and_the_clamp(setup):
    G, G_old, reward, z = setup
    terms = GeometryTerms(tiny_run(lambda_c=0.0, reward_standardise="on"), reward, G_old)
    raw = terms(G, z)[1]["reward"]
    assert terms.clamp == 10.0
    terms.baseline = (raw.mean().item(), 0.5)
    torch.testing.assert_close(terms(G, z)[1]["reward"], (raw - raw.mean()) / 0.5)
    assert terms.clamp == 2.0  # reward_clamp_standardised: std units
    terms.baseline = (raw.max().item() + 100.0, 1.0)  # every reward far below -10: no gradient at all
    G.zero_grad(set_to_none=True)
    loss, _ = terms(G, z)
    loss.backward()
    assert loss.item() == pytest.approx(20.0)  # 10 * -clamp(r, -2, 2) = 10 * 2
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in G.parameters())


def test_the_standardised_clamp_cuts_at_its_own_boundary(setup):
    G, G_old, reward, z = setup
    terms = GeometryTerms(tiny_run(lambda_c=0.0, reward_standardise="on", reward_clamp_standardised=3.0), reward,
                          G_old)
    raw = terms(G, z)[1]["reward"].detach()
    lo, hi = raw.argsort().tolist()
    std = (raw[hi] - raw[lo]).item()
    terms.baseline = (raw[lo].item() - 2.5 * std, std)  # the lower sample at +2.5 std, the higher at +3.5
    G.zero_grad(set_to_none=True)
    loss, stats = terms(G, z)
    torch.testing.assert_close(stats["reward"][[lo, hi]], torch.tensor([2.5, 3.5]), atol=1e-4, rtol=0)
    torch.testing.assert_close(loss, torch.tensor(-10.0 * (2.5 + 3.0) / 2), atol=1e-4, rtol=0)
    loss.backward()
    batch = {name: p.grad.clone() for name, p in G.named_parameters() if p.grad is not None}
    G.zero_grad(set_to_none=True)
    terms(G, z[[lo]])[0].backward()  # the lower sample alone carries the batch's whole gradient (halved)
    alone = {name: p.grad for name, p in G.named_parameters() if p.grad is not None}
    assert batch.keys() == alone.keys() and batch
    for name, grad in batch.items():
        scale = grad.abs().max().item()  # float32 rounding of a batch of two vs one sample: ~1e-5 of the scale
        torch.testing.assert_close(grad, alone[name] / 2, atol=1e-4 * max(scale, 1.0), rtol=0, msg=name)


def test_the_ensemble_objectives_against_hand_computed_values(setup):
    G, G_old, reward, z = setup
    members = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # (K, N): means 2, 4; population variances 1, 4
    expected = {"mean": [2.0, 4.0], "uwo": [2.0 - 0.1 * 1, 4.0 - 0.1 * 4], "wco": [1.0, 2.0]}
    for objective, values in expected.items():
        terms = GeometryTerms(tiny_run(reward_objective=objective), reward, G_old)
        torch.testing.assert_close(terms.combine(members), torch.tensor(values))
    single = GeometryTerms(tiny_run(reward_objective="wco"), reward, G_old)
    torch.testing.assert_close(single.combine(members[:1]), members[0])  # one reward is its own worst member


def test_an_ensemble_reward_steers_by_its_objective_and_reports_its_spread(setup):
    from nerfsculpt.reward.ensemble import RewardEnsemble
    from nerfsculpt.reward.sigma_net import SigmaRewardNet
    from tests.reward.tiny import TINY_SIGMA

    G, G_old, _, z = setup
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(SigmaRewardNet(TINY_SIGMA))
    ensemble = RewardBundle(RewardEnsemble(nets, seeds=[0, 1]), Extraction(slab=dataclasses.asdict(SMALL_SLAB)), {})
    losses = {}
    for objective in ("mean", "wco"):
        terms = GeometryTerms(tiny_run(lambda_c=0.0, reward_objective=objective), ensemble, G_old)
        loss, stats = terms(G, z)
        losses[objective] = loss.item()
        assert stats["spread"].shape == (2,) and bool((stats["spread"] > 0).all())  # seeds 0 and 1 disagree
    with torch.no_grad():
        planes = G.planes(terms._ws(G, z, 1.0), noise_mode="const")
        each = terms.member_rewards(G, planes)  # (K, N)
    assert each.shape == (2, 2)
    assert losses["mean"] == pytest.approx(-10 * each.mean(0).mean().item(), rel=1e-5)
    assert losses["wco"] == pytest.approx(-10 * each.min(0).values.mean().item(), rel=1e-5)


def test_each_member_is_calibrated_on_its_own_tick_0_scale(setup):
    """Members of a Bradley-Terry ensemble differ by offsets and scales; lists of (mean, std) remove them."""
    G, G_old, reward, z = setup
    terms = GeometryTerms(tiny_run(reward_standardise="calibrate"), reward, G_old)
    terms.baseline = ([0.0, 10.0], [1.0, 2.0])
    members = torch.tensor([[1.0, 2.0], [12.0, 14.0]])  # both members: 1 and 2 std above their own means
    expected = 5.76 + 2.32 * torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    torch.testing.assert_close(terms.scaled(members), expected)
    terms.baseline = (5.0, 2.0)  # one reward: a scalar baseline, rewards [N] or [1, N]
    torch.testing.assert_close(terms.scaled(torch.tensor([7.0])), torch.tensor([5.76 + 2.32]))
    torch.testing.assert_close(terms.scaled(torch.tensor([[7.0]])), torch.tensor([[5.76 + 2.32]]))
