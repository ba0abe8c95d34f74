"""Training a reward ensemble: K members that differ in seed (and, with ``bootstrap``, in their data).

Member k trains exactly as a single reward does (``reward.train.train``) with seed ``seed + k``
(initial weights, epoch orders, anchor draws) and, with ``bootstrap``, on a bootstrap resample of
the training lists (seeded by ``seed + k``; validation and test lists stay as they are). The trained
members form a :class:`nerfsculpt.reward.ensemble.RewardEnsemble` (Coste et al. 2023).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nerfsculpt.preferences.pairs import RankedList
from nerfsculpt.reward.config import EnsembleConfig, RewardTrainConfig
from nerfsculpt.reward.data import InputSource
from nerfsculpt.reward.ensemble import RewardEnsemble
from nerfsculpt.reward.losses import weights_for
from nerfsculpt.reward.train import Splits, data_fingerprint, evaluate, train, train_anchor_seed

log = logging.getLogger(__name__)


def bootstrap_lists(lists: Sequence[RankedList], seed: int) -> list[RankedList]:
    """A bootstrap resample of ``lists``: as many draws with replacement, from ``numpy.random.default_rng(seed)``."""
    picks = np.random.default_rng(seed).integers(0, len(lists), size=len(lists))
    return [lists[i] for i in picks]


@dataclass(frozen=True)
class MemberRun:
    """What member k of an ensemble trains with."""

    index: int
    """k, 0-based; the run directory is ``OUT/member-<k>``."""
    config: RewardTrainConfig
    """The shared training config with ``seed + k``."""
    splits: Splits
    """The shared splits; the training lists bootstrap-resampled if the ensemble says so."""

    def lists_read(self) -> list[RankedList]:
        """Every ranked list ``reward.train.train`` reads for this member: the validation lists and each
        epoch's training lists, with their anchor draws (to prepare their inputs beforehand)."""
        config = self.config
        lists = self.splits.lists("val", config.anchors, seed=config.seed)
        for epoch in range(config.max_epochs):
            lists += self.splits.lists("train", config.anchors, seed=train_anchor_seed(config, epoch))
        return lists


def member_runs(splits: Splits, config: RewardTrainConfig, ensemble: EnsembleConfig) -> list[MemberRun]:
    """The K member runs: seeds ``config.seed + k``, training lists resampled per member under ``bootstrap``."""
    ensemble.validate()
    runs = []
    for k in range(ensemble.members):
        seed = config.seed + k
        own = dataclasses.replace(splits, train=bootstrap_lists(splits.train, seed)) if ensemble.bootstrap else splits
        runs.append(MemberRun(index=k, config=dataclasses.replace(config, seed=seed), splits=own))
    return runs


@dataclass
class EnsembleResult:
    """A trained ensemble and its report."""

    model: RewardEnsemble
    """The K members (each at its best epoch) with their seeds."""
    members: list[dict[str, Any]]
    """Per member: ``seed``, ``run`` (directory), ``data`` (fingerprint of its lists), ``summary`` (of
    ``reward.train.train``), ``metrics`` ({"test", "val"} Table-1 results)."""
    metrics: dict[str, dict[str, Any]]
    """The ensemble's Table-1 results ({"test", "val"}): the scalar head on the mean reward (and, when the
    objective trains it, the pair head with the members' logits averaged)."""


def train_ensemble(build: Callable[[], nn.Module], splits: Splits, source: InputSource, out_dir: str | Path,
                   config: RewardTrainConfig, ensemble: EnsembleConfig, progress: bool = True) -> EnsembleResult:
    """Train K members one after the other, each in its resumable run ``out_dir/member-<k>``; evaluate each
    member and the ensemble on the test and validation lists (anchors drawn with ``config.seed``).

    ``build()`` returns a fresh network on the training device; it is called after
    ``torch.manual_seed(seed + k)``. A finished member resumes to a no-op (``reward.train.train``
    finds its checkpoint stopped and reloads its best weights), so rerunning trains only what is
    missing. The inputs of every member's lists should be prepared first (:meth:`MemberRun.lists_read`).
    """
    out_dir = Path(out_dir)
    weights = weights_for(config.objective)
    eval_lists = {name: splits.lists(name, config.anchors, seed=config.seed) for name in ("test", "val")}
    runs = member_runs(splits, config, ensemble)
    nets, members = [], []
    for run in runs:
        run_dir = out_dir / f"member-{run.index}"
        log.info("member %d/%d: seed %d, %d training lists%s, in %s", run.index + 1, len(runs), run.config.seed,
                 len(run.splits.train), " (bootstrap resample)" if ensemble.bootstrap else "", run_dir)
        torch.manual_seed(run.config.seed)
        net = build()
        summary = train(net, run.splits, source, run_dir, run.config, progress=progress)
        metrics = {name: evaluate(net, lists, source, weights, batch=config.batch)
                   for name, lists in eval_lists.items()}
        nets.append(net)
        members.append({"seed": run.config.seed, "run": str(run_dir), "data": data_fingerprint(run.splits),
                        "summary": summary, "metrics": metrics})
    model = RewardEnsemble(nets, seeds=[run.config.seed for run in runs], bootstrap=ensemble.bootstrap)
    log.info("ensemble of %d members: evaluating the mean reward", len(runs))
    metrics = {name: evaluate(model, lists, source, weights, batch=config.batch) for name, lists in eval_lists.items()}
    return EnsembleResult(model=model, members=members, metrics=metrics)
