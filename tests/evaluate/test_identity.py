"""LPIPS and face-identity drift (nerfsculpt.evaluate.identity) with stand-in weights and a tiny embedder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.evaluate.identity import LPIPS, identity_drift, view_cameras


@pytest.fixture(scope="module")
def lpips():
    torch.manual_seed(0)
    net = LPIPS()
    for module in net.features:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    return net


def test_lpips_is_a_distance_of_float_images_in_minus_one_one(lpips):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn(2, 3, 32, 32)
    y = (x + 0.1 * noise).clamp(-1, 1)
    z = (x + 0.5 * noise).clamp(-1, 1)
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-6)
    torch.testing.assert_close(lpips(x, y), lpips(y, x))
    assert (lpips(x, z) > lpips(x, y)).all() and (lpips(x, y) > 0).all()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        lpips((x + 1) * 127.5, x)  # [0, 255] floats
    with pytest.raises(ValueError, match="uint8"):
        lpips(((x + 1) * 127.5).to(torch.uint8), x)


def test_lpips_loads_torchvision_and_lpips_names(lpips, tmp_path):
    vgg = {f"features.{k}": v.clone() for k, v in lpips.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # the rest of torchvision's file is ignored
    lins = {f"lin{k}.model.1.weight": torch.rand(p.shape) for k, p in enumerate(lpips.lins)}
    save_file(vgg, tmp_path / "vgg16.safetensors")
    save_file(lins, tmp_path / "lpips_vgg.safetensors")
    loaded = LPIPS.load(tmp_path / "vgg16.safetensors", tmp_path / "lpips_vgg.safetensors")
    torch.testing.assert_close(loaded.lins[4], lins["lin4.model.1.weight"])
    x, y = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    assert float(loaded(x, y)) != float(lpips(x, y))  # the linear weights changed, the backbone did not
    with pytest.raises(NerfsculptError, match="vgg.pth"):
        LPIPS.load(tmp_path / "vgg16.safetensors", tmp_path / "vgg16.safetensors")


class TinyEmbedder(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, 160, 160] in [-1, 1] -> [N, 12]
        assert images.shape[-1] == 160 and float(images.min()) >= -1 and float(images.max()) <= 1
        return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)


def test_identity_drift_of_a_tiny_pair(tiny_pair, lpips):
    before, after = tiny_pair
    same = identity_drift(before, before, [200000, 200001, 200002], lpips=lpips, embedder=TinyEmbedder(), size=32)
    assert same["lpips"]["canonical"]["mean"] == pytest.approx(0, abs=1e-6)
    assert same["face_identity"]["across_canonical"]["mean"] == pytest.approx(1.0)
    assert same["views"] == 8 and same["camera_source"] == "FFHQ-like prior"
    moved = identity_drift(before, after, [200000, 200001, 200002], lpips=lpips, embedder=TinyEmbedder(), size=32,
                           geometry_change={"depth": [0.1, 0.2, 0.3], "sigma": [0.3, 0.1, 0.2]})
    assert moved["lpips"]["views"]["mean"] > 0 and moved["face_identity"]["across_views"]["min"] <= 1
    spearman = moved["face_identity"]["drift_vs_geometry_spearman"]
    assert set(spearman) == {"canonical_vs_depth", "canonical_vs_sigma", "views_vs_depth", "views_vs_sigma"}
    assert all(-1 <= r <= 1 for r in spearman.values())
    assert same["face_identity"]["consistency"]["view_pairs"]["original"] == pytest.approx(
        same["face_identity"]["consistency"]["view_pairs"]["tuned"])
    assert view_cameras(views=3).shape == (3, 25)
