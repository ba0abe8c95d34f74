"""Simulated annotators: rank a question of 2-6 geometries from oracle scores, with human-like noise.

A question is K in [2, 6] items (the paper's ranking app shows up to six, docs/method/reference_method.md §6); an
annotator orders them best -> worst. The simulation is a random-utility model:

- utility of item i: ``u_i = -sum_k e_k d_ik`` from the oracle's per-defect scores ``d`` [K, 5]
  (higher = worse, order :data:`DEFECTS`) and the annotator's emphasis ``e`` (default all ones), or
  utilities given directly (higher = better; pass ``-badness``);
- ranking: Plackett-Luce with scores ``u / T``, drawn with the Gumbel trick: sort
  ``u_i / T + g_i`` (``g_i`` standard Gumbel) in decreasing order. Any two items then keep the
  Bradley-Terry probability ``P(a above b) = sigmoid((u_a - u_b) / T)`` whatever else is in the
  question (the difference of two Gumbels is logistic). ``T = 0`` is the noiseless oracle order
  (ties broken by the lower index);
- with probability ``cant_decide_rate`` the answer is "can't decide" and carries no ranking.

Randomness is counter-based: question ``q`` of an annotator with seed ``s`` uses the numpy generator
``default_rng([s, q])`` and nothing else, so an answer depends only on (seed, question index), never
on call order, on other annotators or on the global RNG. ``q`` is the ``question_id`` argument, or,
if omitted, the number of questions this annotator has already answered. The can't-decide coin and
the Gumbel noise are always both drawn, so changing ``cant_decide_rate`` never changes the rankings
of the questions that stay decided.

Example::

    ann = SimulatedAnnotator("alice", temperature=0.5, emphasis={"holes": 3.0}, seed=1)
    answer = ann.rank(defect_scores, question_id=17)       # defect_scores [K, 5]
    answer.ranking, answer.best, answer.worst               # (2, 0, 1), 2, 1
    panel = AnnotatorPanel([ann, SimulatedAnnotator("bob", temperature=2.0, seed=2)])
    panel.answer(defect_scores, question_id=17)             # {'alice': Answer(...), 'bob': Answer(...)}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nerfsculpt.synthetic.heads import DEFECTS  # the oracle's score columns: bumps, nose, holes, floaters, asymmetry

MIN_ITEMS, MAX_ITEMS = 2, 6
"""Items per question: the paper's app shows up to six candidates (docs/method/reference_method.md §6)."""


@dataclass(frozen=True)
class Answer:
    """One annotator's answer to one question."""

    ranking: tuple[int, ...] | None
    """Item indices of the question ordered best -> worst; None when the annotator can't decide."""
    cant_decide: bool = False
    """True when the annotator declined to rank the question."""

    def __post_init__(self) -> None:
        if self.cant_decide != (self.ranking is None):
            raise ValueError("an Answer has a ranking exactly when it is not 'can't decide'")

    @property
    def best(self) -> int | None:
        """Index of the preferred item (None if can't decide)."""
        return None if self.ranking is None else self.ranking[0]

    @property
    def worst(self) -> int | None:
        """Index of the least preferred item (None if can't decide)."""
        return None if self.ranking is None else self.ranking[-1]


