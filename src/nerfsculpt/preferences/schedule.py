"""Question design: which seeds go into which question, in which positions.

``design_questions`` draws question sizes uniformly from a range (2-6 by default), fills each
question with the seeds shown least often so far (ties broken at random), so every seed is shown
``n_questions * mean size / n_seeds`` times give or take one, and shuffles the positions. With
``repeats``, that many earlier questions are asked again at the end with their positions
reshuffled (self-consistency checks, ``agreement.self_consistency``). Deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nerfsculpt.preferences.store import MAX_ITEMS, MIN_ITEMS


@dataclass(frozen=True)
class DesignedQuestion:
    seeds: tuple[int, ...]
    """Seeds in display order."""
    repeat_of: int | None = None
    """Index (in the returned list) of the question this one repeats."""


def parse_item_range(text: str) -> tuple[int, int]:
    """``"2-6"`` -> (2, 6); ``"4"`` -> (4, 4); both within the store's 2-6."""
    parts = text.split("-")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, -1)
    except ValueError:
        low, high = 0, -1
    if not MIN_ITEMS <= low <= high <= MAX_ITEMS:
        raise ValueError(f"items must be a number or a range within {MIN_ITEMS}-{MAX_ITEMS} (e.g. '2-6' or '4'), "
                         f"got {text!r}")
    return low, high


def design_questions(seeds: Sequence[int], n_questions: int, items: tuple[int, int] = (MIN_ITEMS, MAX_ITEMS),
                     repeats: int = 0, seed: int = 0) -> list[DesignedQuestion]:
    """``n_questions`` questions of balanced exposure, then ``repeats`` repeated ones."""
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    low, high = items
    if not MIN_ITEMS <= low <= high <= MAX_ITEMS:
        raise ValueError(f"items must be within {MIN_ITEMS}-{MAX_ITEMS}, got {items}")
    if len(seeds) < high:
        raise ValueError(f"{len(seeds)} seeds cannot fill questions of {high} items; sample more seeds or pass "
                         f"a smaller --items")
    if n_questions < 1 or not 0 <= repeats <= n_questions:
        raise ValueError(f"need n_questions >= 1 and 0 <= repeats <= n_questions, got {n_questions}, {repeats}")
    rng = np.random.default_rng(seed)
    shown = np.zeros(len(seeds), dtype=np.int64)
    out = []
    for _ in range(n_questions):
        k = int(rng.integers(low, high + 1))
        order = np.lexsort((rng.random(len(seeds)), shown))  # least shown first, random among equals
        chosen = order[:k]
        shown[chosen] += 1
        positions = rng.permutation(k)
        out.append(DesignedQuestion(tuple(seeds[chosen[p]] for p in positions)))
    for index in sorted(rng.choice(n_questions, size=repeats, replace=False).tolist()):
        original = out[index].seeds
        out.append(DesignedQuestion(tuple(original[p] for p in rng.permutation(len(original))), repeat_of=index))
    return out
