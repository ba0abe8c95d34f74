"""Data-parallel fine-tuning on CPU with gloo (world size 2): ranks stay in sync, rank 0 writes the run."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nerfsculpt.finetune.run import finetune
from nerfsculpt.finetune.snapshot import latest_snapshot
from nerfsculpt.generator.builtin import generator_fingerprint, resolve_generator
from tests.finetune.conftest import tiny_run


def _rank(rank: int, world: int, rendezvous: str, reward: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        summary = finetune(tiny_run(kimg=0.008, snapshot_ticks=1), "tiny-random", reward, out, torch.device("cpu"),
                           progress=False)
        with open(f"{out}.rank{rank}", "w") as f:
            f.write(summary["G_ema_fingerprint"])
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_fine_tune_in_step(tmp_path, tiny_reward_path):
    out = tmp_path / "run"
    mp.spawn(_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", str(tiny_reward_path), str(out)), nprocs=2,
             join=True)
    snapshot = latest_snapshot(out)
    assert snapshot.name == "0000002"
    fingerprints = [(tmp_path / f"run.rank{rank}").read_text() for rank in range(2)]
    G_ema, _ = resolve_generator(str(snapshot))
    assert fingerprints[0] == fingerprints[1] == generator_fingerprint(G_ema)  # averaged gradients: one model
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["plan"]["per_process"] == 2
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["tick"] for r in records] == [0, 1] and "loss/L_r" in records[1]
