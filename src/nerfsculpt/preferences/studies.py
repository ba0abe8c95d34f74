"""Creating studies: a ranking study over a sample bank, an A/B study of two generators.

The library calls behind ``nerfsculpt label new`` and ``nerfsculpt study new`` (this module imports
nothing heavy until they run: the command line builds its options from the configs). Each writes the study
and its questions in one transaction: a failure leaves the database as it was (and a database that
did not exist is not created).

Example::

    ranking_study_from_bank("prefs.sqlite", "bank/", RankingStudyConfig(questions=40))
    create_ab_study("study.sqlite", "synthetic", "runs/tune/snapshots/0000100", seeds=range(40))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RankingStudyConfig:
    """The design of a ranking study's questions (the paper's app: 2-6 items per question)."""

    items: str | None = None
    """Items per question: a number or a range within 2-6; None = 2-6, at most the bank's seeds."""
    questions: int = 50
    """Number of questions."""
    overlap: int = 1
    """Annotators per question."""
    repeats: int = 0
    """Questions asked twice, shuffled (self-consistency)."""
    seed: int = 0
    """Seed of the question design."""


@dataclass(frozen=True)
class ABStudyConfig:
    """How the pairs of an A/B study are rendered and asked."""

    psi: float = 0.7
    """Truncation psi of both generators' samples (the paper's user-study meshes: 0.7,
    docs/method/reference_method.md §7.9)."""
    resolution: int = 256
    """Sigma grid resolution of the renders."""
    render_resolution: int = 256
    """Render size in pixels."""
    overlap: int = 100
    """Respondents per pair (100: effectively every respondent answers every pair; the paper: 17 x 40)."""
    seed: int = 0
    """Seed of the left/right randomisation."""


@dataclass(frozen=True)
class CreatedStudy:
    """What a study creation wrote."""

    name: str
    """The study's name."""
    questions: int
    """Questions added (with repeats)."""
    seeds: int
    """Distinct seeds the questions show."""
    banks: dict[str, str] = field(default_factory=dict)
    """Sample bank of each generator (fingerprint -> directory)."""


def ranking_study_from_bank(db: str | Path, bank: str | Path, config: RankingStudyConfig | None = None,
                            study: str | None = None) -> CreatedStudy:
    """Create a ranking study over the seeds of a sample bank that has renders.

    Question sizes are drawn from ``config.items``; the seeds shown least so far fill each question
    (balanced exposure) in random positions; ``overlap`` annotators answer each; ``repeats``
    questions are asked again. ``study`` defaults to the bank directory's name. The database is
    created if missing.
    """
    from nerfsculpt.geometry.bank import open_bank
    from nerfsculpt.preferences.schedule import design_questions, parse_item_range
    from nerfsculpt.preferences.store import Item, PreferenceError, open_or_create

    config = config or RankingStudyConfig()
    bank_path = Path(bank)
    if not (bank_path / "manifest.json").is_file():
        raise PreferenceError(f"{bank_path} is not a sample bank; make one with 'nerfsculpt sample --seeds 0-29 "
                              f"--what renders --out {bank_path}'")
    opened = open_bank(bank_path)
    if "renders" not in opened.manifest["what"]:
        raise PreferenceError(f"{bank_path} has no renders to show; add them with 'nerfsculpt sample --what renders "
                              f"--seeds ... --out {bank_path}'")
    seeds = opened.seeds(["renders"])
    if len(seeds) < 2:
        raise PreferenceError(f"{bank_path} has {len(seeds)} seed(s) with renders; a question needs at least 2")
    try:
        items_range = parse_item_range(config.items or f"2-{min(6, len(seeds))}")
        designed = design_questions(seeds, config.questions, items_range, config.repeats, config.seed)
    except ValueError as error:
        raise PreferenceError(str(error)) from None
    generator, sampling = opened.manifest["generator"], opened.manifest["sampling"]

    def item(seed: int) -> Item:
        return Item(generator["spec"], generator["fingerprint"], seed=seed, psi=sampling["psi"],
                    cutoff=sampling["truncation_cutoff"], noise_mode=sampling["noise_mode"], view="canonical")

    name = study or bank_path.resolve().name
    banks = {generator["fingerprint"]: str(bank_path.resolve())}
    study_config = {"banks": banks, "items": list(items_range), "questions": config.questions,
                    "repeats": config.repeats, "seed": config.seed}
    with open_or_create(db) as store, store.transaction():
        store.create_study(name, kind="ranking", overlap=config.overlap, config=study_config)
        originals = [q for q in designed if q.repeat_of is None]
        ids = store.add_questions(name, [[item(s) for s in q.seeds] for q in originals])
        repeats = [q for q in designed if q.repeat_of is not None]
        store.add_questions(name, [[item(s) for s in q.seeds] for q in repeats], [ids[q.repeat_of] for q in repeats])
    return CreatedStudy(name, len(designed), len(seeds), banks)


def create_ab_study(db: str | Path, before: str, after: str, seeds: Sequence[int], config: ABStudyConfig | None = None,
                    study: str = "user-study", banks: str | Path | None = None, device: Any = "cpu",
                    progress: bool = True) -> CreatedStudy:
    """Create an A/B user study: the same latents from two generators side by side, sides randomised.

    Shaded geometry renders and RGB images of every seed are written for both generators to sample
    banks in ``banks`` (default: the database's name + ``_banks/STUDY/before|after``; resumable).
    ``before`` and ``after`` are generator specs (built-in names, checkpoints, snapshots).
    """
    import numpy as np

    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.geometry.bank import BankConfig, write_bank
    from nerfsculpt.preferences.store import Item, PreferenceError, PreferenceStore, open_or_create

    config = config or ABStudyConfig()
    seeds = list(seeds)
    try:
        bank_config = BankConfig(psi=config.psi, resolution=config.resolution,
                                 render_resolution=config.render_resolution)
    except ValueError as error:
        raise PreferenceError(str(error)) from None
    db = Path(db)
    banks = Path(banks) if banks else db.with_name(f"{db.stem}_banks") / study
    if db.exists():
        with PreferenceStore(db, create=False) as store:
            if any(s["name"] == study for s in store.studies()):
                raise PreferenceError(f"study {study!r} already exists in {db}; pass another --study")
    generators = {side: resolve_generator(spec, device) for side, spec in (("before", before), ("after", after))}
    if generators["before"][1].fingerprint == generators["after"][1].fingerprint:
        raise PreferenceError("--before and --after are the same generator (identical weights); compare two "
                              "different ones")
    sides = {}
    for side, (G, info) in generators.items():
        write_bank(banks / side, G, info, bank_config, seeds, ("renders",), progress=progress)
        sides[side] = {"spec": info.spec, "fingerprint": info.fingerprint, "bank": str((banks / side).resolve()),
                       "cutoff": G.num_ws}

    def item(side: str, seed: int) -> Item:
        s = sides[side]
        return Item(s["spec"], s["fingerprint"], seed=seed, psi=config.psi, cutoff=s["cutoff"], noise_mode="const")

    rng = np.random.default_rng(config.seed)
    questions = [[item("before", s), item("after", s)] if rng.random() < 0.5 else [item("after", s), item("before", s)]
                 for s in seeds]
    study_banks = {s["fingerprint"]: s["bank"] for s in sides.values()}
    study_config = {"banks": study_banks, "seeds": seeds, "psi": config.psi, "seed": config.seed, **sides}
    with open_or_create(db) as store, store.transaction():
        store.create_study(study, kind="ab", overlap=config.overlap, config=study_config)
        store.add_questions(study, questions)
    return CreatedStudy(study, len(questions), len(seeds), study_banks)
