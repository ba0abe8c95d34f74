import pytest
import torch

from nerfsculpt.generator.config import tiny_config
from nerfsculpt.generator.triplane import TriPlaneGenerator
from nerfsculpt.geometry.grid import grid_coordinates, grid_coordinates_eg3d
from nerfsculpt.geometry.sigma import NonFiniteSigmaError, check_finite, reward_slab, sigma_grid
from nerfsculpt.geometry.slab import SlabSpec, crop_reward_slab

R = 16


def pointwise_sigma(G, ws, coordinates):  # [N, M] by the plain EG3D path: one G.sample_planes call
    return torch.cat([G.sample_planes(G.planes(w[None], noise_mode="const"), coordinates[None])["sigma"][..., 0]
                      for w in ws])


# ---- known answers: the plain per-point path ----------------------------------------------------


@pytest.mark.parametrize("chunk_points", [1 << 20, R * R * 3, 5 * R, 1])  # many slices, 3 slices, rows, a row
def test_grid_equals_pointwise_decoder(G, ws, chunk_points):
    with torch.no_grad():
        expected = pointwise_sigma(G, ws, grid_coordinates(R)).reshape(2, R, R, R)
    torch.testing.assert_close(sigma_grid(G, ws, R, chunk_points=chunk_points), expected, rtol=0, atol=0)


def test_eg3d_grid_equals_pointwise_decoder(G, ws):
    with torch.no_grad():
        expected = pointwise_sigma(G, ws, grid_coordinates_eg3d(R)).reshape(2, R, R, R)
    torch.testing.assert_close(sigma_grid(G, ws, R, chunk_points=100, eg3d_grid=True), expected, rtol=0, atol=0)


@pytest.mark.parametrize("eg3d_grid", [False, True])
def test_planes_instead_of_ws_give_the_same_sigma(G, ws, eg3d_grid):
    spec = SlabSpec(resolution=R)
    with torch.no_grad():
        # (2, 3, C, H, W), one latent at a time as sigma_grid runs the backbone (batching changes rounding)
        planes = torch.cat([G.planes(w[None], noise_mode="const") for w in ws])
    torch.testing.assert_close(sigma_grid(G, None, R, eg3d_grid=eg3d_grid, planes=planes),
                               sigma_grid(G, ws, R, eg3d_grid=eg3d_grid), rtol=0, atol=0)
    torch.testing.assert_close(reward_slab(G, None, spec, eg3d_grid=eg3d_grid, planes=planes),
                               reward_slab(G, ws, spec, eg3d_grid=eg3d_grid), rtol=0, atol=0)


def test_planes_and_ws_are_exclusive(G, ws):
    planes = G.planes(ws, noise_mode="const")
    with pytest.raises(ValueError, match="exactly one of ws"):
        sigma_grid(G, ws, R, planes=planes)
    with pytest.raises(ValueError, match="exactly one of ws"):
        sigma_grid(G, None, R)
    with pytest.raises(ValueError, match="expected planes"):
        sigma_grid(G, None, R, planes=planes[:, :2])


def test_array_order_is_xyz(G, ws):
    cube = sigma_grid(G, ws[:1], R)[0]
    i, j, k = 3, 11, 6
    point = torch.tensor([[-0.5 + i / (R - 1), -0.5 + j / (R - 1), -0.5 + k / (R - 1)]])
    with torch.no_grad():
        torch.testing.assert_close(cube[i, j, k], pointwise_sigma(G, ws[:1], point)[0, 0])


@pytest.mark.parametrize("eg3d_grid", [False, True])
def test_reward_slab_equals_cropped_cube(G, ws, eg3d_grid):
    spec = SlabSpec(resolution=32)  # X[8:24], Y[8:26], Z[12:29]
    cube = sigma_grid(G, ws, 32, chunk_points=1000, eg3d_grid=eg3d_grid)
    slab = reward_slab(G, ws, spec, chunk_points=77, eg3d_grid=eg3d_grid)
    assert slab.shape == (2, *spec.shape) == (2, 16, 18, 17)
    assert torch.equal(slab, crop_reward_slab(cube, spec))


def test_latents_are_independent(G, ws):
    both = sigma_grid(G, ws, R)
    assert torch.equal(both[1], sigma_grid(G, ws[1:], R)[0])
    assert not torch.allclose(both[0], both[1])


def test_backbone_runs_once_per_latent(own_G, ws):
    G, calls = own_G, []
    planes = G.planes
    G.planes = lambda w, **kw: calls.append(len(w)) or planes(w, **kw)
    sigma_grid(G, ws, R, chunk_points=R)  # R*R chunks per latent
    assert calls == [1, 1]


def test_non_differentiable_output_is_a_plain_tensor(G, ws):
    cube = sigma_grid(G, ws, 8)
    assert cube.shape == (2, 8, 8, 8) and cube.dtype == torch.float32
    assert not cube.requires_grad and not cube.is_inference()


