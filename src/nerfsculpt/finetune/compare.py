"""Judge a fine-tuning run against its control on the synthetic benchmark's gold judge, the oracle.

Both runs must have tracked the same trajectory seeds with the gold curve on (``RUN/oracle/tick-K.csv``,
G_ema at psi 1; ``finetune.monitor.OracleTrajectory``). Per seed, the change of the oracle's quality
from tick 0 (the pretrained generator) to the judged tick is compared:

- **tolerance**: a seed counts as improved only when its gain exceeds what the control run does by
  itself: by default the 95th percentile of the control's absolute per-seed changes (so the control
  alone "improves" about 5 % of the seeds at most);
- **criteria** (issue 22's bar, docs/finetune.md): the tuned run improves >= 70 % of the seeds by more
  than the tolerance; the paired tuned - control difference has a 95 % bootstrap interval above 0;
  the control's mean change is under a third of the tuned run's; the reward rises on >= 90 % of the
  seeds (when the tuned run has a reward);
- **slope b** of final against initial quality, OLS ``final = a + b * initial`` with its 95 % interval
  and the p-value of H0: b = 1 (the paper's "worse samples improve more" is b < 1, §4.2);
- a per-defect table: the pretrained mean, each run's mean at the judged tick, the tuned change with
  its interval.

Intervals are percentile bootstraps of the mean over seeds (10,000 resamples, seeded).

Example::

    verdict = compare_runs("runs/tune", "runs/control")
    print(verdict_markdown(verdict))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nerfsculpt.finetune.config import FinetuneError
from nerfsculpt.finetune.monitor import TICK_NAME, logged_ticks, read_tick_table
from nerfsculpt.stats import bootstrap_mean, slope_test

IMPROVED_FRACTION = 0.70
"""Share of seeds the tuned run must improve by more than the tolerance."""
REWARD_RISE_FRACTION = 0.90
"""Share of seeds whose reward must rise in the tuned run."""
CONTROL_SHARE = 1 / 3
"""The control's mean change must stay under this share of the tuned run's mean gain."""
TOLERANCE_QUANTILE = 0.95
"""Default tolerance: this quantile of the control's absolute per-seed changes."""


Table = dict[int, dict[str, float]]
"""seed -> column -> value of a tick's CSV."""


def _oracle_changes(run: Path, tick: int | None) -> tuple[int, Table, Table]:
    """(judged tick, tick-0 table, judged-tick table) of a run's gold curve."""
    ticks = logged_ticks(run, "oracle")
    if not ticks or ticks[0] != 0 or len(ticks) < 2:
        raise FinetuneError(f"{run} has no gold curve to judge (needs oracle/tick-000000.csv and a later tick); run "
                            f"the fine-tuning with --oracle on and trajectory seeds")
    if tick is None:
        tick = ticks[-1]
    if tick not in ticks:
        raise FinetuneError(f"{run} has no oracle/{TICK_NAME.format(tick=tick)}.csv; its ticks are {ticks}")
    start, end = (read_tick_table(run, "oracle", t) for t in (0, tick))
    return tick, start, end


def compare_runs(tuned: str | Path, control: str | Path, tick: int | None = None,
                 tolerance: float | None = None) -> dict[str, Any]:
    """The verdict of ``tuned`` against ``control`` (module docstring); ``tick`` defaults to each run's last."""
    from nerfsculpt.synthetic.heads import DEFECTS

    tuned, control = Path(tuned), Path(control)
    tick_t, start_t, end_t = _oracle_changes(tuned, tick)
    tick_c, start_c, end_c = _oracle_changes(control, tick)
    seeds = sorted(start_t)
    if sorted(start_c) != seeds or sorted(end_t) != seeds or sorted(end_c) != seeds:
        raise FinetuneError("the two runs tracked different trajectory seeds; run the control with the tuned run's "
                            "--trajectory-seeds")
    column = lambda table, key: np.array([table[s][key] for s in seeds])  # noqa: E731  (S,)
    if not np.allclose(column(start_t, "quality"), column(start_c, "quality"), atol=1e-4):
        raise FinetuneError("the two runs start from different generators (their tick-0 oracle scores differ)")
    initial = column(start_t, "quality")
    delta_t, delta_c = column(end_t, "quality") - initial, column(end_c, "quality") - initial  # (S,)
    rule = "given" if tolerance is not None else f"{TOLERANCE_QUANTILE:.0%} quantile of the control's |per-seed change|"
    if tolerance is None:
        tolerance = float(np.quantile(np.abs(delta_c), TOLERANCE_QUANTILE))
    paired = delta_t - delta_c
    gain, drift = float(delta_t.mean()), float(delta_c.mean())
    result: dict[str, Any] = {
        "tuned": str(tuned), "control": str(control), "tick": {"tuned": tick_t, "control": tick_c},
        "seeds": len(seeds), "seed_range": [seeds[0], seeds[-1]], "tolerance": tolerance,
        "tolerance_rule": rule,
        "quality_initial_mean": float(initial.mean()),
        "tuned_change": _change(delta_t, tolerance),
        "control_change": _change(delta_c, tolerance),
        "paired_difference": {"mean": float(paired.mean()), "ci95": bootstrap_mean(paired),
                              "tuned_better": float((paired > 0).mean())},
        "slope": {"tuned": slope_test(initial, initial + delta_t), "control": slope_test(initial, initial + delta_c)},
        "defects": {name: {"pretrained": float(column(start_t, name).mean()),
                           "tuned": float(column(end_t, name).mean()), "control": float(column(end_c, name).mean()),
                           "tuned_change_ci95": bootstrap_mean(column(end_t, name) - column(start_t, name))}
                    for name in DEFECTS},
        "reward_rise": _reward_rise(tuned, tick_t, seeds),
    }
    checks = {
        "improved": result["tuned_change"]["improved"] >= IMPROVED_FRACTION,
        "paired_interval_above_0": result["paired_difference"]["ci95"][0] > 0,
        "control_under_a_third": gain > 0 and abs(drift) < CONTROL_SHARE * gain,
    }
    if result["reward_rise"] is not None:
        checks["reward_rises"] = result["reward_rise"] >= REWARD_RISE_FRACTION
    result["checks"] = checks
    result["passed"] = all(checks.values())
    return result


