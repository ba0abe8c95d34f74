import pytest
import torch

from nerfsculpt.finetune.config import FinetuneError
from tests.finetune.conftest import Fullness, make_tuner, tiny_run


def _grads_of_phase(tuner, phase: str) -> list[torch.Tensor]:
    """Gradients the phase hands to its optimiser step (captured instead of stepping)."""
    captured = []

    def capture(name, optimizer, module, losses):
        captured.extend(p.grad.clone() for p in module.parameters() if p.grad is not None)
        optimizer.zero_grad(set_to_none=True)
        return True

    tuner._step = capture
    tuner._reals = tuner._real_batch()
    loss_fn = {"Dreg": tuner._dreg_loss, "Greg": tuner._greg_loss, "Gmain": tuner._gmain_loss}[phase]
    module = tuner.D if phase == "Dreg" else tuner.G
    optimizer = tuner.optimizers["D" if phase == "Dreg" else "G"]
    gain = {"Dreg": tuner.config.d_reg_interval, "Greg": tuner.config.g_reg_interval, "Gmain": 1}[phase]
    tuner._phase(phase, module, optimizer, loss_fn, gain if tuner.config.lazy_gain else 1)
    return captured


@pytest.mark.parametrize("phase, interval", [("Dreg", 16), ("Greg", 4)])
def test_lazy_regularisers_are_multiplied_by_their_interval(phase, interval):
    with_gain = _grads_of_phase(make_tuner(tiny_run(lambda_r=0)), phase)
    without = _grads_of_phase(make_tuner(tiny_run(lambda_r=0, lazy_gain=False)), phase)
    assert with_gain and len(with_gain) == len(without)
    for a, b in zip(with_gain, without, strict=True):
        torch.testing.assert_close(a, b * interval, rtol=1e-5, atol=1e-9)


def test_optimisers_use_the_lazy_regularisation_adjustment():
    settings = make_tuner(tiny_run(lambda_r=0)).optimizer_settings()
    assert settings["G"]["lr"] == pytest.approx(0.002) and settings["G"]["betas"][1] == pytest.approx(0.99 ** 0.8)
    assert settings["D"]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert "Greward" not in settings
    separate = make_tuner(tiny_run(reward_step="separate"), Fullness()).optimizer_settings()
    assert separate["Greward"] == {"lr": 0.0025, "betas": [0.0, 0.99]}


def test_an_iteration_moves_G_and_D_and_the_ema():
    tuner = make_tuner(tiny_run(), Fullness())
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in
              (("G", tuner.G), ("D", tuner.D), ("G_ema", tuner.G_ema))}
    tuner.iteration()
    for name, module in (("G", tuner.G), ("D", tuner.D), ("G_ema", tuner.G_ema)):
        assert any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters(), strict=True)), name
    beta = 0.5 ** (4 / (4 * 10 / 32 * 1000))  # batch 4, ema_kimg = 4 * 10 / 32
    for p0, p, p_ema in zip(before["G_ema"], tuner.G.parameters(), tuner.G_ema.parameters(), strict=True):
        torch.testing.assert_close(p_ema, p.detach().lerp(p0, beta))
    means = tuner.tick_means()
    assert {"loss/G_gan", "loss/D_gan", "loss/D_r1", "loss/G_density", "loss/L_r", "loss/L_c"} <= set(means)
    assert tuner.state.iteration == 1 and tuner.state.nimg == 4


class NaNOnce(Fullness):
    """Fullness, but NaN on the first ``bad`` calls."""

    def __init__(self, bad: int):
        super().__init__()
        self.calls, self.bad = 0, bad

    def forward(self, x):
        self.calls += 1
        r = super().forward(x)
        return r * float("nan") if self.calls <= self.bad else r


def test_a_non_finite_step_is_skipped_and_training_goes_on(caplog):
    tuner = make_tuner(tiny_run(), NaNOnce(bad=1))
    G_before = [p.detach().clone() for p in tuner.G.parameters()]
    tuner.iteration()  # Gmain has a NaN loss: skipped; Greg, Dmain, Dreg run
    assert tuner.state.skipped == 1 and tuner.state.bad_steps["Gmain"] == 1
    assert "step skipped" in caplog.text
    for p in tuner.G.parameters():
        assert torch.isfinite(p).all()
    tuner.iteration()
    assert tuner.state.skipped == 1 and tuner.state.bad_steps["Gmain"] == 0
    assert any(not torch.equal(a, b) for a, b in zip(G_before, tuner.G.parameters(), strict=True))


def test_repeated_non_finite_steps_abort_with_a_clear_error():
    # the reward phase fails every time while the GAN phases are fine: counted per phase
    tuner = make_tuner(tiny_run(max_bad_steps=2, reward_step="separate", r1_gamma=0, density_reg=0), NaNOnce(99))
    with pytest.raises(FinetuneError, match="2 consecutive steps had NaN/Inf"):
        for _ in range(2):
            tuner.iteration()


@pytest.mark.parametrize("micro_batch", [None, 2])
def test_the_reward_gradient_is_clipped_to_its_norm_and_only_it(micro_batch):
    """Gmain's gradient = GAN + L_c + lambda_r L_r; the clip scales the last part alone to the given norm
    (summed over the phase's micro-batches), leaves it whole when its norm is smaller, and is logged."""
    def grads(**changes):
        return torch.cat([g.flatten() for g in _grads_of_phase(
            make_tuner(tiny_run(micro_batch=micro_batch, **changes), Fullness()), "Gmain")])

    full, without = grads(), grads(lambda_r=0.0)
    reward_part = full - without
    norm = float(torch.linalg.vector_norm(reward_part))
    assert norm > 0
    torch.testing.assert_close(grads(reward_grad_clip=1e9), full, rtol=1e-5, atol=1e-7)  # no clip in effect
    clipped = grads(reward_grad_clip=norm / 4) - without
    assert float(torch.linalg.vector_norm(clipped)) == pytest.approx(norm / 4, rel=1e-4)
    torch.testing.assert_close(clipped, reward_part / 4, rtol=1e-3, atol=1e-8)  # same direction
    tuner = make_tuner(tiny_run(micro_batch=micro_batch, reward_grad_clip=norm / 4), Fullness())
    _grads_of_phase(tuner, "Gmain")
    assert tuner.tick_means()["reward/grad_norm"] == pytest.approx(norm, rel=1e-4)
