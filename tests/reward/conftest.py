import dataclasses

import pytest
import torch

from nerfsculpt.reward.bundle import Extraction
from nerfsculpt.reward.sigma_net import SigmaRewardNet
from tests.reward.tiny import SMALL_SLAB, TINY_SIGMA


@pytest.fixture
def tiny_sigma_net() -> SigmaRewardNet:
    torch.manual_seed(0)
    return SigmaRewardNet(TINY_SIGMA).eval()


@pytest.fixture
def small_extraction() -> Extraction:
    return Extraction(slab=dataclasses.asdict(SMALL_SLAB))


@pytest.fixture(scope="session")
def slab_bank(tmp_path_factory):
    """4 seeds of the tiny random generator: reward slabs cut at 32^3 on EG3D's grid."""
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.geometry.bank import BankConfig, write_bank

    path = tmp_path_factory.mktemp("bank") / "bank"
    config = BankConfig(resolution=32, slab_resolution=32, mesh_level=0.0, depth_resolution=8, n_points=32,
                        render_resolution=32)
    write_bank(path, *resolve_generator("tiny-random", "cpu"), config, [0, 1, 2, 3], ("slab",), progress=False)
    return path
