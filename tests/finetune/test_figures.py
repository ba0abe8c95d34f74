"""The gold-curve figure (``finetune.figures``)."""

import numpy as np
import pytest
from PIL import Image

from nerfsculpt.finetune.figures import gold_curve_png, gold_curve_series

HISTORY = [
    {"tick": 0, "kimg": 0.0, "traj_reward_mean": -57.0, "traj_reward_std": 4.0, "oracle_quality_mean": -0.9,
     "oracle_quality_std": 0.5, "sigma_drift": 0.0},
    {"tick": 1, "kimg": 0.1, "traj_reward_mean": -49.0, "traj_reward_std": 4.5, "oracle_quality_mean": -0.8,
     "oracle_quality_std": 0.5, "sigma_drift": 1.5},
    {"tick": 2, "kimg": 0.2, "traj_reward_mean": -41.0, "traj_reward_std": 5.0, "oracle_quality_mean": -1.15,
     "oracle_quality_std": 0.6, "sigma_drift": 4.0},
]


def test_series_are_changes_in_tick_0_standard_deviations():
    series = gold_curve_series(HISTORY)
    assert series["kimg"] == [0.0, 0.1, 0.2] and series["sigma_drift"] == [0.0, 1.5, 4.0]
    np.testing.assert_allclose(series["reward"], [0.0, 2.0, 4.0])  # +8 and +16 in units of the tick-0 std 4
    np.testing.assert_allclose(series["oracle"], [0.0, 0.2, -0.5])  # the proxy climbs while the truth falls
    without_reward = gold_curve_series([{k: v for k, v in r.items() if not k.startswith("traj")} for r in HISTORY])
    assert without_reward["reward"] == [] and len(without_reward["oracle"]) == 3  # a control run has no reward


def test_the_figure_is_a_png_and_needs_oracle_ticks(tmp_path):
    path = gold_curve_png(HISTORY, tmp_path / "gold.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels != 255).any(axis=-1).mean() > 0.02  # something is drawn
    assert gold_curve_png([{"tick": 0, "kimg": 0.0}], tmp_path / "none.png") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gold.png"]


@pytest.mark.parametrize("missing", ["oracle_quality_std", "traj_reward_std"])
def test_a_zero_or_missing_spread_falls_back_to_raw_changes(missing):
    history = [{k: v for k, v in r.items() if k != missing} for r in HISTORY]
    key = "oracle" if missing.startswith("oracle") else "reward"
    raw = [r[f"{'oracle_quality' if key == 'oracle' else 'traj_reward'}_mean"] for r in HISTORY]
    np.testing.assert_allclose(gold_curve_series(history)[key], np.array(raw) - raw[0])
