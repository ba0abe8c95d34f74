import pytest
import torch

from nerfsculpt.reward.baselines import (
    DepthResNetReward,
    DepthRewardConfig,
    PointReward,
    PointRewardConfig,
    ResNet50Features,
    ball_query,
    farthest_point_sampling,
    prepare_depth,
    prepare_points,
)


def test_resnet50_has_torchvisions_size_and_key_names():
    net = ResNet50Features()
    assert sum(p.numel() for p in net.parameters()) == 25_557_032 - 2_049_000  # torchvision resnet50 minus fc
    keys = net.state_dict().keys()
    assert len(keys) == 318  # 53 convolutions + 53 BatchNorms x 5 entries (torchvision: 320 with fc.weight/bias)
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer4.2.bn3.num_batches_tracked",
            "layer3.5.conv2.weight"} <= set(keys)
    state = {**net.state_dict(), "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    net.load_torchvision(state)  # a torchvision checkpoint loads once its classifier is dropped


def test_depth_preparation_known_values():
    depth = torch.full((2, 3, 1, 8, 8), 2.25)
    depth[1] = 3.3
    x = prepare_depth(depth, size=16)
    assert x.shape == (6, 3, 16, 16)
    assert torch.allclose(x[:3], torch.ones(1)) and torch.allclose(x[3:], torch.zeros(1), atol=1e-6)
    with pytest.raises(AssertionError, match=r"\[S, V, 1, H, W\]"):
        prepare_depth(torch.zeros(2, 8, 8))


def test_depth_reward_shapes_and_frozen_backbone():
    torch.manual_seed(0)
    net = DepthResNetReward(DepthRewardConfig(views=3, image_size=32))
    assert net.config.heads.global_features == 6144
    net.train()
    assert not net.backbone.training and net.heads.training
    r = net(torch.rand(2, 3, 1, 16, 16) + 2.5)
    assert r.shape == (2,)
    r.sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert net.heads.MLP.input_layer.weight.grad is not None


def test_point_preparation_eval_and_augmented():
    points = torch.randn(2, 5000, 3) * 0.2 + 1.0
    x = prepare_points(points)
    assert x.shape == (2, 3, 2048)
    index = torch.linspace(0, 4999, 2048).round().long()
    centred = points[0, index] - points[0, index].mean(0)
    torch.testing.assert_close(x[0].T, centred * (0.999999 / centred.abs().max()))
    assert x.abs().max() <= 0.999999 + 1e-6
    a = prepare_points(points, augment=True, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 3, 2048) and a.abs().max() <= 1.06
    with pytest.raises(ValueError, match=">= 2048 points"):
        prepare_points(torch.rand(1, 100, 3))


def test_farthest_point_sampling_and_ball_query_known_answers():
    line = torch.arange(10.0)[None, :, None].expand(1, 10, 3).contiguous()  # points (i, i, i)
    assert farthest_point_sampling(line, 3).tolist() == [[0, 9, 4]]  # 0, the far end, then the middle (first max)
    index, valid = ball_query(line, line[:, :1], radius=2.0 * 3**0.5, k=5)
    assert index[0, 0, valid[0, 0]].tolist() == [0, 1, 2]


@pytest.mark.parametrize("architecture", ["pointnet", "pointnet2"])
def test_point_rewards_shapes_and_learning_signal(architecture):
    torch.manual_seed(0)
    net = PointReward(PointRewardConfig(architecture=architecture, n_points=128))
    clouds = torch.randn(3, 300, 3)
    r = net(clouds)
    assert r.shape == (3,)
    r.sum().backward()
    assert all(p.grad is not None for p in net.backbone.parameters())
    with pytest.raises(ValueError, match="unknown point architecture"):
        PointReward(PointRewardConfig(architecture="curvenet"))


def test_depth_reward_trains_through_the_shared_loop(tmp_path):
    from nerfsculpt.preferences.pairs import RankedList
    from nerfsculpt.preferences.store import Item
    from nerfsculpt.reward.train import RewardTrainConfig, Splits, train

    class Depths:
        def load(self, item):
            g = torch.Generator().manual_seed(item.seed)
            return 2.5 + 0.3 * torch.rand(3, 1, 16, 16, generator=g)  # three views

    def lists(start):
        return [RankedList((Item("toy", "h", seed=start + 2 * q), Item("toy", "h", seed=start + 2 * q + 1)), start + q,
                           "a") for q in range(4)]

    torch.manual_seed(0)
    net = DepthResNetReward(DepthRewardConfig(views=3, image_size=32))
    frozen = [p.clone() for p in net.backbone.parameters()]
    stats = [b.clone() for b in net.backbone.buffers()]
    summary = train(net, Splits(lists(0), lists(100), lists(200), {}), Depths(), tmp_path,
                    RewardTrainConfig(anchors=False, batch=2, max_epochs=1, lr=1e-3), progress=False)
    assert summary["epochs"] == 1
    assert all(torch.equal(a, b) for a, b in zip(frozen, net.backbone.parameters(), strict=True))  # frozen
    assert all(torch.equal(a, b) for a, b in zip(stats, net.backbone.buffers(), strict=True))  # BN stats kept


def test_baseline_configs_round_trip_through_json_and_refuse_unknown_fields():
    import json

    for config in (DepthRewardConfig(views=3, frozen=False), PointRewardConfig(architecture="pointnet2")):
        assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert DepthRewardConfig.from_dict({"views": 1}).heads.global_features == 2048  # absent heads keep the default
    with pytest.raises(ValueError, match="unknown point reward config fields"):
        PointRewardConfig.from_dict({"k": 20})


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_depth_model_starts_from_a_torchvision_weights_file(tmp_path, suffix):
    from safetensors.torch import save_file

    from nerfsculpt.reward.pipeline import build_model

    torch.manual_seed(3)
    state = {**ResNet50Features().state_dict(), "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    path = tmp_path / f"resnet50{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    net = build_model("depth3", resnet_weights=str(path))
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, state[key])
    with pytest.raises(ValueError, match="only applies to the depth models"):
        build_model("pointnet", resnet_weights=str(path))
