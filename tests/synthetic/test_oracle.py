"""Geometry oracle: bad input, hand-built fields with known answers, agreement with injected severities."""

import math

import pytest
import torch
from scipy.stats import spearmanr

from nerfsculpt.geometry.grid import grid_coordinates
from nerfsculpt.synthetic.heads import DEFECTS, head_sigma, sample_head_params
from nerfsculpt.synthetic.oracle import (
    GeometryOracle,
    OracleConfig,
    OracleScores,
    score_field,
    score_generator,
    score_heads,
)

R = 96  # oracle resolution of these tests (voxel 0.0105)


pytestmark = pytest.mark.usefixtures("single_thread")

@pytest.fixture(scope="module")
def oracle():
    return GeometryOracle(OracleConfig(resolution=R))


@pytest.fixture(scope="module")
def xyz():
    return grid_coordinates(R, dtype=torch.float64).reshape(R, R, R, 3)  # [x, y, z, 3]


def _ball(xyz, centre, radius):  # raw sigma of a ball on the procedural heads' scale: [R, R, R]
    distance = (xyz - torch.tensor(centre, dtype=xyz.dtype)).norm(dim=-1) - radius
    return 200 * torch.tanh(-distance / 0.03)


# ------------------------------------------------------------------------------------------------
# API


def test_smoke_shapes(oracle, xyz):
    sigma = _ball(xyz, (0.0, 0.0, 0.0), 0.2)
    result = oracle(sigma)
    assert isinstance(result, OracleScores)
    assert result.scores.shape == (1, 5) and result.raw.shape == (1, 5) and result.quality.shape == (1,)
    assert oracle(torch.stack([sigma, sigma])).scores.shape == (2, 5)
    assert set(result.as_dict()) == {*DEFECTS, "quality"}


def test_bad_input(oracle, xyz):
    with pytest.raises(ValueError, match=r"\[N, R, R, R\]"):
        oracle(torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"\[N, R, R, R\]"):
        oracle(torch.zeros(32, 32, 30))
    with pytest.raises(ValueError, match="NaN"):
        oracle(torch.full((32, 32, 32), math.nan))
    with pytest.raises(TypeError, match="torch.Tensor"):
        oracle(xyz.numpy())
    with pytest.raises(ValueError, match="one value per defect"):
        OracleConfig(weights=(1.0, 1.0))


def test_empty_field_scores_zero(oracle):
    result = oracle(torch.full((32, 32, 32), -100.0))
    assert torch.equal(result.scores, torch.zeros(1, 5))


# ------------------------------------------------------------------------------------------------
# Known answers on hand-built fields (no procedural head involved)


def test_smooth_ball_is_clean(oracle, xyz):
    result = oracle(_ball(xyz, (0.0, 0.0, 0.0), 0.22))
    assert (result.scores.abs() < 0.05).all(), result.scores


def test_floater_volume(oracle, xyz):
    """A ball of radius 0.03 away from the head is a floater of volume 4/3 pi r^3, with r the radius
    of its sigma = 10 surface: 0.03 - 0.03 atanh(10 / 200)."""
    sigma = torch.maximum(_ball(xyz, (0.0, 0.0, 0.0), 0.22), _ball(xyz, (0.1, 0.1, 0.38), 0.03))
    raw = oracle(sigma).raw[0]
    radius = 0.03 - 0.03 * math.atanh(10 / 200)
    assert float(raw[3]) == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.05)
    assert float(raw[4]) == 0, "floaters are left out of the asymmetry"


def test_density_at_the_box_faces_is_ignored(oracle, xyz):
    """Sheets of density on the cube's faces (tri-plane edge artefacts) are inside the border and
    count for nothing; the same sheet 0.1 inside the cube is a floater."""
    ball = _ball(xyz, (0.0, 0.0, 0.0), 0.22)
    sheet = torch.where(xyz[..., 1] > 0.49, torch.full_like(ball, 150.0), torch.full_like(ball, -200.0))
    assert torch.equal(oracle(torch.maximum(ball, sheet)).scores, oracle(ball).scores)
    inner = torch.where((xyz[..., 1] - 0.4).abs() < 0.01, torch.full_like(ball, 150.0), torch.full_like(ball, -200.0))
    assert float(oracle(torch.maximum(ball, inner)).raw[0, 3]) > 0.01


def test_asymmetry_of_a_shifted_ball(oracle, xyz):
    """A ball shifted by d along x differs from its mirror image by a volume of about
    (surface area) * (mean |normal offset| between the two balls) = 4 pi r^2 * d."""
    radius, shift = 0.2, 0.01
    raw = oracle(_ball(xyz, (shift, 0.0, 0.0), radius)).raw[0]
    assert float(raw[4]) == pytest.approx(4 * math.pi * radius**2 * shift, rel=0.1)
    assert float(oracle(_ball(xyz, (0.0, 0.0, 0.0), radius)).raw[0, 4]) == 0


def test_hole_volume_of_a_tunnel(oracle, xyz):
    """A tunnel of radius 0.03 bored along z through the forehead of a ball: every column inside it
    sees through to the back of the cube, so the missing volume is the tunnel's cross-section times
    (surface depth + 0.5 - hole_depth)."""
    radius, centre = 0.03, (0.0, 0.1)
    ball = _ball(xyz, (0.0, 0.0, 0.0), 0.3)
    rho = (xyz[..., 0] - centre[0]).hypot(xyz[..., 1] - centre[1])  # (R, R, R)
    sigma = torch.minimum(ball, 200 * torch.tanh((rho - radius) / 0.03))
    surface = math.sqrt(0.3**2 - 0.1**2)
    expected = math.pi * radius**2 * (surface + 0.5 - oracle.config.hole_depth)
    assert float(oracle(sigma).raw[0, 2]) == pytest.approx(expected, rel=0.2)


