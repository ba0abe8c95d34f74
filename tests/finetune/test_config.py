import dataclasses

import pytest

from nerfsculpt.finetune.config import FinetuneConfig, FinetuneError, apply_preset, batch_plan, reference_preset


def test_paper_batch_arithmetic():
    plan = batch_plan(FinetuneConfig(data_free=True))
    assert (plan.iterations, plan.images, plan.per_process, plan.micro_batch, plan.accumulation) == (
        1250, 20000, 16, 16, 1)
    assert plan.iterations_per_tick == 63 and plan.ticks == 20  # ceil(1000 / 16); the last tick is shorter
    assert FinetuneConfig().resolved_ema_kimg == 5.0  # 16 * 10 / 32


def test_processes_and_micro_batches():
    plan = batch_plan(FinetuneConfig(data_free=True, micro_batch=2), world_size=4)
    assert (plan.per_process, plan.micro_batch, plan.accumulation) == (4, 2, 2)
    with pytest.raises(FinetuneError, match="does not split over 3 processes"):
        batch_plan(FinetuneConfig(data_free=True), world_size=3)
    with pytest.raises(FinetuneError, match="micro_batch 3 does not divide"):
        batch_plan(FinetuneConfig(data_free=True, micro_batch=3))


def test_reference_preset():
    tuned = reference_preset(FinetuneConfig(data_free=True))
    assert (tuned.reward_step, tuned.micro_batch, tuned.lazy_gain, tuned.lambda_c) == ("separate", 1, False, 0.01)
    control = reference_preset(FinetuneConfig(data_free=True, lambda_r=0))
    assert control.lambda_c == 0  # the reference's control has no consistency term either
    assert FinetuneConfig(data_free=True, lambda_r=0).lambda_c == 0.01  # ours keeps it, as the paper says


def test_presets_keep_the_settings_given_explicitly():
    synthetic = apply_preset("synthetic", FinetuneConfig(kimg=0.2, lambda_r=0), keep={"kimg", "lambda_r"})
    assert (synthetic.kimg, synthetic.lambda_r, synthetic.batch, synthetic.g_lr, synthetic.density_reg) == (
        0.2, 0, 4, 2.5e-4, 0.0)
    assert synthetic.data_free and synthetic.reward_standardise == "calibrate"
    assert synthetic.extra["preset"] == "synthetic"
    synthetic.validate()
    with_data = apply_preset("synthetic", FinetuneConfig(data="d.zip"), keep={"data"})
    assert not with_data.data_free and with_data.data == "d.zip"
    control = apply_preset("reference", FinetuneConfig(data_free=True, lambda_r=0, lambda_c=0.01),
                           keep={"data_free", "lambda_r", "lambda_c"})
    assert (control.reward_step, control.lambda_c) == ("separate", 0.01)  # an explicit lambda_c survives
    assert apply_preset("paper", FinetuneConfig(batch=8)) == FinetuneConfig(batch=8)
    with pytest.raises(FinetuneError, match="preset must be one of"):
        apply_preset("fast", FinetuneConfig())


@pytest.mark.parametrize("changes, message", [
    ({"batch": 0}, "batch must be > 0"),
    ({"lambda_r": -1}, "lambda_r must be >= 0"),
    ({"reward_step": "both"}, "reward_step must be one of"),
    ({"pose_swap_prob": 1.5}, "pose_swap_prob"),
    ({"data_free": False}, "--data"),
    ({"data": "x.zip"}, "--data"),  # both a dataset and data-free
    ({"labels": "l.json", "data_free": False, "data": "x.zip"}, "--labels is for --data-free"),
    ({"sigma_autocast": "int8"}, "sigma_autocast"),
    ({"reward_standardise": "on", "trajectory_seeds": ()}, "needs trajectory seeds"),
    ({"reward_standardise": "calibrate", "trajectory_seeds": ()}, "needs trajectory seeds"),
    ({"reward_standardise": "yes"}, "reward_standardise must be"),
    ({"reward_clamp_standardised": 0}, "reward_clamp_standardised must be > 0"),
])
def test_invalid_settings_are_named(changes, message):
    with pytest.raises(FinetuneError, match=message):
        dataclasses.replace(FinetuneConfig(data_free=True), **changes).validate()


def test_round_trip_through_a_dict():
    config = FinetuneConfig(data_free=True, trajectory_seeds=(1, 2), betas=(0.0, 0.9))
    assert FinetuneConfig.from_dict(config.to_dict()) == config
    with pytest.raises(FinetuneError, match="unknown fine-tuning settings"):
        FinetuneConfig.from_dict({**config.to_dict(), "gamma": 1})
