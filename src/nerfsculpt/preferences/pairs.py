"""From answers to training data: ranked lists, preference pairs, anchors and splits.

A **ranked list** is an ordered list of items, best first, from one answer:

- ``mode="best_worst"`` (the paper): ``[best, worst]``; the middle ranks are dropped;
- ``mode="full"`` (ImageReward's convention): the full ranking when the annotator gave one, else
  ``[best, worst]``.

"Can't decide" answers give no list (ties are skipped). The pairs of a list are all
``C(k, 2)`` ``(i, j)`` with i ranked above j (``list_pairs``): one pair for best/worst, three for
an anchored list ``[x_HQ, winner, loser]`` (§3.3-3.4 of ``docs/method/reference_method.md``).

Example::

    lists = ranked_lists(store.answers("paper"), mode="best_worst")
    parts = split_lists(lists, by="question")          # {"train": [...], "val": [...], "test": [...]}
    anchored = add_anchors(parts["train"], anchor_items("ffhq512-128.pkl", "train"), seed=0)
    pairs = [p for lst in anchored for p in list_pairs(lst)]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from nerfsculpt.preferences.splits import ANCHOR_PSI, PAPER_FRACTIONS, REFERENCE_SEED, anchor_split, three_way_split
from nerfsculpt.preferences.store import Answer, Item, PreferenceStore

MODES = ("best_worst", "full")


@dataclass(frozen=True)
class RankedList:
    """Items of one answer, best first."""

    items: tuple[Item, ...]
    question_id: int
    annotator: str
    anchored: bool = False
    """True when ``items[0]`` is a prepended high-quality anchor."""


@dataclass(frozen=True)
class Pair:
    """``winner`` preferred over ``loser``."""

    winner: Item
    loser: Item
    question_id: int
    annotator: str


def ranked_lists(store: PreferenceStore, answers: Sequence[Answer], mode: str = "best_worst") -> list[RankedList]:
    """One ranked list per decided answer, in the answers' order."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    items_by_id = {}
    for question in store.questions():
        items_by_id.update(zip(question.item_ids, question.items, strict=True))
    lists = []
    for answer in answers:
        if answer.cant_decide:
            continue
        order = answer.ranking if (mode == "full" and answer.ranking) else (answer.best, answer.worst)
        lists.append(RankedList(tuple(items_by_id[i] for i in order), answer.question_id, answer.annotator))
    return lists


def list_pairs(ranked: RankedList) -> list[Pair]:
    """All C(k, 2) pairs of a ranked list, the earlier item preferred (``itertools.combinations`` order)."""
    return [Pair(a, b, ranked.question_id, ranked.annotator) for a, b in itertools.combinations(ranked.items, 2)]


def expand_pairs(lists: Sequence[RankedList]) -> list[Pair]:
    """Pairs of every list, concatenated."""
    return [pair for ranked in lists for pair in list_pairs(ranked)]


def anchor_items(generator: str, partition: str, generator_hash: str = "", psi: float = ANCHOR_PSI,
                 cutoff: int | None = 14, view: str = "canonical") -> list[Item]:
    """The reference's high-quality anchors of one partition (seeds 100000-100999 at psi 0.25, split
    700 / 150 / 150, §3.3) as items of ``generator``."""
    seeds = anchor_split()[partition]
    return [Item(generator, generator_hash, seed=s, psi=psi, cutoff=cutoff, view=view, kind="anchor") for s in seeds]


def add_anchors(lists: Sequence[RankedList], anchors: Sequence[Item], seed: int = 0) -> list[RankedList]:
    """Prepend one anchor, drawn uniformly with replacement from ``anchors``, to every list: [x_HQ, w, l].

    The draws come from ``numpy.random.RandomState(seed)`` in list order, so a data loader that
    wants fresh anchors each epoch passes a different seed (the reference re-creates
    ``RandomState(worker_id)`` every epoch and so replays the same sequence, §3.3).
    """
    if not anchors:
        raise ValueError("no anchors to draw from")
    rng = np.random.RandomState(seed)
    picks = rng.randint(0, len(anchors), size=len(lists))
    return [replace(ranked, items=(anchors[k], *ranked.items), anchored=True)
            for ranked, k in zip(lists, picks, strict=True)]


def split_lists(lists: Sequence[RankedList], by: str = "question",
                fractions: tuple[float, float, float] = PAPER_FRACTIONS,
                seed: int = REFERENCE_SEED) -> dict[str, list[RankedList]]:
    """Train / val / test partitions of ranked lists.

    ``by="question"``: the distinct questions are split as the reference splits its rows (a seeded
    permutation of the question ids in creation order, ``splits.three_way_split``; 3,042 / 652 / 652
    on the paper's data) and every list follows its question, so answers of one question never straddle partitions.
    ``by="annotator"``: the distinct annotators (sorted) are split the same way (held-out people).
    """
    if by not in ("question", "annotator"):
        raise ValueError(f"by must be 'question' or 'annotator', got {by!r}")
    key = (lambda r: r.question_id) if by == "question" else (lambda r: r.annotator)
    units = sorted({key(r) for r in lists})  # question ids in creation order (an imported CSV's row order)
    if len(units) < 3:
        raise ValueError(f"need at least 3 distinct {by}s to split, got {len(units)}")
    train, val, test = three_way_split(units, fractions, seed)
    where = {u: name for name, part in (("train", train), ("val", val), ("test", test)) for u in part}
    out: dict[str, list[RankedList]] = {"train": [], "val": [], "test": []}
    for ranked in lists:
        out[where[key(ranked)]].append(ranked)
    return out
