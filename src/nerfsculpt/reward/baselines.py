"""Baseline rewards of Table 1: depth maps (ResNet-50) and point clouds (PointNet, PointNet++).

Each network maps its raw input to a global feature vector and ends in the same heads as the
sigma reward (``reward.heads``), so losses, training and evaluation are shared. ``prepare`` turns
raw inputs (as a sample bank stores them) into the network input, ``outputs`` returns the
embedding, reward and Bradley-Terry strength.

- :class:`DepthResNetReward` (docs/method/reference_method.md §2.2, §4.8): each view [1, H, W] (distance along
  the ray) is resized to 224^2 (bilinear), mapped by ``d -> 1 - (d - 2.25) / (3.3 - 2.25)`` (near =
  bright; no clamp, no ImageNet statistics), replicated to 3 channels and encoded by a ResNet-50 to
  its 2048-d average-pooled feature; the views' features are concatenated (2048 or 6144). The
  ResNet-50 is written here (torchvision's layout and key names, so a user-given torchvision
  ``resnet50`` state dict loads into ``backbone``; nothing is downloaded) and frozen by default,
  as in the reference -- but kept in eval mode while frozen (the reference's BatchNorm drifted in
  training mode, §4.8).
- :class:`PointNetReward` (§4.9): shared 1x1 convolutions 3 -> 64 -> 128 -> 1024, each with
  BatchNorm and Softplus, max over points -> 1024.
- :class:`PointNet2Reward` (§4.9): two set-abstraction levels (farthest-point sampling ratio 0.5 /
  0.25, ball query radius 0.2 / 0.4 with <= 64 neighbours, per-neighbour MLP on [feature, relative
  position], max) and a global MLP [256, 512, 1024] on [feature, position], max -> 1024. Pure torch.

Point clouds are prepared as the reference's eval transform: 2048 points at
``round(linspace(0, N - 1, 2048))``, centred, scaled to max |coordinate| 0.999999; in training
(``augment=True``) a random subset, per-axis scale U(0.95, 1.05) and jitter U(-0.001, 0.001).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.reward.heads import HeadsConfig, NetworkConfig, RewardHeads, RewardOutputs

DEPTH_NEAR, DEPTH_FAR = 2.25, 3.3
"""EG3D FFHQ ray bounds used to normalise depth (docs/method/reference_method.md §2.2)."""


# ------------------------------------------------------------------------------------------------
# ResNet-50 (torchvision's layout)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50Features(nn.Module):
    """ResNet-50 without its classifier: [N, 3, H, W] -> [N, 2048] (average-pooled last stage)."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, (blocks, width) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(channels, width, stride=2 if (b == 0 and index > 0) else 1))
                channels = width * Bottleneck.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.out_features = channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 2048, H/32, W/32)
        return x.mean(dim=(2, 3))  # (N, 2048)

    def load_torchvision(self, state: dict[str, Tensor]) -> None:
        """Load a torchvision ``resnet50`` state dict (its ``fc.*`` classifier is dropped)."""
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=True)


def prepare_depth(depth: Tensor, size: int = 224) -> Tensor:  # [S, V, 1, H, W] -> [S*V, 3, size, size]
    """Depth maps to ResNet input: resize, ``1 - (d - 2.25) / 1.05``, 3 channels.

    See docs/method/reference_method.md §2.2.
    """
    assert depth.ndim == 5 and depth.shape[2] == 1, f"expected depth maps [S, V, 1, H, W], got {tuple(depth.shape)}"
    if not bool(torch.isfinite(depth).all()):
        raise ValueError("the depth maps contain NaN or infinite values")
    maps = F.interpolate(depth.flatten(0, 1).float(), size=(size, size), mode="bilinear", align_corners=False)
    maps = 1 - (maps - DEPTH_NEAR) / (DEPTH_FAR - DEPTH_NEAR)  # (S*V, 1, size, size), near = bright
    return maps.expand(-1, 3, -1, -1)


@dataclass(frozen=True)
class DepthRewardConfig(NetworkConfig):
    """Depth-map reward: views per sample, ResNet input size, frozen backbone, heads."""

    what: ClassVar[str] = "depth reward config"

    views: int = 1
    """1 (single canonical view) or 3 (yaw +1, 0, -1 rad)."""
    image_size: int = 224
    """Side the depth maps are resized to."""
    frozen: bool = True
    """Keep the ResNet-50 fixed (the reference); False fine-tunes it."""
    heads: HeadsConfig = field(default_factory=lambda: HeadsConfig(global_features=2048))


