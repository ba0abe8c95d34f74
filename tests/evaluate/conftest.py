"""Tiny evaluation setups: the tiny random EG3D, a changed copy of it, a tiny sigma reward on 32^3 slabs."""

import copy

import pytest
import torch

from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.reward.bundle import load_bundle
from tests.finetune.conftest import write_tiny_reward


@pytest.fixture(scope="session")
def tiny_pair():
    """(before, after): the tiny random generator and a copy whose decoder weights moved a little."""
    before, _ = resolve_generator("tiny-random", "cpu")
    after = copy.deepcopy(before)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for p in after.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return before.eval(), after.eval()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    return load_bundle(write_tiny_reward(tmp_path_factory.mktemp("reward") / "bundle"))
