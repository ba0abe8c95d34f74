"""User-study (A/B) statistics: the paper's Table 3 and its tests (paper §4.2.1; docs/method/reference_method.md §7.10).

Each answer of an ``ab`` study picks the tuned generator's geometry, the original's, or neither
("no preference", stored as can't-decide). Reported:

- proportions over all answers (the paper's Table 3): tuned / original / none;
- Cohen's h of the tuned and original proportions, ``2 asin(sqrt(p_t)) - 2 asin(sqrt(p_o))``;
- the preference rate excluding ties, ``tuned / (tuned + original)``, with the exact two-sided
  binomial test against 0.5 and the exact (Clopper-Pearson) 95 % confidence interval.

Known answer (the paper): 506 / 141 / 33 -> 0.744 / 0.207 / 0.049, h = 1.135.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from nerfsculpt.preferences.store import PreferenceError, PreferenceStore

PAPER_COUNTS = (506, 141, 33)
"""Tuned / original / no preference in the paper's user study (17 respondents x 40 pairs)."""


@dataclass(frozen=True)
class StudyCounts:
    tuned: int
    original: int
    none: int = 0

    def __post_init__(self) -> None:
        if min(self.tuned, self.original, self.none) < 0 or self.total == 0:
            raise ValueError(f"counts must be non-negative with a positive total, got {self}")

    @property
    def total(self) -> int:
        return self.tuned + self.original + self.none


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h between two proportions: ``2 asin(sqrt(p1)) - 2 asin(sqrt(p2))``."""
    return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))


def report(counts: StudyCounts, confidence: float = 0.95) -> dict[str, Any]:
    """Proportions, Cohen's h, exact binomial test and Clopper-Pearson interval of one set of counts."""
    from scipy.stats import binomtest

    n = counts.total
    p_t, p_o, p_n = counts.tuned / n, counts.original / n, counts.none / n
    out: dict[str, Any] = {"counts": asdict(counts), "total": n,
                           "proportions": {"tuned": p_t, "original": p_o, "none": p_n},
                           "cohens_h": cohens_h(p_t, p_o)}
    decided = counts.tuned + counts.original
    if decided:
        test = binomtest(counts.tuned, decided, 0.5, alternative="two-sided")
        interval = test.proportion_ci(confidence_level=confidence, method="exact")
        out["preference_excluding_ties"] = {"rate": counts.tuned / decided, "n": decided, "p_value": test.pvalue,
                                            "ci": [interval.low, interval.high], "confidence": confidence}
    return out


def counts_from_store(store: PreferenceStore, study: str) -> dict[str, StudyCounts]:
    """``{"all": counts, annotator: counts, ...}`` of an ``ab`` study made by ``nerfsculpt study new``."""
    info = store.study(study)
    if info["kind"] != "ab":
        raise PreferenceError(f"study {study!r} is a {info['kind']} study; the report needs an A/B study made by "
                              f"'nerfsculpt study new'")
    after = info["config"].get("after", {}).get("fingerprint")
    if not after:
        raise PreferenceError(f"study {study!r} does not record which generator is the tuned one (config 'after')")
    items = {i: it for q in store.questions(study) for i, it in zip(q.item_ids, q.items, strict=True)}
    tallies: dict[str, list[int]] = {}
    for answer in store.answers(study=study):
        for key in ("all", answer.annotator):
            tally = tallies.setdefault(key, [0, 0, 0])
            if answer.cant_decide:
                tally[2] += 1
            elif items[answer.best].generator_hash == after:
                tally[0] += 1
            else:
                tally[1] += 1
    return {key: StudyCounts(*tally) for key, tally in tallies.items()}


def format_table(reports: dict[str, dict[str, Any]]) -> str:
    """Plain-text table: one row per key ("all" first, then annotators)."""
    lines = [f"{'who':<16} {'n':>5} {'tuned':>7} {'original':>9} {'none':>6} {'h':>7} {'rate (no ties)':>15} "
             f"{'95% CI':>17} {'p (binomial)':>13}"]
    for key, r in reports.items():
        p = r["proportions"]
        row = (f"{key[:16]:<16} {r['total']:>5} {p['tuned']:>7.3f} {p['original']:>9.3f} {p['none']:>6.3f} "
               f"{r['cohens_h']:>7.3f}")
        pref = r.get("preference_excluding_ties")
        if pref:
            low, high = pref["ci"]
            row += f" {pref['rate']:>15.3f} {f'[{low:.3f}, {high:.3f}]':>17} {pref['p_value']:>13.3g}"
        lines.append(row)
    return "\n".join(lines)
