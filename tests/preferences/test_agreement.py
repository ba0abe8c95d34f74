"""Agreement statistics against published values and against a simulation with known noise."""

import math

import numpy as np
import pytest

from nerfsculpt.preferences.agreement import (
    answers_alpha,
    bradley_terry,
    krippendorff_alpha,
    pairwise_agreement,
    self_consistency,
)
from nerfsculpt.preferences.store import Item, PreferenceStore
from nerfsculpt.synthetic.annotators import SimulatedAnnotator, bradley_terry_probability


def test_krippendorff_published_example():
    """Krippendorff (2011), 'Computing Krippendorff's Alpha-Reliability', nominal example with
    missing values: 4 observers, 12 units, alpha = 0.743."""
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[obs[u] for obs in observers if obs[u] is not None] for u in range(12)]
    assert krippendorff_alpha(units) == pytest.approx(0.7434, abs=1e-4)
    assert krippendorff_alpha([[1, 1], [2, 2], [1, 1]]) == 1.0
    assert math.isnan(krippendorff_alpha([[1], [2]]))


def _simulated_study(tmp_path, temperature, n_questions=300, n_annotators=3, repeats=0):
    rng = np.random.default_rng(0)
    store = PreferenceStore(tmp_path / "sim.sqlite")
    store.create_study("sim", overlap=n_annotators)
    utilities = rng.normal(0, 1.5, size=(n_questions, 2))
    qids = [store.add_question("sim", [Item("g", seed=2 * q), Item("g", seed=2 * q + 1)]) for q in range(n_questions)]
    qids += [store.add_question("sim", list(reversed(store.question(qids[k]).items)), repeat_of=qids[k])
             for k in range(repeats)]
    annotators = [SimulatedAnnotator(f"a{k}", temperature=temperature, seed=k) for k in range(n_annotators)]
    for qid in qids:
        question = store.question(qid)
        original = question.repeat_of if question.repeat_of is not None else qid
        u = utilities[qids.index(original)]
        if question.repeat_of is not None:
            u = u[::-1]
        for annotator in annotators:
            answer = annotator.rank(u, question_id=qid)
            store.record_answer(qid, annotator.name, best=question.item_ids[answer.best],
                                worst=question.item_ids[answer.worst])
    return store, utilities


def test_agreement_matches_the_simulated_noise(tmp_path):
    temperature = 1.0
    store, utilities = _simulated_study(tmp_path, temperature)
    rate, comparisons = pairwise_agreement(store, store.answers("sim"))
    assert comparisons == 300 * 3  # three annotator pairs per question
    p = np.array([bradley_terry_probability(a, b, temperature) for a, b in utilities])
    expected = float(np.mean(p**2 + (1 - p) ** 2))
    # per question the 3 pair agreements are dependent; 300 independent questions -> se < 0.03
    assert rate == pytest.approx(expected, abs=0.06)
    alpha = answers_alpha(store, store.answers("sim"))
    assert 0.0 < alpha < 1.0
    store.close()


def test_noiseless_annotators_agree_perfectly_and_with_themselves(tmp_path):
    store, _ = _simulated_study(tmp_path, temperature=0.0, n_questions=40, repeats=10)
    assert pairwise_agreement(store, store.answers("sim"))[0] == 1.0
    assert answers_alpha(store, store.answers("sim")) == 1.0
    consistency = self_consistency(store, store.answers("sim"))
    assert consistency == {f"a{k}": (1.0, 10) for k in range(3)}
    store.close()


def test_noisy_annotators_are_less_self_consistent(tmp_path):
    store, utilities = _simulated_study(tmp_path, temperature=3.0, n_questions=200, repeats=200)
    consistency = self_consistency(store, store.answers("sim"))
    p = np.array([bradley_terry_probability(a, b, 3.0) for a, b in utilities])
    expected = float(np.mean(p**2 + (1 - p) ** 2))
    for rate, total in consistency.values():
        assert total == 200 and rate == pytest.approx(expected, abs=0.1)
    store.close()


def test_bradley_terry_closed_form_and_recovery():
    # two items, a beats b 30 times and loses 10: s_a - s_b = log 3 without a prior
    strengths = bradley_terry([(1, 2)] * 30 + [(2, 1)] * 10, prior=1e-9)
    assert strengths[1] - strengths[2] == pytest.approx(math.log(3), abs=1e-4)
    rng = np.random.default_rng(1)
    true = rng.normal(0, 1, 20)
    pairs = []
    for _ in range(4000):
        a, b = rng.choice(20, 2, replace=False)
        pairs.append((a, b) if rng.random() < 1 / (1 + math.exp(true[b] - true[a])) else (b, a))
    fitted = bradley_terry([(int(a), int(b)) for a, b in pairs])
    assert np.corrcoef(true, [fitted[k] for k in range(20)])[0, 1] > 0.95
