"""Seeded train / val / test partitions, reproducing the reference code's exactly.

The reference (``docs/method/reference_method.md`` §3.5) splits the ranking rows with scikit-learn's
``train_test_split(rows, test_size=0.30, train_size=0.70, random_state=42)`` and the 30 % again
50/50 with ``random_state=42``; the anchors (§3.3) with integer sizes 700 / 300 then 150 / 150.
scikit-learn's shuffle split draws ``numpy.random.RandomState(seed).permutation(n)``, takes the
first ``n_test`` indices as the test part and the next ``n_train`` as the train part, with
``n_test = ceil(test_size * n)`` and ``n_train = floor(train_size * n)`` for fractions. This module
does the same with numpy alone (no scikit-learn dependency): 3,042 / 652 / 652 questions on the
paper's 4,346, 700 / 150 / 150 anchor seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

PAPER_FRACTIONS = (0.70, 0.15, 0.15)
"""Train / val / test fractions of the questions (§3.5)."""
REFERENCE_SEED = 42
"""``random_state`` of every reference split."""
ANCHOR_SEEDS = range(100000, 101000)
"""High-quality anchor seeds, sampled at psi = 0.25 (§3.3)."""
ANCHOR_PSI = 0.25
ANCHOR_SIZES = (700, 150, 150)
"""Train / val / test anchor counts (§3.3)."""


def _size(size: float | int, n: int, rounding) -> int:
    if isinstance(size, float):
        if not 0 < size < 1:
            raise ValueError(f"a fractional size must be in (0, 1), got {size}")
        return int(rounding(size * n))
    if not 0 <= size <= n:
        raise ValueError(f"an integer size must be in [0, {n}], got {size}")
    return int(size)


def shuffle_split(rows: Sequence[T], test_size: float | int, train_size: float | int,
                  seed: int = REFERENCE_SEED) -> tuple[list[T], list[T]]:
    """``(train, test)`` as scikit-learn's ``train_test_split(rows, test_size=, train_size=, random_state=seed)``.

    Both parts are in permutation order. Float sizes are fractions (test rounded up, train down),
    int sizes are counts.
    """
    n = len(rows)
    n_test = _size(test_size, n, math.ceil)
    n_train = _size(train_size, n, math.floor)
    if n_test + n_train > n:
        raise ValueError(f"train ({n_train}) + test ({n_test}) exceed the {n} rows")
    if n_train == 0 or n_test == 0:
        raise ValueError(f"split of {n} rows leaves an empty part (train {n_train}, test {n_test})")
    permutation = np.random.RandomState(seed).permutation(n)
    test = [rows[i] for i in permutation[:n_test]]
    train = [rows[i] for i in permutation[n_test : n_test + n_train]]
    return train, test


def three_way_split(rows: Sequence[T], sizes: tuple[float, float, float] | tuple[int, int, int] = PAPER_FRACTIONS,
                    seed: int = REFERENCE_SEED) -> tuple[list[T], list[T], list[T]]:
    """``(train, val, test)`` as the reference: split off val + test, then split it into val and test.

    ``sizes`` are fractions summing to 1 or counts (the reference's ``split_dset_partitions`` and
    ``get_goodmeshes_and_split``).
    """
    n_train, n_val, n_test = sizes
    if all(isinstance(s, float) for s in sizes):
        if not math.isclose(sum(sizes), 1.0):
            raise ValueError(f"fractions must sum to 1, got {sizes}")
        train, rest = shuffle_split(rows, n_val + n_test, n_train, seed)
        val, test = shuffle_split(rest, n_test / (n_test + n_val), n_val / (n_test + n_val), seed)
    elif all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        train, rest = shuffle_split(rows, n_val + n_test, n_train, seed)
        val, test = shuffle_split(rest, n_test, n_val, seed)
    else:
        raise ValueError(f"sizes must be three fractions or three counts, got {sizes}")
    return train, val, test


def anchor_split(seed: int = REFERENCE_SEED) -> dict[str, list[int]]:
    """The reference's anchor seeds per partition: ``{"train": 700 seeds, "val": 150, "test": 150}``."""
    train, val, test = three_way_split(list(ANCHOR_SEEDS), ANCHOR_SIZES, seed)
    return {"train": train, "val": val, "test": test}
