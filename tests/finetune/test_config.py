import dataclasses

import pytest

from nerfsculpt.finetune.config import FinetuneConfig, FinetuneError, batch_plan, reference_preset


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
    ({"reward_standardise": "yes"}, "reward_standardise must be"),
])
def test_invalid_settings_are_named(changes, message):
    with pytest.raises(FinetuneError, match=message):
        dataclasses.replace(FinetuneConfig(data_free=True), **changes).validate()


def test_round_trip_through_a_dict():
    config = FinetuneConfig(data_free=True, trajectory_seeds=(1, 2), betas=(0.0, 0.9))
    assert FinetuneConfig.from_dict(config.to_dict()) == config
    with pytest.raises(FinetuneError, match="unknown fine-tuning settings"):
        FinetuneConfig.from_dict({**config.to_dict(), "gamma": 1})
