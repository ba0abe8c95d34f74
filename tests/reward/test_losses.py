import math

import pytest
import torch

from nerfsculpt.reward.losses import (
    PAPER_WEIGHTS,
    REFERENCE_WEIGHTS,
    bradley_terry_loss,
    pair_head_loss,
    pair_head_probability,
    pair_indices,
    reconstruction_loss,
    strength_l2,
    strength_loss,
    weights_for,
)


def nll(margin: float) -> float:  # -log sigmoid(margin), by hand
    return math.log(1 + math.exp(-margin))


def test_pairs_are_combinations_in_order():
    first, second = pair_indices(3)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]


def test_bradley_terry_two_and_three_items_known_values():
    two = bradley_terry_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    assert two.item() == pytest.approx(nll(1.0))  # 0.31326
    three = bradley_terry_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([3]))
    assert three.item() == pytest.approx((nll(1) + nll(2) + nll(1)) / 3)  # normalised by C(3, 2)


def test_bradley_terry_mixed_lengths_average_per_item_first():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.5, 3.0, 99.0]])  # second item has K = 2; its third entry is padding
    loss = bradley_terry_loss(scores, torch.tensor([3, 2]))
    assert loss.item() == pytest.approx(((nll(1) + nll(2) + nll(1)) / 3 + nll(-2.5)) / 2)


def test_strength_loss_is_the_bt_probability_of_the_strengths():
    s = torch.tensor([[0.3, -0.4]])
    lam = s.exp()[0]
    assert strength_loss(s, torch.tensor([2])).item() == pytest.approx(-math.log(lam[0] / (lam[0] + lam[1])))
    assert strength_l2(s, torch.tensor([2])).item() == pytest.approx(float(lam.norm()))


def test_pair_head_loss_both_orders_and_one_order():
    fwd = torch.tensor([[[2.0, 0.0]]])  # one pair, the head says "first wins"
    bwd = torch.tensor([[[0.0, 1.0]]])  # reversed order: "second wins" (correct)
    ce_f = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce_b = -math.log(math.exp(1) / (1 + math.exp(1)))
    lengths = torch.tensor([2])
    assert pair_head_loss(fwd, bwd, lengths).item() == pytest.approx((ce_f + ce_b) / 2)
    assert pair_head_loss(fwd, bwd, lengths, one_order=torch.tensor([[True]])).item() == pytest.approx(ce_f)
    assert pair_head_loss(fwd, bwd, lengths, one_order=torch.tensor([[False]])).item() == pytest.approx(ce_b)
    p = pair_head_probability(fwd, bwd)
    assert p.item() == pytest.approx((math.exp(2) / (math.exp(2) + 1) + math.exp(1) / (1 + math.exp(1))) / 2)


def test_pair_head_loss_ignores_padding_pairs():
    fwd = torch.tensor([[[1.0, 0.0], [5.0, -5.0], [-5.0, 5.0]], [[0.0, 1.0], [9.0, 9.0], [9.0, 9.0]]])
    bwd = fwd.flip(-1)
    full = pair_head_loss(fwd, bwd, torch.tensor([3, 3]))
    padded = pair_head_loss(fwd, bwd, torch.tensor([3, 2]))  # item 2 keeps only pair (0, 1)
    ce = torch.nn.functional.cross_entropy
    expected = torch.stack([ce(fwd[0, 0], torch.tensor(0)), ce(fwd[0, 1], torch.tensor(0)),
                            ce(fwd[0, 2], torch.tensor(0)), ce(fwd[1, 0], torch.tensor(0))]).mean()
    assert padded.item() == pytest.approx(expected.item())
    assert full.item() != pytest.approx(padded.item())


def test_reconstruction_is_invariant_to_affine_recon_and_known_otherwise():
    x = torch.rand(2, 1, 3, 4, 5) * 100
    assert reconstruction_loss(2 * x + 7, x).item() == pytest.approx(0.0, abs=1e-4)
    x = torch.tensor([[0.0, 10.0, 4.0]])
    recon = torch.tensor([[0.0, 1.0, 0.5]])  # rescaled to [0, 10, 5]: |5 - 4| / 3
    assert reconstruction_loss(recon, x).item() == pytest.approx(1 / 3)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="empty batch"):
        bradley_terry_loss(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="2..3 ranked entries"):
        bradley_terry_loss(torch.zeros(1, 3), torch.tensor([1]))
    with pytest.raises(AssertionError, match=r"\[B, K\]"):
        bradley_terry_loss(torch.zeros(3), torch.tensor([3]))
    with pytest.raises(ValueError, match="unknown objective"):
        weights_for("mine")


def test_objectives_match_paper_and_reference():
    assert weights_for("paper") == PAPER_WEIGHTS
    assert (PAPER_WEIGHTS.scalar, PAPER_WEIGHTS.pairs, PAPER_WEIGHTS.reconstruction) == (1.0, 0.0, 1e-2)
    ref = weights_for("reference")
    assert ref == REFERENCE_WEIGHTS
    assert (ref.pairs, ref.scalar, ref.strength, ref.strength_l2, ref.reconstruction) == (1.0, 1e-3, 1e-3, 1e-8, 0.0)
