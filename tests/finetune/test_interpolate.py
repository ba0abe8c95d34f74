"""G_alpha between a run's pretrained and fine-tuned generators: exact weights, scores per alpha, bad inputs."""

import json

import pytest
import torch

from nerfsculpt.cli import main
from nerfsculpt.finetune.config import FinetuneError
from nerfsculpt.finetune.interpolate import interpolate_generators, interpolate_run
from nerfsculpt.finetune.run import finetune
from nerfsculpt.finetune.snapshot import latest_snapshot
from nerfsculpt.generator.checkpoint import load_generator
from tests.finetune.conftest import tiny_run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tuned_run(tiny_reward_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("interpolate") / "run"
    finetune(tiny_run(oracle="on", oracle_resolution=16, g_lr=0.01), "tiny-random", tiny_reward_path, run, CPU,
             progress=False)
    return run


def test_interpolation_is_linear_in_every_floating_weight(tuned_run):
    G_0, G_1 = load_generator(tuned_run / "pretrained"), load_generator(latest_snapshot(tuned_run))
    half = interpolate_generators(G_0, G_1, 0.5).state_dict()
    a, b = G_0.state_dict(), G_1.state_dict()
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert moved  # the run changed the generator
    for k in a:
        expected = (a[k] + b[k]) / 2 if a[k].is_floating_point() else b[k]
        torch.testing.assert_close(half[k], expected)
    assert all(torch.equal(interpolate_generators(G_0, G_1, 1.0).state_dict()[k], b[k]) for k in b)


def test_a_run_is_interpolated_saved_and_scored(tuned_run, capsys):
    assert main(["finetune", "interpolate", str(tuned_run), "--alphas", "1,0.5", "--device", "cpu",
                 "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "| alpha | reward_mean | oracle_quality_mean | sigma_drift | generator |" in table
    out = tuned_run / "interpolate" / latest_snapshot(tuned_run).name
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["alpha"]: row for row in summary["alphas"]}
    assert sorted(rows) == [0.0, 0.5, 1.0] and summary["seeds"] == [300000, 300001, 2]
    assert rows[0.0]["sigma_drift"] == 0.0 < rows[0.5]["sigma_drift"] < rows[1.0]["sigma_drift"]
    last = [json.loads(line) for line in (tuned_run / "log.jsonl").read_text().splitlines()][-1]
    assert rows[1.0]["reward_mean"] == pytest.approx(last["traj_reward_mean"], abs=1e-5)  # alpha 1 = the run's G_ema
    assert rows[1.0]["oracle_quality_mean"] == pytest.approx(last["oracle_quality_mean"], abs=1e-5)
    G_half = load_generator(out / "alpha-0.50")  # a generator directory every command accepts
    assert G_half.img_resolution == 64


def test_bad_interpolation_inputs_are_refused(tuned_run, tmp_path):
    with pytest.raises(FinetuneError, match="alphas must lie in"):
        interpolate_run(tuned_run, [0.0, 0.5])
    with pytest.raises(FinetuneError, match="not a fine-tuning run"):
        interpolate_run(tmp_path, [0.5])
    assert main(["finetune", "interpolate", str(tuned_run), "--alphas", "half"]) == 2
