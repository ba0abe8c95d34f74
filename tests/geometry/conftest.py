"""Shared fixtures: a tiny random EG3D, a private copy of it that a test may modify, and two latents."""

import copy

import pytest
import torch

from nerfsculpt.camera import canonical_camera
from nerfsculpt.generator.config import tiny_config
from nerfsculpt.generator.triplane import TriPlaneGenerator


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return TriPlaneGenerator(tiny_config()).eval()


@pytest.fixture
def own_G(G):
    """A copy of ``G`` for one test: patch or replace its parts freely, the shared ``G`` stays intact."""
    return copy.deepcopy(G)


@pytest.fixture(scope="module")
def ws(G):
    with torch.no_grad():
        return G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)),
                         canonical_camera().expand(2, 25))  # (2, num_ws, w_dim)
