"""Ranked lists, pair expansion, anchors and the reference's splits."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from nerfsculpt.preferences.formats import import_ranked_seeds
from nerfsculpt.preferences.pairs import (
    add_anchors,
    anchor_items,
    expand_pairs,
    list_pairs,
    ranked_lists,
    split_lists,
)
from nerfsculpt.preferences.splits import anchor_split, shuffle_split, three_way_split
from nerfsculpt.preferences.store import Item, PreferenceStore

PAPER_CSV = Path(__file__).resolve().parents[1] / "data" / "rankedseedsall.csv"  # the paper's data, §3.1


@pytest.fixture
def store(tmp_path):
    with PreferenceStore(tmp_path / "p.sqlite") as s:
        s.create_study("s", overlap=3)
        yield s


def _answer_all(store, q, ranking_slots, annotator="a"):
    ids = store.question(q).item_ids
    return store.record_answer(q, annotator, ranking=[ids[k] for k in ranking_slots])[0]


def test_best_worst_and_full_modes(store):
    q = store.add_question("s", [Item("g", seed=s) for s in (10, 11, 12, 13)])
    _answer_all(store, q, [2, 0, 3, 1])
    ids = store.question(q).item_ids
    store.record_answer(q, "b", cant_decide=True)
    store.record_answer(q, "c", best=ids[3], worst=ids[2])
    bw = ranked_lists(store, store.answers(), "best_worst")
    assert [[it.seed for it in r.items] for r in bw] == [[12, 11], [13, 12]], "can't decide is skipped"
    full = ranked_lists(store, store.answers(), "full")
    assert [it.seed for it in full[0].items] == [12, 10, 13, 11]
    assert [it.seed for it in full[1].items] == [13, 12], "no full ranking: best/worst"
    pairs = list_pairs(full[0])
    assert len(pairs) == 6 and all(p.annotator == "a" for p in pairs)
    assert [(p.winner.seed, p.loser.seed) for p in pairs] == [(12, 10), (12, 13), (12, 11), (10, 13), (10, 11),
                                                              (13, 11)]
    assert len(expand_pairs(bw)) == 2
    with pytest.raises(ValueError, match="mode"):
        ranked_lists(store, store.answers(), "middle")


def test_anchors_make_three_pairs_per_question(store):
    q = store.add_question("s", [Item("g", seed=1), Item("g", seed=2)])
    _answer_all(store, q, [1, 0])
    anchors = anchor_items("g", "train")
    anchored = add_anchors(ranked_lists(store, store.answers()), anchors, seed=3)
    (ranked,) = anchored
    assert ranked.anchored and ranked.items[0].kind == "anchor" and ranked.items[0].psi == 0.25
    assert [it.seed for it in ranked.items[1:]] == [2, 1]
    assert ranked.items[0].seed == anchors[np.random.RandomState(3).randint(0, 700)].seed
    assert [(p.winner.seed, p.loser.seed) for p in list_pairs(ranked)] == [
        (ranked.items[0].seed, 2), (ranked.items[0].seed, 1), (2, 1)]


def test_shuffle_split_matches_scikit_learn():
    rows = list(range(100, 197))
    for test_size, train_size in ((0.3, 0.7), (0.25, 0.5), (20, 60)):
        ours = shuffle_split(rows, test_size, train_size, seed=42)
        theirs = train_test_split(rows, test_size=test_size, train_size=train_size, random_state=42)
        assert list(ours) == [list(t) for t in theirs]
    with pytest.raises(ValueError):
        shuffle_split(rows, 0.6, 0.6)


def test_anchor_split_is_the_reference_one():
    parts = anchor_split()
    assert [len(parts[k]) for k in ("train", "val", "test")] == [700, 150, 150]
    seeds = list(range(100000, 101000))
    train, rest = train_test_split(seeds, test_size=300, train_size=700, random_state=42)
    val, test = train_test_split(rest, test_size=150, train_size=150, random_state=42)
    assert (parts["train"], parts["val"], parts["test"]) == (list(train), list(val), list(test))


def test_paper_split_sizes_on_the_real_csv(tmp_path):
    with PreferenceStore(tmp_path / "paper.sqlite") as store:
        assert import_ranked_seeds(store, PAPER_CSV) == 4346
        lists = ranked_lists(store, store.answers("paper"))
        parts = split_lists(lists, by="question")
        assert [len(parts[k]) for k in ("train", "val", "test")] == [3042, 652, 652]
        # the reference splits the CSV rows with scikit-learn: same winners in the same partitions
        rows = [line.split(",") for line in PAPER_CSV.read_text().splitlines()[1:]]
        train, rest = train_test_split(rows, test_size=0.15 + 0.15, train_size=0.7, random_state=42)
        val, test = train_test_split(rest, test_size=0.5, train_size=0.5, random_state=42)
        for name, reference in (("train", train), ("val", val), ("test", test)):
            assert sorted(r.items[0].seed for r in parts[name]) == sorted(int(r[1]) for r in reference)


def test_split_by_annotator_keeps_people_apart(store):
    for k in range(12):
        q = store.add_question("s", [Item("g", seed=2 * k), Item("g", seed=2 * k + 1)])
        for annotator in ("a", "b", "c"):
            _answer_all(store, q, [0, 1], annotator + str(k % 4))
    parts = split_lists(ranked_lists(store, store.answers()), by="annotator")
    people = {name: {r.annotator for r in part} for name, part in parts.items()}
    assert sum(map(len, people.values())) == 12
    assert not (people["train"] & people["val"]) and not (people["train"] & people["test"])


def test_three_way_split_validates_sizes():
    with pytest.raises(ValueError, match="sum to 1"):
        three_way_split(list(range(10)), (0.5, 0.3, 0.3))
    with pytest.raises(ValueError, match="fractions or three counts"):
        three_way_split(list(range(10)), (5, 0.3, 2))
