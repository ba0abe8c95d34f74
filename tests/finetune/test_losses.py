import math

import pytest
import torch

from nerfsculpt.finetune.config import lazy_regularisation
from nerfsculpt.finetune.losses import (
    ClampedRewardLoss,
    SigmaConsistencyLoss,
    clamp_rate,
    clamped_reward_loss,
    density_l1_loss,
    discriminator_gan_loss,
    generator_gan_loss,
    r1_penalty,
    sigma_consistency_loss,
)


def test_clamped_reward_loss_known_values_and_clamp_boundaries():
    r = torch.tensor([-12.0, -10.0, 0.5, 10.0, 11.0])
    # 10 * mean(-[-10, -10, 0.5, 10, 10]) = 10 * (-0.5 / 5) = -1
    assert clamped_reward_loss(r).item() == pytest.approx(-1.0)
    assert clamped_reward_loss(r, weight=1.0, clamp=0.5).item() == pytest.approx(-(-0.5 - 0.5 + 0.5 + 0.5 + 0.5) / 5)
    assert clamp_rate(r) == pytest.approx(4 / 5)  # |r| >= 10: the clamp's boundary counts as clamped


def test_no_reward_gradient_beyond_the_clamp():
    r = torch.tensor([-15.0, -9.0, 3.0, 9.5, 25.0], dtype=torch.float64, requires_grad=True)
    clamped_reward_loss(r, weight=10.0, clamp=10.0).backward()
    # d/dr of -10 * mean(clamp(r)) is -10/5 = -2 inside the clamp, 0 beyond it
    torch.testing.assert_close(r.grad, torch.tensor([0.0, -2.0, -2.0, -2.0, 0.0], dtype=torch.float64))


def test_reward_gradient_check_inside_the_clamp():
    r = torch.tensor([-3.0, 0.2, 7.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: clamped_reward_loss(x, 10.0, 10.0), (r,))


def test_sigma_consistency_loss_is_the_mean_absolute_difference():
    new = torch.zeros(2, 3, 3, 3)
    old = torch.zeros(2, 3, 3, 3)
    old[0, 0, 0, 0], old[1, 2, 2, 2] = 5.0, -2.7  # |diff| sums to 7.7 over 54 voxels
    assert sigma_consistency_loss(new, old, weight=0.01).item() == pytest.approx(0.01 * 7.7 / 54)
    new.requires_grad_(True)
    sigma_consistency_loss(new, old, weight=1.0).backward()
    assert new.grad[0, 0, 0, 0] == pytest.approx(-1 / 54) and new.grad[1, 2, 2, 2] == pytest.approx(1 / 54)


def test_module_forms_agree_with_the_functions():
    r = torch.randn(7) * 8
    assert ClampedRewardLoss()(r) == clamped_reward_loss(r)
    assert ClampedRewardLoss(weight=2.0, clamp=3.0)(r) == clamped_reward_loss(r, 2.0, 3.0)
    a, b = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    assert SigmaConsistencyLoss()(a, b) == sigma_consistency_loss(a, b)


def test_gan_losses_at_zero_logits_are_log_2():
    zeros = torch.zeros(4, 1)
    assert generator_gan_loss(zeros).item() == pytest.approx(math.log(2))
    assert discriminator_gan_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    # non-saturating: a confident fake (logit +3) costs G little, D a lot
    assert generator_gan_loss(torch.full((1, 1), 3.0)).item() == pytest.approx(math.log1p(math.exp(-3)))
    assert discriminator_gan_loss(torch.full((1, 1), 3.0), torch.full((1, 1), 3.0)).item() == pytest.approx(
        math.log1p(math.exp(3)) + math.log1p(math.exp(-3)))


def test_r1_penalty_of_a_linear_discriminator_is_the_squared_weight_norm():
    # D(x) = <a, image> + <b, raw>: the gradient is (a, b) for every sample, whatever the input
    a, b = torch.randn(3, 4, 4), torch.randn(3, 2, 2)
    images = {"image": torch.randn(2, 3, 4, 4, requires_grad=True), "image_raw": torch.randn(2, 3, 2, 2,
                                                                                           requires_grad=True)}
    logits = (images["image"] * a).sum((1, 2, 3)) + (images["image_raw"] * b).sum((1, 2, 3))
    penalty = r1_penalty(logits[:, None], images)
    expected = a.square().sum() + b.square().sum()
    torch.testing.assert_close(penalty, expected.expand(2))


def test_density_l1_loss():
    s = torch.tensor([[[1.0], [2.0]]])
    t = torch.tensor([[[1.5], [0.0]]])
    assert density_l1_loss(s, t, 0.25).item() == pytest.approx(0.25 * (0.5 + 2.0) / 2)


def test_lazy_regularisation_adjusts_lr_and_betas_as_eg3d():
    lr, betas = lazy_regularisation(0.0025, (0.0, 0.99), 4)
    assert lr == pytest.approx(0.002) and betas == (0.0, pytest.approx(0.99 ** 0.8))
    lr, betas = lazy_regularisation(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17) and betas[1] == pytest.approx(0.99 ** (16 / 17))
