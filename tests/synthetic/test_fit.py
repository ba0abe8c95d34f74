"""Smoke and learning tests of the synthetic generator's fitting loop (a few steps, not the full fit)."""

import dataclasses
import json

import pytest
import torch

from nerfsculpt.generator.checkpoint import load_generator
from nerfsculpt.geometry.grid import grid_coordinates
from nerfsculpt.synthetic.fit import (
    DEFECT_BOXES,
    FACE_BOX,
    FitConfig,
    add_sigma_gain,
    baked,
    defect_weights,
    fit,
    set_w_avg,
    training_points,
)
from nerfsculpt.synthetic.generator import synthetic_generator_config
from nerfsculpt.synthetic.heads import DEFECTS, HOLE_CENTRE, head_colour, head_sigma, sample_head_params

SMALL = dict(batch=2, uniform_points=256, defect_points=64, surface_points=256, candidate_points=2048, image_every=2,
             image_batch=1, log_every=1, checkpoint_every=2, minutes=None)


def _in_defect_boxes(points):  # [..., 3] -> [...] bool
    return torch.stack([((points >= torch.tensor(low)) & (points <= torch.tensor(high))).all(-1)
                        for low, high, _ in DEFECT_BOXES]).any(0)


def test_training_points_concentrate_on_the_surface_and_the_defects():
    params = sample_head_params(2, torch.Generator().manual_seed(0))
    cfg = FitConfig(uniform_points=100, defect_points=64, surface_points=200, candidate_points=4000)
    points, sigma, colour = training_points(params, cfg, torch.Generator().manual_seed(1))
    assert points.shape == (2, 564, 3) and sigma.shape == (2, 564) and colour.shape == (2, 564, 3)
    torch.testing.assert_close(sigma, head_sigma(points, params))
    torch.testing.assert_close(colour, head_colour(points, params))
    # surface points straddle the sigma = 0 band far more than uniform points do
    assert sigma[:, 164:].abs().median() < 0.3 * sigma[:, :100].abs().median()
    assert points.abs().max() <= 0.5
    defect, face = points[:, 100:164], points[:, 364:]
    assert _in_defect_boxes(defect).all()
    low, high = FACE_BOX  # up to the ~6 mm jitter of the second sampling stage
    assert ((face >= torch.tensor(low) - 0.04) & (face <= torch.tensor(high) + 0.04)).all()


@pytest.mark.parametrize("defect", ["bumps", "nose", "holes", "floaters"])
def test_defect_boxes_cover_where_each_local_defect_changes_sigma(defect):
    """DEFECT_BOXES are written by hand: moving a defect in heads.py without moving its box must fail here.

    Asymmetry inflates a whole half of the face and has no box (``defect_weights`` covers it).
    Measured: bumps, nose and floaters 100 %; holes 92-93 % while the crater's box stopped at z = 0.1 (the
    deepest crater voxels sit at z = 0.094), hence its z = 0.08 now.
    """
    params = sample_head_params(8, torch.Generator().manual_seed(3), defect_free=True)
    points = grid_coordinates(48).expand(8, -1, -1).contiguous()  # (8, 48^3, 3)
    severity = torch.zeros(len(DEFECTS))
    severity[DEFECTS.index(defect)] = 1.0
    changed = (head_sigma(points, params.with_defects(severity)) - head_sigma(points, params)).abs() > 100
    in_a_box = _in_defect_boxes(points[0])
    for head in changed:
        assert head.any()  # every head has the defect
        assert (head & in_a_box).sum() >= 0.9 * head.sum()


def test_defect_weights_favour_where_defects_are_or_could_be():
    params = sample_head_params(2, torch.Generator().manual_seed(0), defect_free=True)
    params = params.with_defects(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.0] * len(DEFECTS)]))  # a crater in head 0
    in_crater = torch.tensor([HOLE_CENTRE[0], HOLE_CENTRE[1], 0.15])  # inside the clean forehead, empty with the crater
    far = torch.tensor([0.0, 0.0, -0.45])  # empty space behind the head: no defect reaches it
    points = torch.stack([in_crater, far]).expand(2, -1, -1).contiguous()
    sigma = head_sigma(points, params)
    assert sigma[0, 0] < 0 < sigma[1, 0]  # the crater removes the forehead there
    weights = defect_weights(points, params, sigma, 10.0)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[0, 1] == weights[1, 1] == weights.min()  # untouched points all weigh the same
    # the crater weighs 11 times the untouched points in the head that has it, and in the head that does not
    assert weights[0, 0] / weights[0, 1] == pytest.approx(11.0)
    assert weights[1, 0] / weights[1, 1] == pytest.approx(11.0)
    torch.testing.assert_close(defect_weights(points, params, sigma, 0.0), torch.ones(2, 2))


