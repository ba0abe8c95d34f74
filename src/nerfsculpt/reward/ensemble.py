"""Reward ensembles: K networks of one architecture that differ in seed (Coste et al. 2023).

Coste et al., "Reward model ensembles help mitigate overoptimization" (2023): a policy optimised
against one learned reward finds inputs where that reward is wrong; K rewards trained alike but
from different seeds disagree on such inputs, so a conservative objective over the members (the
mean minus beta times their variance, or the worst member) resists the exploitation. How the members are trained:
``reward.ensemble_training``.

:class:`RewardEnsemble` is the network a bundle of K members loads as: ``forward`` is the mean of
the members' rewards, ``member_rewards`` all of them (differentiable, for fine-tuning objectives).

Example::

    ensemble = RewardEnsemble([SigmaRewardNet(cfg) for _ in range(3)], seeds=[42, 43, 44])
    x = torch.rand(2, 1, 17, 18, 16) * 100                  # normalised slabs [N, 1, Z, Y, X]
    ensemble.member_rewards(x).shape                        # torch.Size([3, 2])
    ensemble(x)                                             # [2], their mean
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nerfsculpt.reward.heads import RewardOutputs

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