def _change(delta: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Mean per-seed change [S] with its interval, and the shares better / worse by more than ``tolerance``."""
    return {"mean": float(delta.mean()), "ci95": bootstrap_mean(delta), "improved": float((delta > tolerance).mean()),
            "worse": float((delta < -tolerance).mean())}


def _reward_rise(run: Path, tick: int, seeds: list[int]) -> float | None:
    """Share of ``seeds`` whose reward (RUN/rewards) rose from tick 0 to ``tick``; None without rewards."""
    first, last = (run / "rewards" / f"{TICK_NAME.format(tick=t)}.csv" for t in (0, tick))
    if not (first.is_file() and last.is_file()):
        return None
    before, after = (read_tick_table(run, "rewards", t) for t in (0, tick))
    if sorted(before) != seeds or sorted(after) != seeds:
        raise FinetuneError(f"{run}: the reward trajectory tracked other seeds than the gold curve")
    return float(np.mean([after[s]["reward"] > before[s]["reward"] for s in seeds]))


def verdict_markdown(result: dict[str, Any]) -> str:
    """The verdict as Markdown: the criteria, the changes with intervals, slope b and the per-defect table."""
    pct = lambda x: f"{100 * x:.0f} %"  # noqa: E731
    ci = lambda c: f"[{c[0]:+.3f}, {c[1]:+.3f}]"  # noqa: E731
    t, c, p = result["tuned_change"], result["control_change"], result["paired_difference"]
    lines = [
        f"{result['seeds']} seeds ({result['seed_range'][0]}-{result['seed_range'][1]}), oracle quality of G_ema at "
        f"psi 1, tick 0 -> tick {result['tick']['tuned']} (tuned) / {result['tick']['control']} (control); "
        f"pretrained mean {result['quality_initial_mean']:+.3f}; tolerance {result['tolerance']:.3f} "
        f"({result['tolerance_rule']})",
        "",
        "| run | mean change [95 % CI] | better by > tol. | worse by > tol. | slope b [95 % CI] | p (b = 1) |",
        "|---|---|---|---|---|---|",
    ]
    for name, change in (("tuned", t), ("control", c)):
        s = result["slope"][name]
        lines.append(f"| {name} | {change['mean']:+.3f} {ci(change['ci95'])} | {pct(change['improved'])} | "
                     f"{pct(change['worse'])} | {s['b']:.2f} [{s['b_ci95'][0]:.2f}, {s['b_ci95'][1]:.2f}] | "
                     f"{s['p_b_equals_1']:.2g} |")
    lines += ["", f"tuned - control: {p['mean']:+.3f} {ci(p['ci95'])}, tuned better on {pct(p['tuned_better'])} of "
                  f"the seeds" + ("" if result["reward_rise"] is None else
                                  f"; reward rose on {pct(result['reward_rise'])} of the seeds (tuned)"),
              "", "| defect (score, lower is better) | pretrained | tuned | control | tuned change [95 % CI] |",
              "|---|---|---|---|---|"]
    for name, d in result["defects"].items():
        lines.append(f"| {name} | {d['pretrained']:.3f} | {d['tuned']:.3f} | {d['control']:.3f} | "
                     f"{ci(d['tuned_change_ci95'])} |")
    names = {"improved": f"tuned improves >= {IMPROVED_FRACTION:.0%} of the seeds by more than the tolerance",
             "paired_interval_above_0": "paired tuned - control 95 % interval above 0",
             "control_under_a_third": "control's mean change under a third of the tuned gain",
             "reward_rises": f"reward rises on >= {REWARD_RISE_FRACTION:.0%} of the seeds"}
    lines += [""] + [f"- [{'x' if ok else ' '}] {names[k]}" for k, ok in result["checks"].items()]
    lines.append(f"\nverdict: {'PASS' if result['passed'] else 'FAIL'}")
    return "\n".join(lines) + "\n"
