"""Region attribution (nerfsculpt.evaluate.attribution): completeness and known answers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.evaluate.attribution import (
    Region,
    attribute,
    integrated_gradients,
    read_regions,
    region_labels,
    shapley,
    synthetic_regions,
)
from nerfsculpt.geometry.slab import SlabSpec


class Weighted(torch.nn.Module):
    """A linear reward sum(w * x): every region's Shapley value and IG is sum over it of w * change."""

    def __init__(self, weights):
        super().__init__()
        self.w = torch.nn.Parameter(weights)

    def forward(self, x):  # [N, X, Y, Z] -> [N]
        return (x * self.w).sum(dim=(1, 2, 3))


def linear_bundle(shape, seed=0):
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return SimpleNamespace(model=Weighted(weights), prepare_slabs=lambda s: s), weights


def test_linear_reward_known_answers():
    shape = (4, 5, 6)
    bundle, w = linear_bundle(shape)
    start, end = torch.randn(shape), torch.randn(shape)
    labels = torch.randint(0, 3, shape)
    names = ["a", "b", "other"]
    orders = np.stack([np.random.RandomState(123).permutation(3) for _ in range(4)])  # noqa: NPY002
    values = shapley(bundle, start, end, labels, names, orders)
    ig = integrated_gradients(bundle, start, end, labels, names, steps=3)
    for k, name in enumerate(names):
        expected = float((w * (end - start))[labels == k].sum())
        assert values[name] == pytest.approx(expected, abs=1e-4)
        assert ig[name]["signed"] == pytest.approx(expected, abs=1e-4)
    total = float((w * (end - start)).sum())
    assert sum(values.values()) == pytest.approx(total, abs=1e-4)  # completeness


def test_regions_first_box_wins_and_the_rest_is_other():
    spec = SlabSpec(resolution=16)  # slab indices: X 4..11, Y 4..12, Z 6..14
    regions = [Region("front", (-1.0, -1.0, 0.0), (1.0, 1.0, 1.0)), Region("all", (-1.0, -1.0, -1.0), (1, 1, 1))]
    labels = region_labels(regions, spec)
    assert labels.shape == spec.shape and set(labels.unique().tolist()) == {0, 1}
    assert (labels[:, :, -1] == 0).all()  # the front (z >= 0) belongs to the first box
    nothing = region_labels([Region("far", (5.0, 5.0, 5.0), (6.0, 6.0, 6.0))], spec)
    assert (nothing == 1).all()  # every voxel is "other"


def test_region_file(tmp_path):
    path = tmp_path / "regions.json"
    path.write_text(json.dumps({"regions": [{"name": "nose", "min": [-0.1, -0.1, 0.1], "max": [0.1, 0.1, 0.4]}]}))
    assert read_regions(path) == [Region("nose", (-0.1, -0.1, 0.1), (0.1, 0.1, 0.4))]
    path.write_text(json.dumps({"regions": [{"name": "other", "min": [0, 0, 0], "max": [1, 1, 1]}]}))
    with pytest.raises(NerfsculptError, match="unique"):
        read_regions(path)
    path.write_text(json.dumps({"landmarks": {"eyes": [[-0.1, 0.1, 0.2], [0.1, 0.12, 0.22]]}, "margin": 0.01}))
    (eyes,) = read_regions(path)
    assert eyes.name == "eyes" and eyes.low == pytest.approx((-0.11, 0.09, 0.19))
    assert eyes.high == pytest.approx((0.11, 0.13, 0.23))
    path.write_text("{}")
    with pytest.raises(NerfsculptError, match="expected"):
        read_regions(path)


def test_attribution_of_a_tiny_pair_is_complete(tiny_pair, tiny_bundle):
    before, after = tiny_pair
    regions = synthetic_regions([200000, 200001], before.z_dim)
    assert [r.name for r in regions][:2] == ["nose", "eye_right"]
    result = attribute(tiny_bundle, before, after, [200000, 200001], 0.7, regions, permutations=2, steps=2)
    assert result["summary"]["max_shapley_completeness_error"] < 1e-3
    assert len(result["per_seed"]) == 2 and set(result["summary"]["regions"]) == {*[r.name for r in regions], "other"}
    assert sum(result["voxels"].values()) == int(np.prod(tiny_bundle.extraction.slab_spec.shape))
