"""The tuned-vs-control verdict on hand-built gold curves: tolerance, shares, intervals, slope b, errors."""

import json

import numpy as np
import pytest

from nerfsculpt.cli import main
from nerfsculpt.finetune.compare import compare_runs, verdict_markdown
from nerfsculpt.finetune.config import FinetuneError
from nerfsculpt.stats import bootstrap_mean, slope_test
from nerfsculpt.synthetic.heads import DEFECTS

SEEDS = list(range(50000, 50020))


def write_run(run, quality_by_tick, rewards_by_tick=None, holes_by_tick=None):
    """A run directory with oracle/tick-K.csv (quality, defects: holes as given, the rest 0.1) and rewards."""
    (run / "oracle").mkdir(parents=True)
    for tick, quality in quality_by_tick.items():
        holes = holes_by_tick[tick] if holes_by_tick else np.zeros(len(SEEDS))
        lines = ["seed,quality," + ",".join(DEFECTS) + ",sigma_drift"]
        for i, seed in enumerate(SEEDS):
            defects = [holes[i] if name == "holes" else 0.1 for name in DEFECTS]
            lines.append(f"{seed},{quality[i]:.6f}," + ",".join(f"{v:.6f}" for v in defects) + ",0.0")
        (run / "oracle" / f"tick-{tick:06d}.csv").write_text("\n".join(lines) + "\n")
    if rewards_by_tick:
        (run / "rewards").mkdir()
        for tick, rewards in rewards_by_tick.items():
            lines = ["seed,reward"] + [f"{s},{r:.6f}" for s, r in zip(SEEDS, rewards, strict=True)]
            (run / "rewards" / f"tick-{tick:06d}.csv").write_text("\n".join(lines) + "\n")
    return run


@pytest.fixture
def runs(tmp_path):
    """Initial quality -1 + 0.05 i; tuned gains 0.3 - 0.01 i (worse seeds gain more) on 18 of 20 seeds and
    loses 0.2 on two; the control moves by +-0.01 alternately; the reward rises on 19 of 20 seeds."""
    initial = -1 + 0.05 * np.arange(20)
    gain = 0.3 - 0.01 * np.arange(20)
    gain[[3, 7]] = -0.2
    wiggle = np.where(np.arange(20) % 2 == 0, 0.01, -0.01)
    reward_end = np.ones(20)
    reward_end[5] = -1.0
    tuned = write_run(tmp_path / "tune", {0: initial, 1: initial + gain / 2, 2: initial + gain},
                      {0: np.zeros(20), 1: np.zeros(20), 2: reward_end},
                      holes_by_tick={0: np.full(20, 0.5), 1: np.full(20, 0.4), 2: np.full(20, 0.3)})
    control = write_run(tmp_path / "control", {0: initial, 2: initial + wiggle})
    return tuned, control, initial, gain, wiggle


def test_the_verdict_of_a_working_run(runs):
    tuned, control, initial, gain, wiggle = runs
    v = compare_runs(tuned, control)
    assert v["tick"] == {"tuned": 2, "control": 2} and v["seeds"] == 20
    assert v["tolerance"] == pytest.approx(0.01, abs=1e-6)  # every control change is +-0.01
    assert v["tuned_change"]["mean"] == pytest.approx(gain.mean(), abs=1e-5)
    assert v["tuned_change"]["improved"] == pytest.approx(18 / 20) and v["tuned_change"]["worse"] == pytest.approx(0.1)
    assert v["control_change"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert v["paired_difference"]["mean"] == pytest.approx((gain - wiggle).mean(), abs=1e-5)
    low, high = v["paired_difference"]["ci95"]
    assert 0 < low < v["paired_difference"]["mean"] < high
    assert v["reward_rise"] == pytest.approx(19 / 20)
    holes = v["defects"]["holes"]
    assert holes["pretrained"] == pytest.approx(0.5) and holes["tuned"] == pytest.approx(0.3)
    assert holes["control"] == pytest.approx(0.0)
    assert v["slope"]["control"]["b"] == pytest.approx(1.0, abs=0.01)
    assert v["slope"]["tuned"]["b"] < 1  # worse samples improve more
    assert v["checks"] == {"improved": True, "paired_interval_above_0": True, "control_under_a_third": True,
                           "reward_rises": True} and v["passed"]
    text = verdict_markdown(v)
    assert "verdict: PASS" in text and "| holes | 0.500 | 0.300 | 0.000 |" in text


def test_each_criterion_can_fail(runs, tmp_path):
    tuned, control, initial, gain, wiggle = runs
    v = compare_runs(tuned, control, tolerance=0.25)  # a tolerance only a few gains exceed
    assert v["tuned_change"]["improved"] == pytest.approx(4 / 20) and not v["checks"]["improved"] and not v["passed"]
    drifting = write_run(tmp_path / "drift", {0: initial, 2: initial + 0.1})  # the control moves by itself
    assert not compare_runs(tuned, drifting)["checks"]["control_under_a_third"]
    flat = write_run(tmp_path / "flat", {0: initial, 2: initial + wiggle[::-1]}, {0: np.zeros(20), 2: -np.ones(20)})
    v = compare_runs(flat, control)
    assert not v["checks"]["paired_interval_above_0"] and not v["checks"]["reward_rises"]
    assert compare_runs(control, control)["reward_rise"] is None and "reward_rises" not in compare_runs(
        control, control)["checks"]  # a run without a reward is judged on the oracle alone


def test_a_chosen_tick_and_bad_inputs(runs, tmp_path):
    tuned, control, initial, gain, wiggle = runs
    with pytest.raises(FinetuneError, match="no oracle/tick-000001.csv"):
        compare_runs(tuned, control, tick=1)  # the control has no tick 1
    with pytest.raises(FinetuneError, match="no gold curve"):
        compare_runs(tuned, tmp_path)
    other = write_run(tmp_path / "other", {0: initial + 0.5, 2: initial})
    with pytest.raises(FinetuneError, match="different generators"):
        compare_runs(tuned, other)


def test_bootstrap_and_slope_against_closed_forms():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = bootstrap_mean(values)
    assert 1.0 <= low < 2.5 < high <= 4.0
    assert bootstrap_mean(np.full(5, 2.0)) == [2.0, 2.0]
    x = np.linspace(-1, 0, 30)
    fit = slope_test(x, 0.5 * x + 0.1)  # exact line: b = 0.5 with a zero-width interval
    assert fit["b"] == pytest.approx(0.5) and fit["a"] == pytest.approx(0.1) and fit["p_b_equals_1"] < 1e-6
    noisy = slope_test(x, x + np.random.default_rng(0).normal(0, 0.05, 30))
    assert noisy["b_ci95"][0] < 1 < noisy["b_ci95"][1] and noisy["p_b_equals_1"] > 0.05


def test_the_command_prints_the_verdict_and_its_exit_code(runs, tmp_path, capsys):
    tuned, control, *_ = runs
    assert main(["finetune", "compare", str(tuned), str(control), "--out", str(tmp_path / "v.json")]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is True
    assert main(["finetune", "compare", str(tuned), str(control), "--tolerance", "0.25"]) == 1
    assert "verdict: FAIL" in capsys.readouterr().out
    assert main(["finetune", "compare", str(tuned), str(tmp_path)]) == 2
    assert "no gold curve" in capsys.readouterr().err
