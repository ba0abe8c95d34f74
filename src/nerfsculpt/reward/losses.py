"""Reward-model objectives (docs/method/reference_method.md §3.4, §4.5-§4.6; paper Eq. 4).

A training item is a ranking of K geometries, best first: [x_HQ > x_w > x_l] (K = 3, with the
high-quality anchor) or [x_w > x_l] (K = 2). Its pairs are every (i, j) with i < j, "i preferred";
each item's loss is the mean over its C(K, 2) pairs, and a batch's loss the mean over its items.

Scores arrive as [B, K] (best first) with ``lengths`` [B] giving each item's K (columns beyond it
are padding and ignored).

- :func:`bradley_terry_loss`: paper Eq. 4 on the scalar reward: -log sigmoid(r_i - r_j);
- :func:`strength_loss`: the same on the Bradley-Terry head's log-strengths (lambda = exp(s):
  -log(lambda_i / (lambda_i + lambda_j)) = -log sigmoid(s_i - s_j));
- :func:`pair_head_loss`: the reference's dominant term, cross-entropy of the pair head on both
  orders of every pair (from epoch 3 on, one order drawn at random per pair);
- :func:`reconstruction_loss`: the paper's auxiliary L1 between the sigma net's reconstruction,
  min-max rescaled to the input's range, and the input.

:class:`LossWeights` weighs them: :func:`weights_for` ``("paper")`` (default) = Eq. 4 + 1e-2
reconstruction; ``("reference")`` = what the reference code optimises (pair head 1, scalar 1e-3,
BT 1e-3, 1e-8 L2 of the strengths, no reconstruction: its reconstruction never runs).

Example::

    r = torch.tensor([[2.0, 1.0, 0.0]])                 # one item, best first
    bradley_terry_loss(r, torch.tensor([3]))             # mean of -log sigmoid over (2-1, 2-0, 1-0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

OBJECTIVES = ("paper", "reference")


def pair_indices(k: int) -> tuple[Tensor, Tensor]:
    """(first, second) indices of the C(k, 2) pairs i < j of a ranking of k, in combinations order."""
    first, second = torch.triu_indices(k, k, offset=1)
    return first, second


def _pair_mask(lengths: Tensor, k: int) -> Tensor:  # [B] -> [B, P] bool: pair inside the item's length
    _, second = pair_indices(k)
    return second.to(lengths.device)[None, :] < lengths[:, None]


def _check(scores: Tensor, lengths: Tensor) -> None:
    assert scores.ndim == 2, f"expected scores [B, K] (best first), got {tuple(scores.shape)}"
    assert lengths.shape == scores.shape[:1], f"lengths must be [B], got {tuple(lengths.shape)}"
    if len(scores) == 0:
        raise ValueError("empty batch: no ranking items to compute a loss on")
    if bool((lengths < 2).any()) or bool((lengths > scores.shape[1]).any()):
        raise ValueError(f"every item needs 2..{scores.shape[1]} ranked entries, got lengths {lengths.tolist()}")


def _per_item_mean(per_pair: Tensor, lengths: Tensor, k: int) -> Tensor:  # [B, P] -> scalar
    """Mean over each item's own pairs (1 / C(K_b, 2)), then over items (§3.4)."""
    mask = _pair_mask(lengths, k)  # (B, P)
    n_pairs = lengths * (lengths - 1) / 2  # (B,)
    return ((per_pair * mask).sum(1) / n_pairs).mean()


def bradley_terry_loss(rewards: Tensor, lengths: Tensor) -> Tensor:
    """Paper Eq. 4: mean over items of (1 / C(K, 2)) sum_{i<j} -log sigmoid(r_i - r_j); rewards [B, K] best first."""
    _check(rewards, lengths)
    first, second = pair_indices(rewards.shape[1])
    margins = rewards[:, first] - rewards[:, second]  # (B, P)
    return _per_item_mean(-F.logsigmoid(margins), lengths, rewards.shape[1])


def strength_loss(log_strengths: Tensor, lengths: Tensor) -> Tensor:
    """Bradley-Terry head: -log(lambda_i / (lambda_i + lambda_j)) with lambda = exp(s), per item mean over pairs."""
    return bradley_terry_loss(log_strengths, lengths)


