"""Data-parallel reward training on CPU with gloo: 2 ranks x batch 2 == 1 process x batch 4.

Run in float64: Adam normalises each gradient, so in float32 a parameter whose gradient is ~0 can
move by up to lr either way depending on the order of float sums, and the two runs part by more
than any useful tolerance.
"""

import dataclasses

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nerfsculpt.reward.losses import weights_for
from nerfsculpt.reward.sigma_net import SigmaRewardNet
from nerfsculpt.reward.train import evaluate, train
from tests.reward.test_train import FAST, BlobSlabs, make_splits
from tests.reward.tiny import TINY_SIGMA

CONFIG = dataclasses.replace(FAST, batch=2, max_epochs=2, checkpoint_every=3)


def _rank(rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = SigmaRewardNet(TINY_SIGMA)
        splits = make_splits(16, 8, 8)
        train(net, splits, BlobSlabs(), out, CONFIG, progress=False)
        result = evaluate(net, splits.lists("test", True, seed=0), BlobSlabs(), weights_for("paper"))
        torch.save({"state": net.state_dict(), "result": result}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_train_like_one_process_with_twice_the_batch(tmp_path):
    mp.spawn(_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "ddp")), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=False) for r in range(2)]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        single = SigmaRewardNet(TINY_SIGMA)
        splits = make_splits(16, 8, 8)
        train(single, splits, BlobSlabs(), tmp_path / "single", dataclasses.replace(CONFIG, batch=4), progress=False)
        expected = evaluate(single, splits.lists("test", True, seed=0), BlobSlabs(), weights_for("paper"))
    finally:
        torch.set_default_dtype(default)
    for rank in ranks:
        for key, value in single.state_dict().items():
            torch.testing.assert_close(rank["state"][key], value, rtol=1e-7, atol=1e-9)
        assert rank["result"]["accuracy"] == expected["accuracy"]  # sharded evaluation, summed counts
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "best.safetensors", "checkpoint", "log.jsonl", "rank0.pt", "rank1.pt"]