def test_colour_loss_covers_the_surface_points_and_the_shell():
    from nerfsculpt.synthetic.fit import _colour_points

    cfg = FitConfig(uniform_points=3, defect_points=1, surface_points=1, candidate_points=2, colour_shell=0.0)
    sigma = torch.tensor([[-200.0, -150.0, 199.9, 120.0, -200.0, 5.0]])  # U U U D S S
    assert _colour_points(sigma, cfg).tolist() == [[False, False, False, False, True, True]]
    shell = _colour_points(sigma, dataclasses.replace(cfg, colour_shell=0.05))  # |sigma| < 200 tanh(5 / 3) = 186.3
    assert shell.tolist() == [[False, True, False, True, True, True]]


def test_fit_runs_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    G = fit(out, FitConfig(steps=4, **SMALL), progress=False)
    log = [json.loads(line) for line in (out / "fit_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert {"sigma", "colour"} <= set(log[0]) and "image" in log[0]
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 4
    saved = load_generator(out / "final")
    torch.testing.assert_close(saved.state_dict()["backbone.mapping.w_avg"], G.backbone.mapping.w_avg)
    # resuming continues from step 4 instead of starting over
    fit(out, FitConfig(steps=6, **SMALL), progress=False)
    log = [json.loads(line) for line in (out / "fit_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_fit_reduces_the_sigma_loss(tmp_path):
    torch.manual_seed(0)
    cfg = FitConfig(steps=40, lr=3e-3, **{**SMALL, "image_every": 0, "log_every": 5, "checkpoint_every": 100})
    fit(tmp_path / "run", cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "fit_log.jsonl").read_text().splitlines()]
    assert log[-1]["sigma"] < 0.9 * log[0]["sigma"]


def test_set_w_avg_is_the_mean_w_at_the_canonical_camera():
    from nerfsculpt.camera import canonical_camera
    from nerfsculpt.generator.triplane import TriPlaneGenerator

    G = TriPlaneGenerator(synthetic_generator_config())
    set_w_avg(G, n=64, seed=3)
    z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(3))
    expected = G.mapping(z, canonical_camera().expand(64, -1))[:, 0].mean(0)
    torch.testing.assert_close(G.backbone.mapping.w_avg, expected)


def test_fit_config_rejects_bad_values():
    with pytest.raises(ValueError, match="batch"):
        FitConfig(batch=0).validate()
    with pytest.raises(ValueError, match="candidate_points"):
        FitConfig(surface_points=10, candidate_points=15).validate()
    with pytest.raises(ValueError, match="colour_shell"):
        FitConfig(colour_shell=-0.1).validate()
    with pytest.raises(ValueError, match="defect_weight"):
        FitConfig(defect_weight=-1.0).validate()


def test_sigma_gain_changes_learning_speed_not_the_function():
    from nerfsculpt.generator.triplane import TriPlaneGenerator

    torch.manual_seed(0)
    G = TriPlaneGenerator(synthetic_generator_config())
    features = torch.randn(5, 32)
    before = G.decoder.net(features)
    add_sigma_gain(G, 25.0)
    torch.testing.assert_close(G.decoder.net(features), before)
    stored = G.decoder.net[2].parametrizations.weight.original
    torch.testing.assert_close(stored[0] * 25.0, G.decoder.net[2].weight[0])
    plain = baked(G)  # plain EG3D keys, same function, and the original keeps working
    assert set(plain.state_dict()) == set(TriPlaneGenerator(synthetic_generator_config()).state_dict())
    torch.testing.assert_close(plain.decoder.net(features), before)
    torch.testing.assert_close(G.decoder.net(features), before)
