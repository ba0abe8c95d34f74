"""Tiny fine-tuning setups: the tiny random EG3D, a tiny sigma reward on 32^3 slabs, data-free reals."""

import dataclasses

import pytest
import torch

from nerfsculpt.finetune.config import FinetuneConfig
from nerfsculpt.reward.bundle import Extraction, save_bundle
from nerfsculpt.reward.sigma_net import SigmaRewardNet
from tests.reward.tiny import SMALL_SLAB, TINY_SIGMA

TINY_RUN = FinetuneConfig(kimg=0.016, batch=4, data_free=True, tick_kimg=0.008, trajectory_seeds=(300000, 300001),
                          image_seeds=(2,), mesh_seeds=(), consistency_resolution=16, density_reg_points=64)
"""4 iterations at batch 4, a tick every 2; small grids so that a run takes seconds on the tiny generator."""


def tiny_run(**changes) -> FinetuneConfig:
    return dataclasses.replace(TINY_RUN, **changes)


def write_tiny_reward(path):
    """A tiny sigma_slab reward bundle (random weights, seed 0) on 32^3 slabs at ``path``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SigmaRewardNet(TINY_SIGMA)
    return save_bundle(path, net, Extraction(slab=dataclasses.asdict(SMALL_SLAB)))


@pytest.fixture(scope="session")
def tiny_reward_path(tmp_path_factory):
    return write_tiny_reward(tmp_path_factory.mktemp("reward") / "bundle")


def make_tuner(config: FinetuneConfig, reward_model: torch.nn.Module | None = None):
    """A FineTuner on the tiny random generator (fresh D, data-free reals); ``reward_model`` reads 32^3 slabs."""
    import copy

    from nerfsculpt.finetune.data import RenderedImages
    from nerfsculpt.finetune.loop import FineTuner
    from nerfsculpt.finetune.snapshot import new_discriminator
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.reward.bundle import RewardBundle

    G_ema, _ = resolve_generator("tiny-random")
    G_old = copy.deepcopy(G_ema)
    reward = None if reward_model is None else RewardBundle(
        reward_model, Extraction(slab=dataclasses.asdict(SMALL_SLAB)), {})
    D = new_discriminator(G_ema, 0, torch.device("cpu"))
    return FineTuner(config, copy.deepcopy(G_ema), G_ema, D, G_old, reward, RenderedImages(G_old), torch.device("cpu"))


class Fullness(torch.nn.Module):
    """A reward that prefers fuller sigma slabs: r = (mean of the 0-100 normalised slab - 50) / 5."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.2))  # frozen by fine-tuning like any reward's weights

    def forward(self, x):  # [N, 1, Z, Y, X] -> [N]
        return (x.mean(dim=(1, 2, 3, 4)) - 50) * self.scale
