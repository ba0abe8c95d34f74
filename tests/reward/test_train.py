"""The reward trainer: it learns a known preference, resumes exactly, and counts Table-1 pairs right."""

import dataclasses
import json

import pytest
import torch

from nerfsculpt.preferences.pairs import RankedList
from nerfsculpt.preferences.store import Item
from nerfsculpt.reward.losses import weights_for
from nerfsculpt.reward.sigma_net import SigmaRewardNet, sigma_input
from nerfsculpt.reward.train import RewardTrainConfig, Splits, evaluate, format_table, train
from tests.reward.tiny import TINY_SIGMA

SHAPE = (16, 18, 17)  # the reward slab at 32^3, (X, Y, Z)


class BlobSlabs:
    """Slabs of a smooth head with a 'floater' in front of it whose size is the item's badness."""

    def __init__(self):
        self.calls = 0

    @staticmethod
    def badness(item: Item) -> float:
        return (item.seed * 7919 % 101) / 100  # a fixed pseudo-random badness in [0, 1]

    def load(self, item: Item) -> torch.Tensor:
        self.calls += 1
        x, y, z = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
        head = 200 * torch.tanh(3 * (0.6 - (x**2 + y**2 + (z + 0.6) ** 2).sqrt()))
        r = 0.45 * self.badness(item) if item.kind == "regular" else 0.0
        floater = 400 * torch.sigmoid(30 * (r - (x**2 + y**2 + (z - 0.7) ** 2).sqrt())) if r else 0
        noise = 5 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(item.seed))
        return head + floater + noise


def make_splits(n_train=60, n_val=20, n_test=30) -> Splits:
    source = BlobSlabs()

    def lists(seeds, start):
        out = []
        for q, (a, b) in enumerate(zip(seeds[::2], seeds[1::2], strict=True)):
            items = sorted([Item("toy", "h", seed=a), Item("toy", "h", seed=b)], key=source.badness)
            if source.badness(items[0]) != source.badness(items[1]):
                out.append(RankedList(tuple(items), question_id=start + q, annotator="oracle"))
        return out

    anchors = {name: [Item("toy", "h", seed=100000 + k + 10 * i, psi=0.25, kind="anchor") for k in range(5)]
               for i, name in enumerate(("train", "val", "test"))}
    return Splits(train=lists(list(range(0, 2 * n_train)), 0), val=lists(list(range(1000, 1000 + 2 * n_val)), 1000),
                  test=lists(list(range(2000, 2000 + 2 * n_test)), 2000), anchors=anchors)


FAST = RewardTrainConfig(lr=3e-3, batch=4, max_epochs=4, patience=2, checkpoint_every=5, log_every=5)


@pytest.mark.slow
def test_reward_learns_a_known_preference(tmp_path):
    torch.manual_seed(0)
    net = SigmaRewardNet(TINY_SIGMA)
    splits, source = make_splits(), BlobSlabs()
    weights = weights_for("paper")
    before = evaluate(net, splits.lists("test", False, seed=0), source, weights)
    start = [p.detach().clone() for p in net.parameters()]
    summary = train(net, splits, source, tmp_path / "run", FAST, progress=False)
    after = evaluate(net, splits.lists("test", False, seed=0), source, weights)
    assert any(not torch.equal(a, p) for a, p in zip(start, net.parameters(), strict=True))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r["total"] for r in log if "total" in r]
    assert sum(steps[-3:]) / 3 < sum(steps[:3]) / 3  # the training loss fell
    assert after["loss"] < before["loss"]
    assert after["accuracy"]["regular_only/scalar"]["accuracy"] >= 0.85, format_table({"test": after})
    assert summary["best_epoch"] is not None and (tmp_path / "run" / "best.safetensors").is_file()


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    config = dataclasses.replace(FAST, max_epochs=2, checkpoint_every=2)  # 5 steps of 4 lists (12 slabs) per epoch
    torch.manual_seed(0)
    straight = SigmaRewardNet(TINY_SIGMA)
    train(straight, make_splits(20, 8, 4), BlobSlabs(), tmp_path / "a", config, progress=False)

    class Interrupting(BlobSlabs):
        def load(self, item):
            if self.calls == 40:  # in step 4 of epoch 1, after the step-2 checkpoint
                raise KeyboardInterrupt
            return super().load(item)

    torch.manual_seed(0)
    resumed = SigmaRewardNet(TINY_SIGMA)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, make_splits(20, 8, 4), Interrupting(), tmp_path / "b", config, progress=False)
    torch.manual_seed(123)  # a fresh process would start from other weights: the checkpoint must win
    resumed = SigmaRewardNet(TINY_SIGMA)
    train(resumed, make_splits(20, 8, 4), BlobSlabs(), tmp_path / "b", config, progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_evaluate_counts_table_1_pairs():
    torch.manual_seed(1)
    net = SigmaRewardNet(TINY_SIGMA).eval()
    splits, source = make_splits(4, 4, 6), BlobSlabs()
    anchored = splits.lists("test", True, seed=3)
    result = evaluate(net, anchored, source, weights_for("paper"), batch=2)
    acc = result["accuracy"]
    assert acc["all_pairs/scalar"]["n"] == 3 * len(anchored) and acc["regular_only/scalar"]["n"] == len(anchored)
    with torch.no_grad():
        r = [net(sigma_input(torch.stack([source.load(i) for i in lst.items]))) for lst in anchored]
    regular = sum(bool(x[1] > x[2]) for x in r)
    every = sum(bool(x[i] > x[j]) for x in r for i, j in ((0, 1), (0, 2), (1, 2)))
    assert acc["regular_only/scalar"]["correct"] == regular and acc["all_pairs/scalar"]["correct"] == every
    lo, hi = acc["all_pairs/scalar"]["ci95"]
    assert lo <= acc["all_pairs/scalar"]["accuracy"] <= hi
    assert "regular only" in format_table({"test": result})


def test_empty_splits_and_bad_configs_are_refused(tmp_path):
    net = SigmaRewardNet(TINY_SIGMA)
    splits = make_splits(4, 4, 4)
    with pytest.raises(ValueError, match="val split is empty"):
        train(net, dataclasses.replace(splits, val=[]), BlobSlabs(), tmp_path, FAST, progress=False)
    with pytest.raises(ValueError, match="no anchors for the train split"):
        train(net, dataclasses.replace(splits, anchors={}), BlobSlabs(), tmp_path, FAST, progress=False)
    with pytest.raises(ValueError, match="precision"):
        train(net, splits, BlobSlabs(), tmp_path, dataclasses.replace(FAST, precision="fp8"), progress=False)
    assert not (tmp_path / "checkpoint").exists()


def test_tensorboard_events_are_written_beside_the_jsonl_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    config = dataclasses.replace(FAST, max_epochs=1, log_every=1, tensorboard=True)
    train(SigmaRewardNet(TINY_SIGMA), make_splits(8, 4, 4), BlobSlabs(), tmp_path, config, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/total", "train/scalar", "val/val_loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("train/total")) == len((tmp_path / "log.jsonl").read_text().splitlines()) - 1


def test_the_table_keeps_its_columns_apart_for_large_counts():
    cell = {"accuracy": 0.953, "correct": 8577, "n": 9000, "ci95": [0.937, 0.966]}
    result = {"accuracy": {"all_pairs/scalar": cell, "regular_only/scalar": {**cell, "n": 300, "accuracy": 0.86}}}
    row = format_table({"test": result}).splitlines()[1]
    assert row.split() == ["test", "scalar", "0.953", "[0.937,", "0.966]", "n=9000",
                                                       "0.860", "[0.937,", "0.966]", "n=300"]