def test_bumps_on_a_ball(oracle, xyz):
    """Ripples a sin(2 pi y / 0.1) on the cheeks of a ball. At 96^3 the fit along y covers 13 samples
    (0.12 / voxel, rounded to odd), whose quadratic fit is the 13-point Savitzky-Golay smoother
    (-11, 0, 9, 16, 21, 24, 25, 24, 21, 16, 9, 0, -11) / 143 (Savitzky & Golay 1964, table I): it keeps
    H(w) of a ripple of frequency w rad/sample, so the residual is (1 - H(w)) a sin(2 pi y / 0.1) divided by
    the cosine of the surface tilt (depth is measured along z); its RMS is taken over the boxes' rows."""
    amplitude = 0.003
    x, y, z = xyz.unbind(-1)
    distance = (xyz.norm(dim=-1) - 0.22) + amplitude * torch.sin(2 * math.pi * y / 0.1)
    raw = oracle(200 * torch.tanh(-distance / 0.03)).raw[0]
    w = 2 * math.pi * (1 / (R - 1)) / 0.1
    coefficients = (24, 21, 16, 9, 0, -11)
    kept = (25 + 2 * sum(c * math.cos((k + 1) * w) for k, c in enumerate(coefficients))) / 143
    assert 0.2 < kept < 0.8, "a ripple the window partly follows"
    tilt = math.sqrt(1 - (0.085**2 + 0.08**2) / 0.22**2)  # normal's z at the centre of the cheek boxes
    rows = torch.linspace(-0.5, 0.5, R)
    rows = rows[(rows >= oracle.config.cheek_y[0]) & (rows <= oracle.config.cheek_y[1])]
    rms = float(torch.sin(2 * math.pi * rows / 0.1).pow(2).mean().sqrt())
    assert float(raw[0]) == pytest.approx((1 - kept) * amplitude * rms / tilt, rel=0.15)
    smooth = float(oracle(_ball(xyz, (0.0, 0.0, 0.0), 0.22)).raw[0, 0])  # a sphere is not quite quadratic over 0.12
    assert smooth < 0.1 * float(raw[0]) and smooth < 0.01 * oracle.config.scales[0]


# ------------------------------------------------------------------------------------------------
# Procedural heads


def test_clean_heads_score_about_zero(oracle):
    params = sample_head_params(12, torch.Generator().manual_seed(21), defect_free=True)
    scores = score_heads(params, oracle).scores
    assert (scores >= 0).all() and (scores < 0.15).all(), scores
    assert (scores.mean(0) < 0.05).all(), "identity leaks into the defect scores"


def test_quality_falls_as_every_defect_grows(oracle):
    params = sample_head_params(1, torch.Generator().manual_seed(22))
    steps = torch.linspace(0, 1, 5)
    result = score_heads(params.index([0] * 5).with_defects(steps[:, None].expand(5, 5)), oracle)
    assert (result.quality.diff() < 0).all(), result.quality
    for k in range(5):  # each score grows with its own severity (defects interact: inflation fills a crater)
        alone = torch.zeros(5, 5)
        alone[:, k] = steps
        scores = score_heads(params.index([0] * 5).with_defects(alone), oracle).scores[:, k]
        assert (scores.diff() > 0).all(), (DEFECTS[k], scores)


def test_determinism(oracle):
    params = sample_head_params(2, torch.Generator().manual_seed(23))
    a, b = score_heads(params, oracle), score_heads(params, oracle)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.quality, b.quality)


def test_score_field_matches_score_heads(oracle):
    params = sample_head_params(1, torch.Generator().manual_seed(24))
    by_field = score_field(lambda points: head_sigma(points[None], params)[0], oracle)
    assert torch.equal(by_field.scores, score_heads(params, oracle).scores)


def test_score_generator_smoke():
    from nerfsculpt.camera import canonical_camera
    from nerfsculpt.generator.config import tiny_config
    from nerfsculpt.generator.triplane import TriPlaneGenerator

    torch.manual_seed(0)
    G = TriPlaneGenerator(tiny_config()).eval()
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim), canonical_camera().expand(2, 25))
    result = score_generator(G, ws, GeometryOracle(OracleConfig(resolution=32)))
    assert result.scores.shape == (2, 5) and torch.isfinite(result.scores).all()
    with pytest.raises(ValueError, match="cube_length"):
        score_generator(G, ws, GeometryOracle(OracleConfig(resolution=32, cube_length=2.0)))


@pytest.mark.slow
def test_oracle_agrees_with_injected_severities(oracle):
    """Spearman >= 0.9 per defect over 200 random identities and random severities (each defect
    independently 0 with probability 0.2, else uniform in [0, 1]), all defects at once, at 96^3."""
    n = 200
    generator = torch.Generator().manual_seed(123)
    params = sample_head_params(n, generator)
    severities = torch.rand(n, 5, generator=generator) * (torch.rand(n, 5, generator=generator) < 0.8)
    result = score_heads(params.with_defects(severities), oracle)
    for k, name in enumerate(DEFECTS):
        rho = spearmanr(severities[:, k], result.scores[:, k]).statistic
        assert rho >= 0.9, f"{name}: Spearman {rho:.3f}"
    assert spearmanr(severities.sum(1), result.quality).statistic <= -0.9