def _as_float64(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor; numbers only, no torch import needed
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite, got {array.tolist()}")
    return array


def _emphasis_vector(emphasis: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:  # [5]
    if emphasis is None:
        return np.ones(len(DEFECTS))
    if isinstance(emphasis, Mapping):
        unknown = sorted(set(emphasis) - set(DEFECTS))
        if unknown:
            raise ValueError(f"unknown defect name(s) {unknown} in emphasis; known: {', '.join(DEFECTS)}")
        vector = np.array([float(emphasis.get(name, 1.0)) for name in DEFECTS])
    else:
        vector = _as_float64(emphasis, "emphasis").reshape(-1)
        if vector.shape != (len(DEFECTS),):
            raise ValueError(f"emphasis needs one weight per defect {DEFECTS}, got {vector.size} values")
    if not np.all(np.isfinite(vector)) or np.any(vector < 0):
        raise ValueError(f"emphasis weights must be finite and >= 0, got {vector.tolist()}")
    return vector


class SimulatedAnnotator:
    """An annotator who ranks a question by noisy oracle utilities (Plackett-Luce / Bradley-Terry).

    Args:
        name: identifies the annotator in a panel.
        temperature: Bradley-Terry temperature T >= 0 in utility units: items whose utilities differ
            by T are ordered correctly with probability sigmoid(1) = 0.73; 0 is the noiseless oracle.
        emphasis: per-defect weights ``e`` of the utility ``-sum_k e_k d_k``, as a dict by defect
            name (missing names weigh 1) or 5 numbers in :data:`DEFECTS` order; default all ones.
        cant_decide_rate: probability in [0, 1] of answering "can't decide" to a question.
        seed: with the question index, determines every answer (module docstring).
    """

    def __init__(
        self,
        name: str,
        temperature: float = 1.0,
        emphasis: Mapping[str, float] | Sequence[float] | None = None,
        cant_decide_rate: float = 0.0,
        seed: int = 0,
    ):
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        if not 0.0 <= cant_decide_rate <= 1.0:
            raise ValueError(f"cant_decide_rate must be in [0, 1], got {cant_decide_rate}")
        if not (isinstance(seed, int | np.integer) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.name = str(name)
        self.temperature = float(temperature)
        self.emphasis = _emphasis_vector(emphasis)  # [5]
        self.cant_decide_rate = float(cant_decide_rate)
        self.seed = int(seed)
        self.questions_answered = 0
        """Questions answered so far: the index used when ``question_id`` is not given."""

    def __repr__(self) -> str:
        emphasis = dict(zip(DEFECTS, self.emphasis.tolist(), strict=True))
        return (f"SimulatedAnnotator({self.name!r}, temperature={self.temperature}, emphasis={emphasis}, "
                f"cant_decide_rate={self.cant_decide_rate}, seed={self.seed})")

    def utilities(self, defect_scores: Any) -> np.ndarray:  # [K, 5] -> [K]
        """Utilities ``-sum_k e_k d_k`` (higher = better) of items with per-defect scores [K, 5]."""
        scores = _as_float64(defect_scores, "defect scores")
        if scores.ndim != 2 or scores.shape[1] != len(DEFECTS):
            raise ValueError(f"expected defect scores [K, {len(DEFECTS)}] ({', '.join(DEFECTS)}), "
                             f"got shape {scores.shape}")
        return -(scores @ self.emphasis)

    def rank(self, question: Any, question_id: int | None = None) -> Answer:
        """Answer a question: per-defect scores [K, 5] (higher = worse) or utilities [K] (higher = better).

        ``question_id`` selects the random stream (module docstring); omitted, it is the number of
        questions this annotator answered before. K must be in [2, 6].
        """
        values = _as_float64(question, "question")
        utilities = values if values.ndim == 1 else self.utilities(values)  # (K,)
        k = utilities.shape[0]
        if not MIN_ITEMS <= k <= MAX_ITEMS:
            raise ValueError(f"a question has {MIN_ITEMS} to {MAX_ITEMS} items, got {k}")
        if question_id is None:
            question_id = self.questions_answered
        if not (isinstance(question_id, int | np.integer) and question_id >= 0):
            raise ValueError(f"question_id must be a non-negative integer, got {question_id!r}")
        self.questions_answered += 1

        rng = np.random.default_rng([self.seed, int(question_id)])
        coin = rng.random()
        gumbel = rng.gumbel(size=k)  # (K,) standard Gumbel: argsort of u/T + g is a Plackett-Luce draw
        if coin < self.cant_decide_rate:
            return Answer(ranking=None, cant_decide=True)
        # argsort(u / T + g) == argsort(u + T g) for T > 0; the latter is also the T = 0 limit and
        # never overflows for tiny T.
        keys = utilities + self.temperature * gumbel  # (K,)
        order = np.argsort(-keys, kind="stable")  # best first; equal keys keep the lower index first
        return Answer(ranking=tuple(int(i) for i in order), cant_decide=False)


def bradley_terry_probability(utility_a: float, utility_b: float, temperature: float) -> float:
    """P(item a ranked above item b) = sigmoid((u_a - u_b) / T); a step function at T = 0."""
    if temperature == 0:
        return 1.0 if utility_a > utility_b else (0.5 if utility_a == utility_b else 0.0)
    x = (utility_a - utility_b) / temperature
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class AnnotatorPanel:
    """Several simulated annotators answering the same questions (multi-annotator studies).

    Give each annotator its own seed: annotators that share a seed share their noise (common random
    numbers), which is what you want only when comparing settings, not when simulating a crowd.
    """

    def __init__(self, annotators: Sequence[SimulatedAnnotator]):
        names = [a.name for a in annotators]
        if not names:
            raise ValueError("an AnnotatorPanel needs at least one annotator")
        if len(set(names)) != len(names):
            raise ValueError(f"annotator names must be unique, got {names}")
        self.annotators = list(annotators)

    def __len__(self) -> int:
        return len(self.annotators)

    def __iter__(self) -> Iterator[SimulatedAnnotator]:
        return iter(self.annotators)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.annotators]

    def answer(self, question: Any, question_id: int | None = None) -> dict[str, Answer]:
        """Every annotator's answer to one question (scores [K, 5] or utilities [K]), by name."""
        return {a.name: a.rank(question, question_id) for a in self.annotators}


def paper_annotator(temperature: float = 1.0, seed: int = 0) -> SimulatedAnnotator:
    """The paper's setting: one annotator, all defects weighed equally, every question ranked.

    The paper's single annotator ranked questions of up to six candidates best -> worst and no
    "can't decide" option appears in its records (docs/method/reference_method.md §3.1, §6). How noisy that
    person was is unknown: ``temperature`` is a simulation knob, in the oracle's utility units.
    """
    return SimulatedAnnotator("paper", temperature=temperature, emphasis=None, cant_decide_rate=0.0, seed=seed)