class DepthResNetReward(nn.Module):
    """Depth maps [S, V, 1, H, W] -> reward [S] (module docstring)."""

    def __init__(self, config: DepthRewardConfig | None = None):
        super().__init__()
        config = config or DepthRewardConfig()
        if config.heads.global_features != 2048 * config.views:
            config = dataclasses.replace(config, heads=dataclasses.replace(config.heads,
                                                                           global_features=2048 * config.views))
        self.config = config
        self.backbone = ResNet50Features()
        self.heads = RewardHeads(config.heads)
        self.backbone.requires_grad_(not config.frozen)

    def train(self, mode: bool = True) -> DepthResNetReward:
        super().train(mode)
        if self.config.frozen:
            self.backbone.eval()  # a frozen extractor keeps its running statistics
        return self

    def prepare(self, raw: Tensor) -> Tensor:
        return prepare_depth(raw, self.config.image_size)

    def outputs(self, x: Tensor, reconstruct: bool = False) -> tuple[RewardOutputs, None]:
        features = self.backbone(x)  # (S*V, 2048)
        return self.heads(features.reshape(-1, self.config.views * features.shape[1])), None

    def forward(self, raw: Tensor) -> Tensor:
        return self.outputs(self.prepare(raw))[0].reward


# ------------------------------------------------------------------------------------------------
# Point clouds


def prepare_points(points: Tensor, n_points: int = 2048, augment: bool = False,
                   generator: torch.Generator | None = None) -> Tensor:  # [S, P, 3] -> [S, 3, n]
    """The reference's point-cloud transform (module docstring); ``augment`` = its training variant."""
    assert points.ndim == 3 and points.shape[2] == 3, f"expected point clouds [S, P, 3], got {tuple(points.shape)}"
    if points.shape[1] < n_points:
        raise ValueError(f"a point cloud needs >= {n_points} points, got {points.shape[1]}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("the point cloud contains NaN or infinite values")
    p = points.shape[1]
    if augment:
        index = torch.stack([torch.randperm(p, generator=generator)[:n_points] for _ in range(len(points))])
    else:
        index = torch.linspace(0, p - 1, n_points).round().long().expand(len(points), -1)
    x = torch.gather(points.float(), 1, index[..., None].expand(-1, -1, 3))  # (S, n, 3)
    x = x - x.mean(1, keepdim=True)
    x = x * (0.999999 / x.abs().amax(dim=(1, 2), keepdim=True))
    if augment:
        x = x * (0.95 + 0.1 * torch.rand(len(x), 1, 3, generator=generator))
        x = x + (torch.rand(x.shape, generator=generator) * 0.002 - 0.001)
    return x.transpose(1, 2)  # (S, 3, n)


@dataclass(frozen=True)
class PointRewardConfig(NetworkConfig):
    """Point-cloud reward: architecture (``pointnet`` | ``pointnet2``), points per cloud, heads."""

    what: ClassVar[str] = "point reward config"

    architecture: str = "pointnet"
    n_points: int = 2048
    heads: HeadsConfig = field(default_factory=lambda: HeadsConfig(global_features=1024))


class PointNetFeatures(nn.Module):
    """[S, 3, n] -> [S, 1024]: shared 1x1 convs 3 -> 64 -> 128 -> 1024 (BatchNorm, Softplus), max over points."""

    def __init__(self, sizes: tuple[int, ...] = (64, 128, 1024)):
        super().__init__()
        layers, channels = [], 3
        for size in sizes:
            layers += [nn.Conv1d(channels, size, 1), nn.BatchNorm1d(size), nn.Softplus()]
            channels = size
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).amax(dim=2)  # (S, 1024)


def farthest_point_sampling(pos: Tensor, k: int) -> Tensor:  # [S, n, 3] -> [S, k] indices
    """Greedy farthest-point sampling, starting from point 0 (deterministic)."""
    s, n, _ = pos.shape
    chosen = torch.zeros(s, k, dtype=torch.long, device=pos.device)
    distance = torch.full((s, n), float("inf"), device=pos.device)
    last = torch.zeros(s, dtype=torch.long, device=pos.device)
    rows = torch.arange(s, device=pos.device)
    for i in range(k):
        chosen[:, i] = last
        distance = torch.minimum(distance, (pos - pos[rows, last][:, None]).square().sum(-1))
        last = distance.argmax(dim=1)
    return chosen


