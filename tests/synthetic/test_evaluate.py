"""The quality-bar evaluation on a stand-in generator whose answers are known."""

from types import SimpleNamespace

import pytest
import torch

from nerfsculpt.latents import z_from_seeds
from nerfsculpt.synthetic import evaluate as evaluate_module
from nerfsculpt.synthetic.generator import synthetic_generator_config
from nerfsculpt.synthetic.heads import DEFECTS, head_field, head_params_from_z
from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig, score_heads
from nerfsculpt.synthetic.render import render_field


def test_a_perfect_generator_agrees_with_the_procedural_truth_and_improves_with_truncation(monkeypatch):
    # Stand-in: the generator of seed s *is* the procedural head of its z, and truncation with psi
    # shrinks z towards 0 (the clean mean head), as truncation in w does for a fitted generator.
    def perfect(G, z, psi, oracle, batch):
        return score_heads(head_params_from_z(z * psi), oracle)

    monkeypatch.setattr(evaluate_module, "_score_seeds", perfect)
    G = SimpleNamespace(z_dim=64, dataset_label_std=torch.ones(25))
    oracle = GeometryOracle(OracleConfig(resolution=96))  # the oracle is calibrated at 96-128
    seeds = list(range(100, 116))
    result = evaluate_module.evaluate_generator(G, seeds, oracle, psis=(0.0, 0.5, 1.0), rgb=False)

    assert result["protocol"]["n_seeds"] == 16
    assert result["spearman"]["vs_procedural_oracle"]["quality"] == 1.0
    for name in DEFECTS:
        rho = result["spearman"]["vs_procedural_oracle"][name]
        assert rho is None or rho == pytest.approx(1.0)  # None: that defect is absent from every one of the 16 seeds
    quality = [result["truncation"][str(psi)]["quality"] for psi in (0.0, 0.5, 1.0)]
    assert quality[0] >= quality[1] >= quality[2]
    assert result["truncation"]["0.0"]["quality"] > -0.05  # psi = 0: the clean mean head
    assert result["truncation"]["1.0"] == result["procedural_truth"]


class _Painted:
    """Stand-in generator whose renders are the procedural heads of its latents, passed through ``edit``."""

    z_dim, img_resolution, neural_rendering_resolution = 64, 64, 16

    def __init__(self, edit=lambda image: image):
        self.edit = edit
        self.rendering_kwargs = {**synthetic_generator_config().rendering_kwargs, "depth_resolution": 24,
                                 "depth_resolution_importance": 24}

    def mapping(self, z, c):
        return z

    def synthesis(self, ws, c, noise_mode, deterministic):
        params = head_params_from_z(ws)
        out = {}
        for key, resolution in (("image", self.img_resolution), ("image_raw", self.neural_rendering_resolution)):
            image = render_field(lambda p: head_field(p, params), c, resolution, self.rendering_kwargs)["image"]
            out[key] = self.edit(image)
        return out


def _flat(image):  # every pixel of the head the head's mean colour: no eyes, no mouth
    mask = (image > -0.99).any(1, keepdim=True)
    mean = (image * mask).sum((2, 3), keepdim=True) / mask.sum((2, 3), keepdim=True)
    return torch.where(mask, mean, image)


def test_rgb_scores_tell_a_face_from_a_blob():
    z = z_from_seeds(list(range(6)), 64)
    perfect = evaluate_module.rgb_scores(_Painted(), z, batch=3)
    assert perfect["fraction_recognisable"] == 1.0 and perfect["psnr_image"] == pytest.approx(100.0)
    for name in ("eyes", "mouth"):
        assert perfect[name]["generator"] == perfect[name]["truth"] > 0.05
    blob = evaluate_module.rgb_scores(_Painted(_flat), z, batch=3)
    assert blob["fraction_recognisable"] == 0.0 and blob["eyes"]["fraction_shown"] == 0.0
    assert 10 < blob["psnr_image"] < 40 and abs(blob["eyes"]["generator"]) < 0.02
