"""Shared fixtures: tiny G / G_ema / D and a mock EG3D snapshot pickle written from them."""

import pytest

from tests.generator.eg3d_snapshot import tiny_networks, write_eg3d_snapshot


@pytest.fixture(scope="module")
def networks():
    return tiny_networks(seed=0)


@pytest.fixture(scope="module")
def snapshot_path(networks, tmp_path_factory):
    return write_eg3d_snapshot(tmp_path_factory.mktemp("snapshot") / "network-snapshot.pkl", **networks)
