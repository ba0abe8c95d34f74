"""The final-against-initial slope read from a run's tick logs (nerfsculpt.evaluate.trajectory)."""

from __future__ import annotations

import numpy as np
import pytest

from nerfsculpt.evaluate.trajectory import RunError, run_slope


def write_ticks(run, folder, column, values_by_tick):
    (run / folder).mkdir(parents=True)
    for tick, values in values_by_tick.items():
        rows = "".join(f"{300000 + i},{v:.6f}\n" for i, v in enumerate(values))
        (run / folder / f"tick-{tick:06d}.csv").write_text(f"seed,{column}\n{rows}")  # finetune.monitor.TICK_NAME


def test_slope_of_a_run_that_lifts_the_worst_most(tmp_path):
    initial = np.linspace(0.0, 10.0, 20)
    final = 4.0 + 0.5 * initial  # worse samples gain more: b = 0.5 exactly
    write_ticks(tmp_path, "rewards", "reward", {0: initial, 1: initial + 1, 2: final})
    result = run_slope(tmp_path)
    assert result["tick"] == 2 and result["seeds"] == 20
    assert result["b"] == pytest.approx(0.5, abs=1e-6) and result["p_b_equals_1"] < 1e-6
    assert run_slope(tmp_path, tick=1)["b"] == pytest.approx(1.0, abs=1e-6)


def test_missing_logs_are_named(tmp_path):
    with pytest.raises(RunError, match="tick-000000.csv"):
        run_slope(tmp_path, measure="oracle")
    write_ticks(tmp_path, "rewards", "reward", {0: [1.0, 2.0, 3.0], 1: [1.0, 2.0, 3.5]})
    with pytest.raises(RunError, match="no tick 5"):
        run_slope(tmp_path, tick=5)
