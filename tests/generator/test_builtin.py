"""Tests of built-in generators, resolve_generator and the weight fingerprint."""

from __future__ import annotations

import hashlib
import struct

import pytest
import torch
from torch import nn

from nerfsculpt.generator.builtin import (
    BUILTIN_GENERATORS,
    generator_fingerprint,
    register_builtin,
    resolve_generator,
)
from nerfsculpt.generator.checkpoint import CheckpointError, convert
from nerfsculpt.generator.config import tiny_config
from nerfsculpt.generator.triplane import TriPlaneGenerator
from tests.generator.eg3d_snapshot import tiny_networks, write_eg3d_snapshot


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    networks = tiny_networks(seed=3)
    path = write_eg3d_snapshot(tmp_path_factory.mktemp("snapshot") / "network-snapshot.pkl", **networks)
    return path, networks


def test_fingerprint_known_answer():
    """The documented byte layout: per sorted key, name NUL dtype NUL shape NUL, then raw little-endian bytes."""
    module = nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 2.0]]))
        module.bias.copy_(torch.tensor([0.5]))
    expected = hashlib.sha256(
        b"bias\0float32\0[1]\0" + struct.pack("<f", 0.5) + b"weight\0float32\0[1, 2]\0" + struct.pack("<2f", 1.0, 2.0)
    ).hexdigest()
    assert generator_fingerprint(module) == expected


def test_fingerprint_sees_every_value_dtype_and_name():
    module = nn.Linear(3, 2)
    reference = generator_fingerprint(module)
    with torch.no_grad():
        module.bias[1] += 1e-6
    assert generator_fingerprint(module) != reference
    assert generator_fingerprint(module.double()) != generator_fingerprint(module.float())
    renamed = nn.Sequential(module)  # same tensors, keys prefixed with '0.'
    assert generator_fingerprint(renamed) != generator_fingerprint(module)


def test_tiny_random_is_fixed_and_labelled():
    state = torch.get_rng_state()
    G1, info1 = resolve_generator("tiny-random")
    G2, info2 = resolve_generator("tiny-random", device="cpu")
    assert torch.equal(torch.get_rng_state(), state), "building tiny-random must not touch the global RNG"
    assert isinstance(G1, TriPlaneGenerator) and not G1.training
    assert not any(p.requires_grad for p in G1.parameters())
    assert info1.fingerprint == info2.fingerprint == generator_fingerprint(G2)
    assert info1.kind == "builtin" and info1.spec == "tiny-random" and info1.path is None
    assert "random weights, for trying the tools only" in info1.description
    assert info1.config["plane_resolution"] == tiny_config().plane_resolution
    torch.manual_seed(123)  # another global seed must not change the weights
    assert resolve_generator("tiny-random")[1].fingerprint == info1.fingerprint
    untrained = TriPlaneGenerator(tiny_config())  # a different random draw
    assert generator_fingerprint(untrained) != info1.fingerprint


def test_same_weights_same_fingerprint_across_formats(snapshot, tmp_path):
    path, networks = snapshot
    converted = convert(path, tmp_path / "converted")
    G_pkl, info_pkl = resolve_generator(str(path))
    G_dir, info_dir = resolve_generator(str(converted))
    G_json, info_json = resolve_generator(str(converted / "config.json"))
    expected = generator_fingerprint(networks["G_ema"])
    assert info_pkl.fingerprint == info_dir.fingerprint == info_json.fingerprint == expected
    assert (info_pkl.kind, info_dir.kind, info_json.kind) == ("eg3d-pickle", "converted", "converted")
    assert info_pkl.config == info_dir.config
    assert info_pkl.path == str(path.resolve())
    _, info_g = resolve_generator(str(path), network="G")
    assert info_g.network == "G" and info_g.fingerprint == generator_fingerprint(networks["G"]) != expected


def test_unknown_generator_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match=r"not a built-in generator \(synthetic, tiny-random.*pass an EG3D \.pkl"):
        resolve_generator(str(tmp_path / "missing.pkl"))
    with pytest.raises(CheckpointError, match="tiny-random"):
        resolve_generator("tiny-randon")


def test_register_builtin_rejects_clashes_and_paths():
    with pytest.raises(ValueError, match="already exists"):
        register_builtin("tiny-random", "again", lambda: TriPlaneGenerator(tiny_config()))
    for name in ("models/x", "x.pkl"):
        with pytest.raises(ValueError, match="must not look like paths"):
            register_builtin(name, "bad", lambda: TriPlaneGenerator(tiny_config()))
    assert set(BUILTIN_GENERATORS) >= {"tiny-random"}
