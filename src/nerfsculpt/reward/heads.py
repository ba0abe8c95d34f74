"""The reward's MLPs: the global embedding and the scalar, Bradley-Terry and pair heads.

See docs/method/reference_method.md §4.3.

Every representation (sigma slab, depth maps, point cloud) ends in the same stack: a global feature
vector -> :class:`RewardMLP` -> the 512-d embedding f -> three heads:

- ``scalar_rwd_head``: f -> the reward r (unbounded), the paper's r_theta, used by fine-tuning;
- ``scalar_rwd_head_BT``: f -> log lambda (Bradley-Terry strength lambda = exp(.));
- ``scalar_rwd_head_pairs``: [f_a, f_b] -> 2 logits, index 0 = "a is preferred".

Attribute and submodule names are the reference's (``MLP.input_layer``, ``MLP.hidden_layers.0.0``,
``MLP.output_layer``, ...) so its ``state_dict`` loads unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class RewardMLP(nn.Module):
    """Linear -> x2 -> (Linear -> Softplus) per further hidden size -> Linear.

    The reference's MLP with ``residual=True`` and two hidden sizes adds the first layer's output to
    itself (docs/method/reference_method.md §4.3): ``a = input_layer(x)`` enters the hidden layers as ``2a``,
    without an activation. Kept exactly, so released weights score identically.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        assert len(hidden) >= 1, "RewardMLP needs at least one hidden size"
        self.input_layer = nn.Linear(in_features, hidden[0])
        self.hidden_layers = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.Softplus()) for a, b in zip(hidden[:-1], hidden[1:], strict=True))
        self.output_layer = nn.Linear(hidden[-1], out_features)

    def forward(self, x: Tensor) -> Tensor:  # [N, in] -> [N, out]
        a = self.input_layer(x)
        x = a + a  # the reference's "residual" (see the class docstring)
        for layer in self.hidden_layers:
            x = layer(x)
        return self.output_layer(x)


@dataclass(frozen=True)
class HeadsConfig:
    """Sizes of the embedding MLP and the three heads (defaults: the reference's ``model/mlps/default.yaml``)."""

    global_features: int = 8192
    """Size of the representation's global feature vector (sigma: 8192; depth: 2048 per view; points: 1024)."""
    embedding_hidden: tuple[int, ...] = (512, 512)
    """Hidden sizes of the embedding MLP."""
    embedding: int = 512
    """Size of the embedding f (the paper's 512-d feature)."""
    head_hidden: tuple[int, ...] = (256, 128)
    """Hidden sizes of each head."""


class NetworkConfig:
    """JSON round trip shared by the reward networks' frozen config dataclasses (bundles store them).

    ``from_dict`` refuses unknown fields, turns JSON lists back into tuples and a ``heads`` mapping
    into a :class:`HeadsConfig`; fields it does not name keep their defaults.
    """

    what: ClassVar[str] = "network config"
    """How errors name the config."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.what} fields {sorted(unknown)}; known: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if "heads" in values:
            values["heads"] = HeadsConfig(**{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in dict(values["heads"]).items()})
        return cls(**values)


@dataclass
class RewardOutputs:
    """What a reward network computes for N inputs."""

    embedding: Tensor  # [N, E]
    reward: Tensor  # [N]
    log_strength: Tensor  # [N] Bradley-Terry log lambda


class RewardHeads(nn.Module):
    """Global features [N, G] -> embedding, reward, Bradley-Terry strength; ``pair_logits`` for two embeddings."""

    def __init__(self, config: HeadsConfig = HeadsConfig()):
        super().__init__()
        self.MLP = RewardMLP(config.global_features, config.embedding_hidden, config.embedding)
        self.scalar_rwd_head = RewardMLP(config.embedding, config.head_hidden, 1)
        self.scalar_rwd_head_BT = RewardMLP(config.embedding, config.head_hidden, 1)
        self.scalar_rwd_head_pairs = RewardMLP(2 * config.embedding, config.head_hidden, 2)

    def forward(self, features: Tensor) -> RewardOutputs:  # [N, G]
        embedding = self.MLP(features)  # (N, E)
        return RewardOutputs(embedding=embedding, reward=self.scalar_rwd_head(embedding)[:, 0],
                             log_strength=self.scalar_rwd_head_BT(embedding)[:, 0])

    def pair_logits(self, first: Tensor, second: Tensor) -> Tensor:  # [P, E], [P, E] -> [P, 2]
        """Logits of (first preferred, second preferred) from the pair head."""
        return self.scalar_rwd_head_pairs(torch.cat([first, second], dim=1))