# ---- gradients -----------------------------------------------------------------------------------
# float32: EG3D's plane sampling casts the grid to float32 (eg3d.md §3.8), so G cannot run in float64.


@pytest.mark.parametrize("checkpoint", [True, False])
def test_gradients_match_unchunked_computation(G, ws, checkpoint):
    weights = torch.randn(2, R, R, R, generator=torch.Generator().manual_seed(2))
    params = [p for p in G.parameters() if p.requires_grad]
    w = ws.clone().requires_grad_(True)

    expected = pointwise_sigma(G, w, grid_coordinates(R)).reshape(2, R, R, R)
    grads_expected = torch.autograd.grad((expected * weights).sum(), [w, *params], allow_unused=True)

    cube = sigma_grid(G, w, R, chunk_points=3 * R * R, differentiable=True, checkpoint=checkpoint)
    assert cube.requires_grad
    grads = torch.autograd.grad((cube * weights).sum(), [w, *params], allow_unused=True)
    used = 0
    for g, g_expected in zip(grads, grads_expected, strict=True):
        if g_expected is None:  # superresolution and mapping parameters
            assert g is None or not g.any()
            continue
        used += 1
        torch.testing.assert_close(g, g_expected, rtol=1e-4, atol=1e-5 * g_expected.abs().max().item())
    assert used > 10  # ws, backbone and decoder parameters all received gradients


def test_checkpoint_bounds_saved_activations(G, ws):
    def saved_numel(resolution, checkpoint):
        storages = {}  # saved tensors often alias one another: count each storage once

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes() // t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sigma_grid(G, ws[:1], resolution, chunk_points=resolution**2, differentiable=True,
                       checkpoint=checkpoint)
        return sum(storages.values())

    # What the graph keeps beyond the backbone's: without checkpointing it grows with the number of
    # points (every chunk's decoder activations); with it only the O(R^2) plane tables remain.
    growth = {c: saved_numel(32, c) - saved_numel(16, c) for c in (False, True)}
    assert growth[False] > (32**3 - 16**3) * 16  # at least the 16 hidden units per point
    assert growth[True] < growth[False] / 10


# ---- precision -----------------------------------------------------------------------------------


def test_autocast_keeps_float32_output(G, ws):
    exact = sigma_grid(G, ws, R)
    low = sigma_grid(G, ws, R, autocast_dtype=torch.bfloat16)
    assert low.dtype == torch.float32 and not torch.equal(low, exact)
    torch.testing.assert_close(low, exact, rtol=0.05, atol=0.05 * exact.abs().max().item())


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [({"resolution": 1}, "resolution"), ({"chunk_points": 0}, "chunk_points")],
)
def test_bad_arguments(G, ws, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sigma_grid(G, ws, **{"resolution": 8, **kwargs})


def test_z_instead_of_ws_is_rejected(G):
    with pytest.raises(ValueError, match=r"expected ws \[N, .*G.mapping"):
        sigma_grid(G, torch.randn(1, G.z_dim), 8)


def test_slab_outside_the_triplane_box_is_rejected(G, ws):
    with pytest.raises(ValueError, match="box_warp"):
        reward_slab(G, ws, SlabSpec(resolution=32, cube_length=2.0))


# ---- finiteness ----------------------------------------------------------------------------------


def test_check_finite_names_seeds_and_counts():
    sigma = torch.zeros(3, 4, 4, 4)
    check_finite(sigma, [1, 2, 3])
    sigma[1, 0, 0, :2] = float("nan")
    sigma[2, 1, 1, 1] = float("inf")
    sigma[2, 2, 2, 2] = -float("inf")
    with pytest.raises(NonFiniteSigmaError, match=r"seed 20 \(2 NaN, 0 Inf\), seed 30 \(0 NaN, 2 Inf\)") as e:
        check_finite(sigma, [10, 20, 30])
    assert "seed 10" not in str(e.value) and isinstance(e.value, ValueError)
    with pytest.raises(NonFiniteSigmaError, match=r"latent 1 \(2 NaN"):
        check_finite(sigma)
    with pytest.raises(ValueError, match="one seed per field"):
        check_finite(sigma, [1, 2])


def test_extractors_check_finiteness_when_given_seeds(G, ws):
    broken = TriPlaneGenerator(tiny_config()).eval()
    broken.load_state_dict(G.state_dict())
    with torch.no_grad():
        broken.decoder.net[0].bias[0] = float("nan")
    sigma_grid(broken, ws, 8)  # no seeds: no check
    with pytest.raises(NonFiniteSigmaError, match="seed 7 .* seed 8"):
        sigma_grid(broken, ws, 8, seeds=[7, 8])
    with pytest.raises(NonFiniteSigmaError, match="seed 7"):
        reward_slab(broken, ws, SlabSpec(resolution=32), seeds=[7, 8])
