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

from pathlib import Path
from typing import Any, Literal

import numpy as np

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.stats import slope_test

MEASURES = {"reward": ("rewards", "reward"), "oracle": ("oracle", "quality")}
"""measure -> (folder of RUN with tick-K.csv files, the column read)."""


class RunError(NerfsculptError, ValueError):
    """A run directory lacks what an analysis reads; the message says what to do."""


def run_slope(run: str | Path, measure: Literal["reward", "oracle"] = "reward",
              tick: int | None = None) -> dict[str, Any]:
    """The slope test of a run's trajectory seeds from tick 0 to ``tick`` (default: the last one logged)."""
    folder, column = MEASURES[measure]
    from nerfsculpt.finetune.monitor import logged_ticks, read_tick_table

    logged = logged_ticks(run, folder)
    if len(logged) < 2 or logged[0] != 0:
        raise RunError(f"{run} has no {folder}/tick-000000.csv and a later tick; the run must track trajectory seeds "
                       f"({'--oracle on' if measure == 'oracle' else '--trajectory-seeds'}) for at least one tick")
    tick = logged[-1] if tick is None else tick
    if tick not in logged:
        raise RunError(f"{run}/{folder} has no tick {tick}; logged ticks: {logged}")
    start, end = ({s: row[column] for s, row in read_tick_table(run, folder, t).items()} for t in (0, tick))
    seeds = sorted(start.keys() & end.keys())
    if len(seeds) < 3:
        raise RunError(f"{run}/{folder}: {len(seeds)} seeds in both ticks; the slope needs at least 3")
    initial, final = np.array([start[s] for s in seeds]), np.array([end[s] for s in seeds])  # (S,)
    return {"run": str(run), "measure": measure, "tick": tick, "seeds": len(seeds), **slope_test(initial, final),
            "initial": initial.tolist(), "final": final.tolist()}
