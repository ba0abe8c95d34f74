"""Mapping, synthesis blocks and ws routing (eg3d.md §3.2-3.6)."""

import pytest
import torch

from nerfsculpt.generator.layers import FullyConnectedLayer, MappingNetwork, SynthesisNetwork


def test_fully_connected_equalised_lr_known_answer():
    fc = FullyConnectedLayer(4, 2, activation="linear", lr_multiplier=0.5, bias_init=1.0).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = x @ (fc.weight * 0.5 / 2).T + fc.bias * 0.5  # W * m / sqrt(in), b * m
    torch.testing.assert_close(fc(x), expected)
    fc.activation = "lrelu"
    torch.testing.assert_close(fc(x), torch.nn.functional.leaky_relu(expected, 0.2) * 2**0.5)


def _mapping():
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=8, c_dim=25, w_dim=8, num_ws=6, num_layers=2).double()
    m.w_avg.normal_()
    return m


def test_truncation_psi_zero_gives_w_avg_and_cutoff_limits_layers():
    m = _mapping()
    z, c = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 25, dtype=torch.float64)
    ws = m(z, c)
    assert ws.shape == (3, 6, 8)
    assert torch.equal(ws[:, 0], ws[:, 5])  # one w broadcast to all layers
    torch.testing.assert_close(m(z, c, truncation_psi=0), m.w_avg.expand(3, 6, 8))
    cut = m(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], m.w_avg + 0.5 * (ws[:, :2] - m.w_avg))
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])


def test_mapping_concatenates_z_then_embedded_c():
    m = _mapping()
    z = torch.randn(2, 8, dtype=torch.float64)
    c = torch.randn(2, 25, dtype=torch.float64)
    # scaling z or c does not change w: both are normalised to unit second moment first
    torch.testing.assert_close(m(z * 3, c), m(z, c))
    assert not torch.allclose(m(z, c), m(z, c.flip(0)))


def test_update_emas_moves_w_avg_towards_batch_mean():
    m = _mapping()
    before = m.w_avg.clone()
    z, c = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 25, dtype=torch.float64)
    w = m(z, c, update_emas=True)[:, 0]
    torch.testing.assert_close(m.w_avg, w.mean(0) + 0.998 * (before - w.mean(0)))


def test_mapping_rejects_bad_shapes():
    with pytest.raises(AssertionError, match="z must be"):
        _mapping()(torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 25, dtype=torch.float64))


def _synthesis():
    torch.manual_seed(0)
    net = SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=6, channel_base=64, channel_max=8).eval()
    for name, p in net.named_parameters():
        if name.endswith("noise_strength"):
            p.data.fill_(0.5)
    return net


def test_ws_routing_torgb_shares_next_conv0():
    net = _synthesis()
    assert net.num_ws == 6  # b4: conv1, torgb; b8/b16: conv0, conv1; + last torgb
    seen = {}
    for name, mod in net.named_modules():
        if name.endswith("affine"):
            mod.register_forward_hook(lambda _m, inp, _o, name=name: seen.__setitem__(name, inp[0].clone()))
    ws = torch.randn(1, 6, 8)
    net(ws, noise_mode="none")
    routing = {"b4.conv1": 0, "b4.torgb": 1, "b8.conv0": 1, "b8.conv1": 2, "b8.torgb": 3, "b16.conv0": 3,
               "b16.conv1": 4, "b16.torgb": 5}
    for layer, idx in routing.items():
        torch.testing.assert_close(seen[f"{layer}.affine"], ws[:, idx], msg=layer)


def test_noise_modes():
    net = _synthesis()
    ws = torch.randn(2, 6, 8)
    const1, const2 = net(ws, noise_mode="const"), net(ws, noise_mode="const")
    assert torch.equal(const1, const2)
    assert not torch.allclose(net(ws, noise_mode="random"), net(ws, noise_mode="random"))
    assert not torch.allclose(net(ws, noise_mode="none"), const1)
    g = torch.Generator().manual_seed(0)
    a = net(ws, noise_mode="random", generator=g)
    b = net(ws, noise_mode="random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="noise_mode"):
        net(ws, noise_mode="sometimes")


def test_training_mode_uses_non_fused_path_with_same_result():
    net = _synthesis()
    ws = torch.randn(3, 6, 8)
    fused = net(ws, noise_mode="const")
    net.train()
    torch.testing.assert_close(net(ws, noise_mode="const"), fused, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net(ws, noise_mode="const", fused_modconv=True), fused)
