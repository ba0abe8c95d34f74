import json

import pytest

from tests.finetune.conftest import write_tiny_reward
from tests.test_cli import run

TINY = ["--generator", "tiny-random", "--kimg", "0.008", "--batch", "4", "--tick-kimg", "0.008", "--data-free",
        "--trajectory-seeds", "300000-300001", "--image-seeds", "2", "--mesh-seeds", "none",
        "--consistency-resolution", "16", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_reward_path(tmp_path_factory):
    return write_tiny_reward(tmp_path_factory.mktemp("reward") / "bundle")


def test_help_explains_the_defaults(capsys):
    code, out, _ = run(capsys, "finetune", "--help")
    out = " ".join(out.split())
    assert code == 0
    for text in ("(default: 20.0)", "(default: 16)", "(default: 10.0)", "(default: 0.01)", "(default: 20.0)",
                 "(default: combined)", "300000-300199", "--preset reference", "--preset synthetic",
                 "torchrun --nproc_per_node",
                 "--data-free", "--resume"):
        assert text in out, text


def test_dry_run_prints_the_batch_arithmetic(capsys):
    code, out, _ = run(capsys, "finetune", "--out", "unused", "--data-free", "--dry-run")
    plan = json.loads(out)
    assert code == 0 and plan["plan"]["iterations"] == 1250 and plan["plan"]["images"] == 20000
    assert "20 kimg at batch 16 = 1,250 iterations" in plan["summary"]
    code, out, _ = run(capsys, "finetune", "--out", "unused", "--data-free", "--preset", "reference", "--lambda-r",
                       "0", "--dry-run")
    config = json.loads(out)["config"]
    assert (config["reward_step"], config["micro_batch"], config["lazy_gain"], config["lambda_c"]) == (
        "separate", 1, False, 0.0)
    code, out, _ = run(capsys, "finetune", "--out", "unused", "--preset", "synthetic", "--kimg", "0.2", "--g-lr",
                       "0.001", "--no-lazy-gain", "--trajectory-seeds", "none", "--reward-standardise", "off",
                       "--dry-run")
    config = json.loads(out)["config"]  # the preset's recipe, except what was given
    assert (config["kimg"], config["g_lr"], config["lazy_gain"], config["trajectory_seeds"]) == (0.2, 0.001, False, [])
    assert (config["batch"], config["density_reg"], config["data_free"], config["ema_kimg"]) == (4, 0.0, True, 0.1)
    assert "0.2 kimg at batch 4 = 50 iterations" in json.loads(out)["summary"]


def test_a_tiny_run_and_its_resume_from_the_command_line(capsys, tmp_path, tiny_reward_path):
    code, out, err = run(capsys, "finetune", *TINY, "--reward", str(tiny_reward_path), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "trajectory seeds: mean reward" in out and "snapshots/0000002" in out
    code, _, err = run(capsys, "finetune", *TINY, "--reward", str(tiny_reward_path), "--out", str(tmp_path / "r"))
    assert code == 2 and "pass --resume" in err
    code, out, err = run(capsys, "finetune", *TINY, "--kimg", "0.016", "--reward", str(tiny_reward_path), "--out",
                         str(tmp_path / "r"), "--resume")
    assert code == 0 and "snapshots/0000004" in out, err


def test_bad_inputs_exit_2_with_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "finetune", *TINY, "--out", str(tmp_path / "r"))
    assert code == 2 and "needs --reward" in err
    code, _, err = run(capsys, "finetune", *TINY, "--out", str(tmp_path / "r"), "--lambda-r", "0",
                       "--data", "missing.zip")
    assert code == 2 and "--data" in err
    code, _, err = run(capsys, "finetune", *TINY, "--out", str(tmp_path / "r"), "--lambda-r", "0",
                       "--mesh-seeds", "x")
    assert code == 2 and "--mesh-seeds" in err
    assert not (tmp_path / "r").exists()


def test_every_config_field_is_an_option_with_the_configs_default(capsys):
    from nerfsculpt.finetune.config import FinetuneConfig

    code, out, _ = run(capsys, "finetune", "--out", "unused", "--data-free", "--dry-run")
    expected = json.loads(json.dumps(FinetuneConfig(data_free=True).to_dict()))
    assert code == 0 and json.loads(out)["config"] == expected
