"""Agreement between annotators, self-consistency, and Bradley-Terry aggregation.

Every decided answer implies a set of ordered item pairs: a full ranking orders every pair;
best/worst orders best above every other item and every other item above worst. Two answers to
the same question are compared on the item pairs both of them order:

- ``pairwise_agreement``: the fraction of such comparisons (over every question and every pair
  of its annotators) where both put the same item first. For two independent Bradley-Terry
  annotators with P(a > b) = p on a pair, the expected agreement is p^2 + (1 - p)^2.
- ``krippendorff_alpha``: Krippendorff's alpha (nominal) with one unit per (question, item pair)
  and the winner as the value (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability").
- ``self_consistency``: for questions that repeat an earlier one (``repeat_of``), the agreement of
  an annotator with their own earlier answer.
- ``bradley_terry``: item strengths from all pairs of all annotators (maximum a posteriori with a
  small Gaussian prior, which keeps strengths finite for items that always win).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from nerfsculpt.preferences.store import Answer, PreferenceStore


def ordered_pairs(answer: Answer, items: Sequence[int]) -> dict[frozenset[int], int]:
    """``{frozenset({a, b}): winner}`` for every item pair the answer orders (item ids); {} if undecided."""
    if answer.cant_decide:
        return {}
    if answer.ranking:
        return {frozenset((a, b)): a for a, b in itertools.combinations(answer.ranking, 2)}
    out = {}
    for other in items:
        if other != answer.best:
            out[frozenset((answer.best, other))] = answer.best
        if other not in (answer.best, answer.worst):
            out[frozenset((other, answer.worst))] = other
    return out


def _by_question(store: PreferenceStore, answers: Sequence[Answer]) -> dict[int, list[tuple[Answer, dict]]]:
    items = {q.id: q.item_ids for q in store.questions()}
    grouped: dict[int, list[tuple[Answer, dict]]] = defaultdict(list)
    for answer in answers:
        grouped[answer.question_id].append((answer, ordered_pairs(answer, items[answer.question_id])))
    return grouped


def pairwise_agreement(store: PreferenceStore, answers: Sequence[Answer]) -> tuple[float, int]:
    """(agreement rate, number of comparisons) over annotator pairs answering the same question."""
    agree = total = 0
    for group in _by_question(store, answers).values():
        for (_, first), (_, second) in itertools.combinations(group, 2):
            for pair in first.keys() & second.keys():
                agree += first[pair] == second[pair]
                total += 1
    return (agree / total if total else math.nan), total


def krippendorff_alpha(units: Sequence[Sequence[object]]) -> float:
    """Krippendorff's alpha for nominal values; ``units[u]`` = the values the coders gave unit u
    (missing values simply left out). Units with fewer than two values are not pairable and ignored."""
    coincidence: dict[tuple[object, object], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            coincidence[values[i], values[j]] += 1 / (m - 1)
    n_c: dict[object, float] = defaultdict(float)
    for (c, _), weight in coincidence.items():
        n_c[c] += weight
    n = sum(n_c.values())
    if n <= 1:
        return math.nan
    observed = sum(w for (c, k), w in coincidence.items() if c != k) / n
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k) / (n * (n - 1))
    return 1.0 - observed / expected if expected > 0 else math.nan


def answers_alpha(store: PreferenceStore, answers: Sequence[Answer]) -> float:
    """Krippendorff's alpha of the answers: one unit per (question, item pair), value = its winner."""
    units = []
    for group in _by_question(store, answers).values():
        values: dict[frozenset[int], list[int]] = defaultdict(list)
        for _, pairs in group:
            for pair, winner in pairs.items():
                values[pair].append(winner)
        units += [v for _, v in sorted(values.items(), key=lambda kv: sorted(kv[0]))]
    return krippendorff_alpha(units)


def self_consistency(store: PreferenceStore, answers: Sequence[Answer]) -> dict[str, tuple[float, int]]:
    """Per annotator: (agreement with their own answer to the original question, comparisons)."""
    questions = {q.id: q for q in store.questions()}
    mine = {(a.question_id, a.annotator): a for a in answers if not a.cant_decide}
    result: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (qid, annotator), answer in mine.items():
        original = questions[qid].repeat_of
        if original is None or (original, annotator) not in mine:
            continue
        now = ordered_pairs(answer, questions[qid].item_ids)
        before = ordered_pairs(mine[original, annotator], questions[original].item_ids)
        for pair in now.keys() & before.keys():
            result[annotator][0] += now[pair] == before[pair]
            result[annotator][1] += 1
    return {name: (agree / total if total else math.nan, total) for name, (agree, total) in sorted(result.items())}


def bradley_terry(pairs: Sequence[tuple[int, int]], prior: float = 0.1) -> dict[int, float]:
    """Item strengths s maximising sum log sigmoid(s_winner - s_loser) - prior / 2 * sum s^2 (L-BFGS).

    ``pairs``: (winner id, loser id). Returns ``{item id: strength}``. The prior keeps strengths
    finite for items that always win; its cost is O(pairs) per iteration, fine for 10^5 items.
    """
    from scipy.optimize import minimize

    ids = sorted({i for pair in pairs for i in pair})
    if not ids:
        return {}
    index = {item: k for k, item in enumerate(ids)}
    winners = np.array([index[a] for a, _ in pairs])
    losers = np.array([index[b] for _, b in pairs])

    def objective(s: np.ndarray) -> tuple[float, np.ndarray]:
        margin = s[winners] - s[losers]
        loss = float(np.logaddexp(0, -margin).sum() + 0.5 * prior * (s * s).sum())
        slope = -1 / (1 + np.exp(margin))  # d loss / d margin
        grad = prior * s
        np.add.at(grad, winners, slope)
        np.add.at(grad, losers, -slope)
        return loss, grad

    result = minimize(objective, np.zeros(len(ids)), jac=True, method="L-BFGS-B",
                      options={"maxiter": 2000, "gtol": 1e-9, "ftol": 1e-15})
    return {item: float(result.x[index[item]]) for item in ids}