def ball_query(pos: Tensor, centres: Tensor, radius: float, k: int) -> tuple[Tensor, Tensor]:
    """Up to k neighbours of each centre within ``radius`` (nearest first): indices [S, m, k], valid [S, m, k]."""
    d2 = torch.cdist(centres, pos).square()  # (S, m, n)
    d2 = torch.where(d2 <= radius * radius, d2, torch.full_like(d2, float("inf")))
    k = min(k, pos.shape[1])
    values, index = d2.topk(k, dim=2, largest=False)  # (S, m, k)
    return index, torch.isfinite(values)


class SetAbstraction(nn.Module):
    """Sample centres (FPS), group neighbours (ball query), MLP on [feature, position - centre], max."""

    def __init__(self, ratio: float, radius: float, in_features: int, sizes: tuple[int, ...], max_neighbours: int = 64):
        super().__init__()
        self.ratio, self.radius, self.max_neighbours = ratio, radius, max_neighbours
        self.mlp = _point_mlp(in_features + 3, sizes)

    def forward(self, pos: Tensor, features: Tensor | None) -> tuple[Tensor, Tensor]:
        # pos [S, n, 3], features [S, n, C] or None -> centres [S, m, 3], features [S, m, C']
        m = max(1, int(round(self.ratio * pos.shape[1])))
        centres = torch.gather(pos, 1, farthest_point_sampling(pos, m)[..., None].expand(-1, -1, 3))
        index, valid = ball_query(pos, centres, self.radius, self.max_neighbours)  # (S, m, k)
        s, _, k = index.shape
        rows = torch.arange(s, device=pos.device)[:, None, None]
        relative = pos[rows, index] - centres[:, :, None]  # (S, m, k, 3)
        grouped = relative if features is None else torch.cat([features[rows, index], relative], dim=-1)
        h = self.mlp(grouped.reshape(s, m * k, -1).transpose(1, 2)).reshape(s, -1, m, k)  # (S, C', m, k)
        h = torch.where(valid[:, None], h, torch.full_like(h, float("-inf")))
        return centres, h.amax(dim=3).transpose(1, 2)  # (S, m, C')


def _point_mlp(in_features: int, sizes: tuple[int, ...]) -> nn.Sequential:
    layers, channels = [], in_features
    for size in sizes:
        layers += [nn.Conv1d(channels, size, 1), nn.BatchNorm1d(size), nn.ReLU()]
        channels = size
    return nn.Sequential(*layers)


class PointNet2Features(nn.Module):
    """[S, 3, n] -> [S, 1024]: SA(0.5, 0.2, [64, 64, 128]), SA(0.25, 0.4, [128, 128, 256]), global [256, 512, 1024]."""

    def __init__(self):
        super().__init__()
        self.sa1 = SetAbstraction(0.5, 0.2, 0, (64, 64, 128))
        self.sa2 = SetAbstraction(0.25, 0.4, 128, (128, 128, 256))
        self.global_mlp = _point_mlp(256 + 3, (256, 512, 1024))

    def forward(self, x: Tensor) -> Tensor:
        pos = x.transpose(1, 2).contiguous()  # (S, n, 3)
        pos1, f1 = self.sa1(pos, None)
        pos2, f2 = self.sa2(pos1, f1)
        h = self.global_mlp(torch.cat([f2, pos2], dim=-1).transpose(1, 2))  # (S, 1024, m2)
        return h.amax(dim=2)  # (S, 1024)


class PointReward(nn.Module):
    """Point clouds [S, P, 3] -> reward [S] with PointNet or PointNet++ features (module docstring)."""

    def __init__(self, config: PointRewardConfig | None = None):
        super().__init__()
        config = config or PointRewardConfig()
        features = {"pointnet": PointNetFeatures, "pointnet2": PointNet2Features}
        if config.architecture not in features:
            raise ValueError(f"unknown point architecture {config.architecture!r}; choose from {sorted(features)}")
        self.config = config
        self.backbone = features[config.architecture]()
        self.heads = RewardHeads(config.heads)

    def prepare(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return prepare_points(raw, self.config.n_points, augment=self.training, generator=generator)

    def outputs(self, x: Tensor, reconstruct: bool = False) -> tuple[RewardOutputs, None]:
        return self.heads(self.backbone(x)), None

    def forward(self, raw: Tensor) -> Tensor:
        return self.outputs(self.prepare(raw))[0].reward