def strength_l2(log_strengths: Tensor, lengths: Tensor) -> Tensor:
    """Euclidean norm of all the batch's strengths lambda = exp(s) (the reference's tiny regulariser)."""
    k = log_strengths.shape[1]
    valid = torch.arange(k, device=lengths.device)[None, :] < lengths[:, None]  # (B, K)
    return log_strengths.exp()[valid].norm()


def pair_head_loss(logits_forward: Tensor, logits_backward: Tensor, lengths: Tensor,
                   one_order: Tensor | None = None) -> Tensor:
    """Pair-head cross-entropy (docs/method/reference_method.md §4.6, term 1).

    ``logits_forward`` [B, P, 2]: the head on (x_i, x_j) for every pair i < j (target class 0);
    ``logits_backward`` [B, P, 2]: on (x_j, x_i) (target class 1). Each pair's loss is the mean of
    the two orders' cross-entropies, or, where ``one_order`` [B, P] is given (epoch >= 3 in the
    reference), the forward order's (True) or the backward order's (False) alone. The batch loss is
    the mean over all real pairs (not per item).
    """
    b, p, _ = logits_forward.shape
    assert logits_backward.shape == logits_forward.shape, "forward and backward pair logits must have equal shapes"
    k = round((1 + math.sqrt(1 + 8 * p)) / 2)
    assert k * (k - 1) // 2 == p, f"{p} pairs is not C(K, 2) for any K"
    ce_forward = F.cross_entropy(logits_forward.reshape(b * p, 2), torch.zeros(b * p, dtype=torch.long,
                                 device=logits_forward.device), reduction="none").reshape(b, p)
    ce_backward = F.cross_entropy(logits_backward.reshape(b * p, 2), torch.ones(b * p, dtype=torch.long,
                                  device=logits_forward.device), reduction="none").reshape(b, p)
    per_pair = (ce_forward + ce_backward) / 2 if one_order is None else torch.where(one_order, ce_forward, ce_backward)
    mask = _pair_mask(lengths, k)
    return per_pair[mask].mean()


def pair_head_probability(logits_forward: Tensor, logits_backward: Tensor) -> Tensor:
    """P(first preferred) from the pair head, both orders averaged (the reference's test rule, §3.6)."""
    forward = logits_forward.softmax(-1)[..., 0]
    backward = logits_backward.softmax(-1)[..., 1]  # column swapped back: "first" is the second input there
    return (forward + backward) / 2


def reconstruction_loss(recon: Tensor, x: Tensor) -> Tensor:
    """L1 between recon, min-max rescaled per sample to x's range, and x (paper §3.2; reference §4.5)."""
    assert recon.shape == x.shape, f"reconstruction {tuple(recon.shape)} and input {tuple(x.shape)} differ in shape"
    dims = tuple(range(1, x.ndim))
    r_lo, r_hi = recon.amin(dims, keepdim=True), recon.amax(dims, keepdim=True)
    x_lo, x_hi = x.amin(dims, keepdim=True), x.amax(dims, keepdim=True)
    rescaled = (recon - r_lo) / (r_hi - r_lo).clamp_min(1e-12) * (x_hi - x_lo) + x_lo
    return (rescaled - x).abs().mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms (:func:`weights_for` gives the paper's and the reference's)."""

    scalar: float = 1.0
    """Eq. 4 on the scalar reward head."""
    strength: float = 0.0
    """Bradley-Terry head."""
    strength_l2: float = 0.0
    """L2 norm of the strengths."""
    pairs: float = 0.0
    """Pair-head cross-entropy."""
    reconstruction: float = 1e-2
    """L1 reconstruction (sigma net only)."""
    pair_burn_in_epochs: int = 3
    """From this epoch on the pair head sees one random order per pair (reference §4.6)."""


PAPER_WEIGHTS = LossWeights()
"""Paper §3.2: L_w (Eq. 4) + 1e-2 L1 reconstruction."""
REFERENCE_WEIGHTS = LossWeights(scalar=1e-3, strength=1e-3, strength_l2=1e-8, pairs=1.0, reconstruction=0.0)
"""What the reference code optimises (docs/method/reference_method.md §4.6; its reconstruction term is inert)."""


def weights_for(objective: str) -> LossWeights:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
    return PAPER_WEIGHTS if objective == "paper" else REFERENCE_WEIGHTS
