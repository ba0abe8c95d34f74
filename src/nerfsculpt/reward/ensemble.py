"""Reward ensembles: K networks of one architecture that differ in seed (Coste et al. 2023).

Coste et al., "Reward model ensembles help mitigate overoptimization" (2023): a policy optimised
against one learned reward finds inputs where that reward is wrong; K rewards trained alike but
from different seeds disagree on such inputs, so a conservative objective over the members (the
mean minus beta times their variance, or the worst member) resists the exploitation. Member k
trains exactly as a single reward does (``reward.train.train``) with seed ``seed + k`` (initial
weights, epoch orders, anchor draws) and, with ``bootstrap``, on a bootstrap resample of the
training lists (seeded by ``seed + k``; validation and test lists stay as they are).

:class:`RewardEnsemble` is the network a bundle of K members loads as: ``forward`` is the mean of
the members' rewards, ``member_rewards`` all of them (differentiable, for fine-tuning objectives).

Example::

    ensemble = RewardEnsemble([SigmaRewardNet(cfg) for _ in range(3)], seeds=[42, 43, 44])
    x = torch.rand(2, 1, 17, 18, 16) * 100                  # normalised slabs [N, 1, Z, Y, X]
    ensemble.member_rewards(x).shape                        # torch.Size([3, 2])
    ensemble(x)                                             # [2], their mean
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from nerfsculpt.reward.config import EnsembleConfig
from nerfsculpt.reward.heads import RewardOutputs

if TYPE_CHECKING:
    from nerfsculpt.preferences.pairs import RankedList
    from nerfsculpt.reward.config import RewardTrainConfig
    from nerfsculpt.reward.data import InputSource
    from nerfsculpt.reward.train import Splits

log = logging.getLogger(__name__)


class MeanPairHead:
    """The members' pair heads, each applied to its own slice of side-by-side embeddings, logits averaged.

    Averaging the logits multiplies the members' pair probabilities (a normalised geometric mean):
    the ensemble's pair head for ``reward.train.evaluate``. Holds no parameters of its own.
    """

    def __init__(self, members: Sequence[nn.Module]):
        self.members = list(members)

    def pair_logits(self, first: Tensor, second: Tensor) -> Tensor:  # [P, K*E], [P, K*E] -> [P, 2]
        firsts = first.chunk(len(self.members), dim=1)  # K x (P, E)
        seconds = second.chunk(len(self.members), dim=1)
        logits = [m.heads.pair_logits(a, b) for m, a, b in zip(self.members, firsts, seconds, strict=True)]
        return torch.stack(logits).mean(0)  # (K, P, 2) -> (P, 2)


class RewardEnsemble(nn.Module):
    """K reward networks of one architecture; the reward is their mean.

    ``forward`` and ``member_rewards`` take what the members' ``forward`` takes (sigma: normalised
    slabs [N, 1, Z, Y, X]); ``prepare``/``outputs``/``heads`` make the ensemble evaluable by
    ``reward.train.evaluate`` like a single network: the scalar reward and the Bradley-Terry
    log-strength are the members' means, the embedding is theirs side by side [N, K*E] and the pair
    head averages the members' pair logits (:class:`MeanPairHead`). An ensemble is never trained as
    one network: its members train one at a time (:func:`train_ensemble`).

    ``seeds`` (each member's training seed, or None when unknown) and ``bootstrap`` (members trained
    on bootstrap resamples) are what a bundle records of the ensemble.
    """

    def __init__(self, members: Sequence[nn.Module], seeds: Sequence[int] | None = None, bootstrap: bool = False):
        super().__init__()
        if len(members) < 1:
            raise ValueError("a reward ensemble needs at least one member")
        first = members[0]
        if any(type(m) is not type(first) or getattr(m, "config", None) != getattr(first, "config", None)
               for m in members):
            configs = [(type(m).__name__, getattr(m, "config", None)) for m in members]
            raise ValueError(f"ensemble members must share one architecture and config, got {configs}")
        if seeds is not None and len(seeds) != len(members):
            raise ValueError(f"{len(members)} members but {len(seeds)} seeds; give one training seed per member")
        self.members = nn.ModuleList(members)
        self.seeds = None if seeds is None else tuple(int(s) for s in seeds)
        self.bootstrap = bool(bootstrap)

    @property
    def checkpointing(self) -> bool:
        """Activation checkpointing of the members that support it (setting it sets it on each of them)."""
        able = [m for m in self.members if hasattr(m, "checkpointing")]
        return bool(able) and all(m.checkpointing for m in able)

    @checkpointing.setter
    def checkpointing(self, value: bool) -> None:
        able = [m for m in self.members if hasattr(m, "checkpointing")]
        if value and not able:
            raise ValueError(f"{type(self.members[0]).__name__} members do not support activation checkpointing")
        for member in able:
            member.checkpointing = value

    @property
    def heads(self) -> MeanPairHead:
        return MeanPairHead(self.members)

    def prepare(self, raw: Tensor) -> Tensor:  # raw inputs -> the members' network input
        return self.members[0].prepare(raw)

    def outputs(self, x: Tensor, reconstruct: bool = False) -> tuple[RewardOutputs, None]:
        """Mean reward and log-strength of the members, their embeddings side by side [N, K*E]."""
        if reconstruct:
            raise ValueError("an ensemble has no reconstruction; train its members one at a time (train_ensemble)")
        outs = [m.outputs(x)[0] for m in self.members]
        return RewardOutputs(embedding=torch.cat([o.embedding for o in outs], dim=1),  # (N, K*E)
                             reward=torch.stack([o.reward for o in outs]).mean(0),  # (K, N) -> (N,)
                             log_strength=torch.stack([o.log_strength for o in outs]).mean(0)), None

    def member_rewards(self, x: Tensor) -> Tensor:  # [N, ...] -> [K, N]
        """Every member's reward (differentiable)."""
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: Tensor) -> Tensor:  # [N, ...] -> [N]
        return self.member_rewards(x).mean(0)


# ------------------------------------------------------------------------------------------------
# Training


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
        from nerfsculpt.reward.train import train_anchor_seed  # reward.train imports this module (via bundle)

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
    from nerfsculpt.reward.losses import weights_for  # reward.train imports this module (via bundle)
    from nerfsculpt.reward.pipeline import data_fingerprint
    from nerfsculpt.reward.train import evaluate, train

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
