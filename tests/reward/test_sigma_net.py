import math

import pytest
import torch

from nerfsculpt.reward.heads import RewardMLP
from nerfsculpt.reward.sigma_net import SigmaRewardConfig, SigmaRewardNet
from nerfsculpt.reward.unet3d import ChannelSpatialSE, ResidualSEBlock
from tests.reward.tiny import TINY_SIGMA as TINY


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_parameter_counts_match_the_reference():
    net = SigmaRewardNet()
    assert count(net) == 12_686_699  # reference_method.md §4.3
    assert count(net.unet.encoders) == 4_939_854
    assert count(net.unet.decoders) == 2_402_381
    assert count(net.unet.final_conv) == 72
    assert count(net.heads.MLP) == 4_720_128
    assert count(net.heads.scalar_rwd_head) == count(net.heads.scalar_rwd_head_BT) == 164_353
    assert count(net.heads.scalar_rwd_head_pairs) == 295_554


def test_shapes_and_reconstruction():
    torch.manual_seed(0)
    net = SigmaRewardNet(TINY)
    x = torch.rand(3, 1, 9, 10, 8) * 100
    out, recon = net.outputs(x, reconstruct=True)
    assert out.reward.shape == (3,) and out.log_strength.shape == (3,) and out.embedding.shape == (3, 8)
    assert recon.shape == x.shape
    assert net(x).shape == (3,)
    assert net.heads.pair_logits(out.embedding[:2], out.embedding[1:]).shape == (2, 2)
    assert net.conv3d_for_recon.weight.item() == 1.0 and abs(net.conv3d_for_recon.bias.item()) <= 0.005


def test_a_batch_scores_as_its_samples_one_by_one():
    # the reference forwards one sample at a time; GroupNorm and the gates are per sample
    torch.manual_seed(1)
    net = SigmaRewardNet(TINY).eval()
    x = torch.rand(3, 1, 8, 9, 8) * 100
    together = net(x)
    alone = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone)


def test_global_feature_is_the_max_per_depth_slice_profile():
    net = SigmaRewardNet(TINY)
    z = 5
    u = torch.zeros(1, 8, z, 3, 2)
    u[0, 6] = torch.arange(z, dtype=torch.float32)[:, None, None]  # slice k holds k in a feature channel
    u[0, 0] = 100.0  # a reconstruction channel: must not leak into the feature
    g = net.global_features(u)[0]  # (64,)
    expected = [max(range(math.floor(i * z / 64), math.ceil((i + 1) * z / 64))) for i in range(64)]
    assert g.tolist() == expected


def test_checkpointing_gives_the_same_values_and_gradients():
    torch.manual_seed(2)
    net = SigmaRewardNet(TINY)
    x = torch.rand(2, 1, 8, 8, 8) * 100

    def step():
        out, recon = net.outputs(x, reconstruct=True)
        (out.reward.sum() + recon.mean()).backward()
        grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
        net.zero_grad(set_to_none=True)
        return out.reward.detach(), recon.detach(), grads

    reward, recon, grads = step()
    assert len(grads) > 50 and not net.checkpointing
    net.checkpointing = True
    assert net.checkpointing and all(b.checkpointing for b in net.unet.encoders.modules() if hasattr(b, "se_module"))
    reward_c, recon_c, grads_c = step()
    torch.testing.assert_close(reward_c, reward)
    torch.testing.assert_close(recon_c, recon)
    assert grads_c.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads_c[name], grads[name])


def test_blocks_pass_gradcheck_in_float64():
    torch.manual_seed(3)
    block = ResidualSEBlock(2, 4, num_groups=2).double()
    x = torch.randn(1, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))
    se = ChannelSpatialSE(3).double()
    assert torch.autograd.gradcheck(se, (torch.randn(2, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True),))
    mlp = RewardMLP(5, (4, 3), 2).double()
    assert torch.autograd.gradcheck(mlp, (torch.randn(3, 5, dtype=torch.float64, requires_grad=True),))


def test_mlp_keeps_the_reference_doubling():
    mlp = RewardMLP(2, (3, 3), 1)
    x = torch.randn(4, 2)
    a = mlp.input_layer(x)
    expected = mlp.output_layer(torch.nn.functional.softplus(mlp.hidden_layers[0][0](2 * a)))
    torch.testing.assert_close(mlp(x), expected)


def test_bad_inputs():
    net = SigmaRewardNet(TINY)
    with pytest.raises(AssertionError, match=r"\[N, 1, Z, Y, X\]"):
        net(torch.rand(1, 8, 8, 8))
    with pytest.raises(AssertionError, match=">= 4"):
        net(torch.rand(1, 1, 3, 8, 8))
    bad = torch.rand(1, 1, 8, 8, 8)
    bad[0, 0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net(bad)
    with pytest.raises(ValueError, match="unknown sigma reward config"):
        SigmaRewardConfig.from_dict({"channels": 3})
    with pytest.raises(ValueError, match="feature_channels"):
        SigmaRewardNet(SigmaRewardConfig(feature_channels=9))


def test_config_round_trips_through_json():
    import json

    assert SigmaRewardConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
