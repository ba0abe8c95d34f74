"""Shared fixtures: a tiny random EG3D and two of its latents."""

import pytest
import torch

from nerfsculpt.camera import canonical_camera
from nerfsculpt.generator.config import tiny_config
from nerfsculpt.generator.triplane import TriPlaneGenerator


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return TriPlaneGenerator(tiny_config()).eval()


@pytest.fixture(scope="module")
def ws(G):
    with torch.no_grad():
        return G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)),
                         canonical_camera().expand(2, 25))  # (2, num_ws, w_dim)
