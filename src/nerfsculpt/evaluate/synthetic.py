"""The built-in benchmark's ground truth: the oracle's per-defect verdict and a simulated A/B user study.

On the synthetic generator every sample's geometry has a true quality (``synthetic.oracle``), so a
fine-tune can be judged without people:

- :func:`oracle_comparison`: per defect (bumps, nose, holes, floaters, asymmetry; higher = worse) and
  for the overall quality (higher = better), the mean before and after on the same latents, the mean
  change with its bootstrap 95 % interval, and the shares of seeds better and worse;
- :func:`simulated_user_study`: a panel of simulated annotators (the paper's 17) sees each seed's
  before/after pair in a random order and picks the better geometry or "no preference"; the counts
  go through the same statistics as ``nerfsculpt study report`` (Table 3's proportions, Cohen's h,
  the exact binomial test and the Clopper-Pearson interval; ``preferences.user_study``).

Example::

    before_scores, after_scores = oracle_scores(G0, seeds, oracle), oracle_scores(G1, seeds, oracle)
    table = oracle_comparison(before_scores, after_scores, oracle)
    study = simulated_user_study(before_scores, after_scores, oracle)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nerfsculpt.stats import bootstrap_mean

PAPER_RESPONDENTS = 17
"""Respondents of the paper's user study, each answering every pair (§4.2.1)."""


def _quality(oracle: Any, scores: np.ndarray) -> np.ndarray:  # [S, 5] -> [S]
    return -(scores @ np.asarray(oracle.config.weights, dtype=np.float64))


def oracle_comparison(before: dict[int, np.ndarray], after: dict[int, np.ndarray], oracle: Any) -> dict[str, Any]:
    """Per-defect and overall before/after table of two ``synthetic.preferences.oracle_scores`` results."""
    from nerfsculpt.synthetic.heads import DEFECTS

    seeds = sorted(before.keys() & after.keys())
    b = np.stack([before[s] for s in seeds]).astype(np.float64)  # (S, 5)
    a = np.stack([after[s] for s in seeds]).astype(np.float64)
    columns = {name: (b[:, k], a[:, k], -1.0) for k, name in enumerate(DEFECTS)}  # defect scores: lower is better
    columns["quality"] = (_quality(oracle, b), _quality(oracle, a), 1.0)
    rows = []
    for name, (x, y, better_sign) in columns.items():
        change = y - x
        rows.append({"measure": name, "higher_is_better": better_sign > 0, "before": float(x.mean()),
                     "after": float(y.mean()), "change": float(change.mean()), "change_ci95": bootstrap_mean(change),
                     "better": float((better_sign * change > 0).mean()),
                     "worse": float((better_sign * change < 0).mean())})
    return {"seeds": len(seeds), "rows": rows}


def simulated_user_study(before: dict[int, np.ndarray], after: dict[int, np.ndarray], oracle: Any,
                         respondents: int = PAPER_RESPONDENTS, temperature: float = 0.1, cant_decide: float = 0.05,
                         seed: int = 0) -> dict[str, Any]:
    """An A/B study of the same seeds' before/after geometry answered by simulated annotators.

    Each of ``respondents`` annotators (Bradley-Terry noise ``temperature`` in oracle units, "can't
    decide" = "no preference" with probability ``cant_decide``, seeds ``seed + k``) answers every
    pair, shown in a random order. Returns the counts and ``preferences.user_study.report``.
    """
    from nerfsculpt.preferences.user_study import StudyCounts, report
    from nerfsculpt.synthetic.annotators import AnnotatorPanel, SimulatedAnnotator

    seeds = sorted(before.keys() & after.keys())
    panel = AnnotatorPanel([SimulatedAnnotator(f"sim{k}", temperature=temperature, cant_decide_rate=cant_decide,
                                               seed=seed + k, emphasis=oracle.config.weights)
                            for k in range(respondents)])
    order = np.random.default_rng(seed).random(len(seeds)) < 0.5  # True: the tuned sample is shown first
    tuned = original = none = 0
    for q, (s, tuned_first) in enumerate(zip(seeds, order, strict=True)):
        pair = np.stack([after[s], before[s]] if tuned_first else [before[s], after[s]])  # (2, 5)
        for answer in panel.answer(pair, question_id=q).values():
            if answer.cant_decide:
                none += 1
            elif (answer.ranking[0] == 0) == bool(tuned_first):
                tuned += 1
            else:
                original += 1
    counts = StudyCounts(tuned, original, none)
    return {"protocol": {"pairs": len(seeds), "respondents": respondents, "temperature": temperature,
                         "cant_decide": cant_decide, "seed": seed}, **report(counts)}
