"""Simulated preference studies: questions over a generator's seeds, answered by simulated annotators.

The default data of the whole pipeline on a laptop: questions of 2-6 seeds with balanced exposure
(``preferences.schedule.design_questions``), each item's geometry judged by the oracle on the
generator's own sigma (``synthetic.oracle``, what the reward model has to learn to see), ranked by
every annotator of a panel (``synthetic.annotators``: Bradley-Terry noise, per-defect emphasis,
can't-decide rate) and stored like human answers (``ui_version`` marks them simulated).

Example::

    G, info = resolve_generator("synthetic")
    with PreferenceStore("prefs.sqlite") as store:
        simulate_study(store, "sim", G, info, seeds=range(600), n_questions=600,
                       panel=AnnotatorPanel([paper_annotator(temperature=0.1)]))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerfsculpt.latents import ws_from_seeds
from nerfsculpt.preferences.schedule import design_questions
from nerfsculpt.preferences.store import Item, PreferenceStore
from nerfsculpt.synthetic.annotators import AnnotatorPanel
from nerfsculpt.synthetic.config import SimulatedStudyConfig
from nerfsculpt.synthetic.oracle import GeometryOracle, score_generator

UI_VERSION = "nerfsculpt-simulated-1"
"""Stored as the ``ui_version`` of simulated answers."""


def oracle_scores(G, seeds: Sequence[int], oracle: GeometryOracle, psi: float = 1.0, cutoff: int | None = 14,
                  noise_mode: str = "const", batch: int = 4, progress: bool = False) -> dict[int, np.ndarray]:
    """Per-defect oracle scores [5] of each seed's sigma, ``z = RandomState(seed).randn``, canonical camera."""
    from tqdm import tqdm

    seeds = list(seeds)
    out: dict[int, np.ndarray] = {}
    with torch.no_grad(), tqdm(total=len(seeds), disable=not progress, unit="seed", desc="oracle") as bar:
        for start in range(0, len(seeds), batch):
            chunk = seeds[start : start + batch]
            ws = ws_from_seeds(G, chunk, psi, cutoff)
            scores = score_generator(G, ws, oracle, noise_mode=noise_mode).scores.numpy()  # (B, 5)
            out.update(zip(chunk, scores, strict=True))
            bar.update(len(chunk))
    return out


def simulate_study(store: PreferenceStore, study: str, G, info, seeds: Sequence[int], n_questions: int,
                   panel: AnnotatorPanel, oracle: GeometryOracle | None = None, items: tuple[int, int] = (2, 2),
                   psi: float = 1.0, cutoff: int | None = 14, noise_mode: str = "const", seed: int = 0,
                   progress: bool = False) -> dict[str, Any]:
    """Create ``study`` (overlap = panel size) and answer all its questions; returns a summary.

    ``info`` is the generator's ``GeneratorInfo`` (its spec and fingerprint name the items). The
    study and every answer are written in one transaction: all or nothing.
    """
    oracle = oracle or GeometryOracle()
    designed = design_questions(seeds, n_questions, items, repeats=0, seed=seed)
    used = sorted({s for q in designed for s in q.seeds})
    scores = oracle_scores(G, used, oracle, psi, cutoff, noise_mode, progress=progress)

    def item(s: int) -> Item:
        return Item(info.spec, info.fingerprint, seed=s, psi=psi, cutoff=cutoff, noise_mode=noise_mode,
                    view="canonical")

    config = {"simulated": True, "annotators": [repr(a) for a in panel], "oracle": oracle.config.__dict__,
              "items": list(items), "questions": n_questions, "seed": seed}
    config["oracle"] = {k: list(v) if isinstance(v, tuple) else v for k, v in config["oracle"].items()}
    counts = {"questions": 0, "answers": 0, "cant_decide": 0}
    with store.transaction():
        store.create_study(study, kind="ranking", overlap=len(panel), config=config)
        ids = store.add_questions(study, [[item(s) for s in q.seeds] for q in designed])
        for qid, question in zip(ids, designed, strict=True):
            item_ids = store.question(qid).item_ids
            answers = panel.answer(np.stack([scores[s] for s in question.seeds]), question_id=qid)
            for name, answer in answers.items():
                if answer.cant_decide:
                    store.record_answer(qid, name, cant_decide=True, ui_version=UI_VERSION)
                    counts["cant_decide"] += 1
                else:
                    ranking = [item_ids[i] for i in answer.ranking]
                    store.record_answer(qid, name, best=ranking[0], worst=ranking[-1],
                                        ranking=ranking if len(ranking) > 2 else None, ui_version=UI_VERSION)
                counts["answers"] += 1
            counts["questions"] += 1
    return {"study": study, **counts, "seeds": len(used)}


def simulate_preferences(db: str | Path, config: SimulatedStudyConfig | None = None, generator: str = "synthetic",
                         study: str = "simulated", device: Any = "cpu", progress: bool = True) -> dict[str, Any]:
    """Create ``study`` in the preference database ``db`` (created if missing), answered by simulated annotators.

    The library call behind ``nerfsculpt synthetic preferences``: ``config.annotators`` annotators
    (Bradley-Terry noise ``temperature``, "can't decide" rate ``cant_decide``, seeds ``seed + k``)
    rank every question over ``generator``'s seeds by the geometry oracle's quality. Returns
    :func:`simulate_study`'s summary.
    """
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.preferences.schedule import parse_item_range
    from nerfsculpt.synthetic.annotators import SimulatedAnnotator
    from nerfsculpt.synthetic.oracle import OracleConfig

    config = config or SimulatedStudyConfig()
    config.validate()
    items = parse_item_range(config.items)
    G, info = resolve_generator(generator, device)
    panel = AnnotatorPanel([SimulatedAnnotator(f"sim{k}", temperature=config.temperature,
                                               cant_decide_rate=config.cant_decide, seed=config.seed + k)
                            for k in range(config.annotators)])
    with PreferenceStore(db) as store:
        return simulate_study(store, study, G, info, list(config.seeds), config.questions, panel,
                              GeometryOracle(OracleConfig(resolution=config.resolution)), items=items,
                              psi=config.psi, seed=config.seed, progress=progress)
