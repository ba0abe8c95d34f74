"""Simulated annotators: Bradley-Terry win rates, Plackett-Luce rankings, emphasis, can't-decide, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfsculpt.synthetic.annotators import (
    DEFECTS,
    AnnotatorPanel,
    Answer,
    SimulatedAnnotator,
    bradley_terry_probability,
    paper_annotator,
)

DRAWS = 4000  # binomial standard error <= 0.008 per win rate


def _within_binomial_error(hits: int, n: int, p: float, n_se: float = 4.0) -> bool:
    return abs(hits / n - p) <= n_se * math.sqrt(p * (1 - p) / n) + 1e-12


@pytest.mark.parametrize(("delta", "temperature"), [(0.5, 1.0), (1.0, 0.5), (-0.3, 2.0)])
def test_pair_win_rate_matches_bradley_terry(delta, temperature):
    ann = SimulatedAnnotator("a", temperature=temperature, seed=3)
    utilities = np.array([delta, 0.0])
    wins = sum(ann.rank(utilities, q).best == 0 for q in range(DRAWS))
    p = 1 / (1 + math.exp(-delta / temperature))  # sigma((u_a - u_b) / T), written out independently
    assert bradley_terry_probability(delta, 0.0, temperature) == pytest.approx(p)
    assert _within_binomial_error(wins, DRAWS, p), (wins / DRAWS, p)


def test_pairwise_marginals_inside_a_larger_question_are_bradley_terry():
    # Plackett-Luce keeps BT probabilities for every pair whatever else is in the question.
    utilities = np.array([0.0, 1.0, -0.5, 0.4, 2.0])
    ann = SimulatedAnnotator("a", temperature=0.8, seed=11)
    above = np.zeros((5, 5))
    firsts = np.zeros(5)
    for q in range(DRAWS):
        ranking = ann.rank(utilities, q).ranking
        position = {item: rank for rank, item in enumerate(ranking)}
        above += np.array([[position[a] < position[b] for b in range(5)] for a in range(5)])
        firsts[ranking[0]] += 1
    for a, b in [(0, 1), (1, 4), (2, 3), (0, 3)]:
        p = 1 / (1 + math.exp(-(utilities[a] - utilities[b]) / 0.8))
        assert _within_binomial_error(int(above[a, b]), DRAWS, p), (a, b, above[a, b] / DRAWS, p)
    softmax = np.exp(utilities / 0.8) / np.exp(utilities / 0.8).sum()  # P(best) = softmax(u / T)
    for i in range(5):
        assert _within_binomial_error(int(firsts[i]), DRAWS, softmax[i]), (i, firsts[i] / DRAWS, softmax[i])


def test_zero_temperature_is_the_oracle_order():
    scores = np.array([[0.3, 0, 0, 0, 0], [0.1, 0, 0, 0, 0], [0.0, 0, 0, 0, 0.9], [0.2, 0, 0, 0, 0]])
    ann = SimulatedAnnotator("exact", temperature=0.0, seed=5)
    answers = {ann.rank(scores, q).ranking for q in range(50)}
    assert answers == {(1, 3, 0, 2)}  # total badness 0.3, 0.1, 0.9, 0.2
    near_zero = SimulatedAnnotator("sharp", temperature=1e-4, seed=5)
    assert {near_zero.rank(scores, q).ranking for q in range(50)} == {(1, 3, 0, 2)}
    tiny = SimulatedAnnotator("tiny", temperature=1e-310, seed=5)  # u / T would overflow to inf
    assert {tiny.rank(np.array([1.0, 2.0]), q).ranking for q in range(20)} == {(1, 0)}
    # a very hot annotator is close to uniform: every item is sometimes best
    hot = SimulatedAnnotator("hot", temperature=1e3, seed=5)
    assert {hot.rank(scores, q).best for q in range(200)} == {0, 1, 2, 3}


def test_emphasis_changes_the_preferred_item():
    # item 0 has a hole, item 1 has a bumpy surface of twice the score
    scores = np.zeros((2, 5))
    scores[0, DEFECTS.index("holes")] = 1.0
    scores[1, DEFECTS.index("bumps")] = 2.0
    neutral = SimulatedAnnotator("neutral", temperature=0.0)
    hole_hater = SimulatedAnnotator("hole_hater", temperature=0.0, emphasis={"holes": 3.0})
    assert neutral.rank(scores).best == 0
    assert hole_hater.rank(scores).best == 1
    np.testing.assert_allclose(hole_hater.utilities(scores), [-3.0, -2.0])
    as_list = SimulatedAnnotator("list", temperature=0.0, emphasis=[1, 1, 3, 1, 1])
    np.testing.assert_allclose(as_list.utilities(scores), hole_hater.utilities(scores))
    # the BT probability follows the emphasised utilities
    noisy = SimulatedAnnotator("noisy", temperature=1.0, emphasis={"holes": 3.0}, seed=2)
    wins = sum(noisy.rank(scores, q).best == 1 for q in range(DRAWS))
    assert _within_binomial_error(wins, DRAWS, 1 / (1 + math.exp(-1.0)))


def test_cant_decide_rate_and_decided_rankings_are_unchanged_by_it():
    rate = 0.2
    utilities = np.array([0.2, 0.0, -0.1])
    undecided = SimulatedAnnotator("u", temperature=1.0, cant_decide_rate=rate, seed=9)
    always = SimulatedAnnotator("d", temperature=1.0, cant_decide_rate=0.0, seed=9)
    answers = [undecided.rank(utilities, q) for q in range(DRAWS)]
    n_cant = sum(a.cant_decide for a in answers)
    assert _within_binomial_error(n_cant, DRAWS, rate)
    for q, answer in enumerate(answers):
        if answer.cant_decide:
            assert answer.ranking is None and answer.best is None and answer.worst is None
        else:
            assert answer.ranking == always.rank(utilities, q).ranking
    assert all(SimulatedAnnotator("n", cant_decide_rate=1.0).rank(utilities, q).cant_decide for q in range(20))


def test_determinism_by_seed_and_question_not_by_call_order():
    rng = np.random.default_rng(0)
    questions = [rng.random((int(rng.integers(2, 7)), 5)) for _ in range(40)]
    a1 = SimulatedAnnotator("a", temperature=0.3, cant_decide_rate=0.1, seed=7)
    a2 = SimulatedAnnotator("a", temperature=0.3, cant_decide_rate=0.1, seed=7)
    other = SimulatedAnnotator("b", temperature=0.3, cant_decide_rate=0.1, seed=8)
    forward = [a1.rank(q) for q in questions]  # implicit question ids 0, 1, 2, ...
    interleaved = []
    for q in questions:  # another annotator answering in between changes nothing
        other.rank(q)
        interleaved.append(a2.rank(q))
    assert forward == interleaved
    backward = [a2.rank(questions[i], question_id=i) for i in reversed(range(len(questions)))][::-1]
    assert backward == forward
    assert [other.rank(q, i) for i, q in enumerate(questions)] != forward
    # torch tensors are accepted and give the same answers
    assert a1.rank(torch.tensor(questions[3]), question_id=3) == forward[3]


def test_rankings_are_permutations_and_answer_properties():
    ann = paper_annotator(temperature=0.5, seed=1)
    assert (ann.name, ann.cant_decide_rate) == ("paper", 0.0)
    np.testing.assert_array_equal(ann.emphasis, np.ones(5))
    for k in range(2, 7):
        answer = ann.rank(np.random.default_rng(k).random((k, 5)))
        assert sorted(answer.ranking) == list(range(k))
        assert (answer.best, answer.worst) == (answer.ranking[0], answer.ranking[-1])
    with pytest.raises(ValueError, match="ranking exactly when"):
        Answer(ranking=None, cant_decide=False)


def test_panel_answers_per_annotator():
    panel = AnnotatorPanel([
        SimulatedAnnotator("shape", temperature=0.0, emphasis={"bumps": 0, "nose": 0, "holes": 5}),
        SimulatedAnnotator("surface", temperature=0.0, emphasis={"holes": 0}),
    ])
    scores = np.zeros((3, 5))
    scores[0, DEFECTS.index("holes")] = 1.0
    scores[1, DEFECTS.index("bumps")] = 1.0
    scores[2, DEFECTS.index("floaters")] = 0.5
    answers = panel.answer(scores, question_id=0)
    assert list(answers) == panel.names == ["shape", "surface"] and len(panel) == 2
    assert answers["shape"].ranking == (1, 2, 0)
    assert answers["surface"].ranking == (0, 2, 1)
    with pytest.raises(ValueError, match="unique"):
        AnnotatorPanel([SimulatedAnnotator("x"), SimulatedAnnotator("x")])


@pytest.mark.parametrize(
    ("make", "question", "message"),
    [
        (lambda: SimulatedAnnotator("a"), np.zeros((1, 5)), "2 to 6 items, got 1"),
        (lambda: SimulatedAnnotator("a"), np.zeros((7, 5)), "2 to 6 items, got 7"),
        (lambda: SimulatedAnnotator("a"), np.zeros(7), "2 to 6 items, got 7"),
        (lambda: SimulatedAnnotator("a"), np.zeros((3, 4)), r"expected defect scores \[K, 5\]"),
        (lambda: SimulatedAnnotator("a"), np.array([0.0, np.nan]), "must be finite"),
        (lambda: SimulatedAnnotator("a", temperature=-0.1), None, "temperature must be"),
        (lambda: SimulatedAnnotator("a", emphasis={"warts": 1.0}), None, r"unknown defect name\(s\) \['warts'\]"),
        (lambda: SimulatedAnnotator("a", emphasis=[1, 2]), None, "one weight per defect"),
        (lambda: SimulatedAnnotator("a", emphasis={"holes": -1}), None, ">= 0"),
        (lambda: SimulatedAnnotator("a", cant_decide_rate=1.5), None, r"cant_decide_rate must be in \[0, 1\]"),
        (lambda: SimulatedAnnotator("a", seed=-1), None, "seed must be"),
    ],
)
def test_bad_input_raises_clear_errors(make, question, message):
    with pytest.raises(ValueError, match=message):
        make().rank(question)
