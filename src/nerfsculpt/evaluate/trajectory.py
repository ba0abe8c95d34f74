"""Final against initial: did the samples that started worse gain more? (paper §4.2)

See docs/method/reference_method.md §7.2.

A fine-tuning run scores its trajectory seeds every tick on G_ema at psi 1 (``RUN/rewards/tick-K.csv``,
Fig. 8) and, on the synthetic benchmark, their oracle quality (``RUN/oracle/tick-K.csv``). This
module fits OLS ``final = a + b * initial`` over the seeds between tick 0 and the last (or a given)
tick: b with its 95 % interval and the p-value of H0: b = 1 (``stats.slope_test``; not the
reference's regression of per-seed trends). The paper: b = 0.33 [0.23, 0.43], p ~ 3e-28; its
control b = 0.81.

Example::

    run_slope("runs/tune")                      # the reward's slope
    run_slope("runs/tune", measure="oracle")    # the oracle quality's (synthetic benchmark)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.stats import slope_test

MEASURES = {"reward": ("rewards", "reward"), "oracle": ("oracle", "quality")}
"""measure -> (folder of RUN with tick-K.csv files, the column read)."""


class RunError(NerfsculptError, ValueError):
    """A run directory lacks what an analysis reads; the message says what to do."""


def ticks(run: str | Path, folder: str) -> list[int]:
    """The ticks with a ``RUN/folder/tick-NNNNNN.csv``, sorted (other files are ignored)."""
    stems = (p.stem.removeprefix("tick-") for p in (Path(run) / folder).glob("tick-*.csv"))
    return sorted(int(stem) for stem in stems if stem.isdigit())


def read_tick(run: str | Path, folder: str, tick: int, column: str) -> dict[int, float]:
    """{seed: value} of one column of ``RUN/folder/tick-K.csv``."""
    from nerfsculpt.finetune.monitor import TICK_NAME

    with (Path(run) / folder / f"{TICK_NAME.format(tick=tick)}.csv").open(newline="") as f:
        return {int(row["seed"]): float(row[column]) for row in csv.DictReader(f)}


def run_slope(run: str | Path, measure: Literal["reward", "oracle"] = "reward",
              tick: int | None = None) -> dict[str, Any]:
    """The slope test of a run's trajectory seeds from tick 0 to ``tick`` (default: the last one logged)."""
    folder, column = MEASURES[measure]
    logged = ticks(run, folder)
    if len(logged) < 2 or logged[0] != 0:
        raise RunError(f"{run} has no {folder}/tick-000000.csv and a later tick; the run must track trajectory seeds "
                       f"({'--oracle on' if measure == 'oracle' else '--trajectory-seeds'}) for at least one tick")
    tick = logged[-1] if tick is None else tick
    if tick not in logged:
        raise RunError(f"{run}/{folder} has no tick {tick}; logged ticks: {logged}")
    start, end = read_tick(run, folder, 0, column), read_tick(run, folder, tick, column)
    seeds = sorted(start.keys() & end.keys())
    if len(seeds) < 3:
        raise RunError(f"{run}/{folder}: {len(seeds)} seeds in both ticks; the slope needs at least 3")
    initial, final = np.array([start[s] for s in seeds]), np.array([end[s] for s in seeds])  # (S,)
    return {"run": str(run), "measure": measure, "tick": tick, "seeds": len(seeds), **slope_test(initial, final),
            "initial": initial.tolist(), "final": final.tolist()}
