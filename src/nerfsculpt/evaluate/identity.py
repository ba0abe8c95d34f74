"""Did the faces keep their identity? LPIPS and face-embedding similarity, before against after.

See docs/method/reference_method.md §7.4.

Renders: each latent's super-resolved RGB image from the canonical RGB camera (yaw 0, pitch -0.2
rad) and from 8 more cameras, bilinearly resized to 128 x 128, in [-1, 1]; the conditioning camera
stays canonical for every view ("split-c"). The 8 cameras are labels drawn without replacement
from a dataset's ``dataset.json`` (``numpy.random.default_rng(123)``) or, without a dataset, from
the FFHQ-like pose prior (``eg3d_dataset.sample_ffhq_like_poses``, seed 123).

- **LPIPS** (Zhang et al. 2018, the VGG variant, version 0.1): the distance between the original's
  and the tuned generator's render of each latent, at the canonical view and averaged over the 8
  views. :class:`LPIPS` is written here from the published definition and loads the user's weights
  (torchvision's VGG-16 and LPIPS' linear layers); its input must be float images in [-1, 1]
  (uint8 images or values outside [-1, 1], e.g. [0, 255], raise; [0, 1] images cannot be told apart
  from dark [-1, 1] ones, so convert them yourself: 2 x - 1).
- **Face identity**: the cosine similarity of L2-normalised embeddings from a user-given face
  embedder (TorchScript or ONNX; e.g. FaceNet's InceptionResnetV1, fed 160 x 160 images in
  [-1, 1]): across models at the canonical view and per view (mean, minimum); within each model,
  each view against its canonical view (consistency), compared between the models with a paired
  two-sided Wilcoxon test, and every pair of views; and the Spearman correlation of identity drift
  (1 - cosine; canonical, and averaged over the views) with the geometry change (mean |depth change|
  at the canonical view, mean |sigma change| on the cube).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.errors import NerfsculptError

VIEWS = 8
"""Extra cameras per latent (the reference's)."""
RENDER_SIZE = 128
"""Side the renders are resized to before LPIPS and the face embedder (the reference's 128)."""
FACE_SIZE = 160
"""Input side of the face embedder (FaceNet's)."""
BATCH = 32
"""Images per LPIPS or embedder call (VGG-16 on 900 images at once would need tens of GB)."""
CANONICAL_RGB_PITCH = -0.2
"""Pitch (rad) of the reference's canonical RGB camera, the middle view of its triple images."""

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
"""VGG-16's convolutions up to relu5_3 (torchvision's ``features`` indices 0-29)."""
LPIPS_TAPS = (3, 8, 15, 22, 29)
"""``features`` indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the layers LPIPS compares."""
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
"""LPIPS' input scaling: (x - shift) / scale per RGB channel, from [-1, 1] to ImageNet statistics."""
LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS distance, VGG variant: d(x, y) = sum_l mean_hw w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2.

    ``features.*`` are torchvision's ``vgg16().features`` parameter names (conv layers at indices
    0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) and ``lin{0-4}.model.1.weight`` LPIPS' per-channel
    weights [1, C, 1, 1], as in its ``vgg.pth``: :meth:`load` reads both files.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for spec in VGG16_LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, spec, 3, padding=1), nn.ReLU()]
                channels = spec
        self.features = nn.Sequential(*layers)
        widths = (64, 128, 256, 512, 512)
        self.lins = nn.ParameterList([nn.Parameter(torch.ones(1, c, 1, 1)) for c in widths])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    @classmethod
    def load(cls, vgg_path: str | Path, lin_path: str | Path) -> LPIPS:
        """Weights from torchvision's VGG-16 file and LPIPS' ``vgg.pth`` (both tensors-only, never unpickled code)."""
        from nerfsculpt.reward.bundle import read_state_dict

        net = cls()
        vgg = {k.removeprefix("features."): v for k, v in read_state_dict(vgg_path).items()
               if k.startswith("features.")}
        missing = set(net.features.state_dict()) - set(vgg)
        if missing:
            raise NerfsculptError(f"{vgg_path} is not torchvision's vgg16 weights: no {sorted(missing)[:3]}...")
        net.features.load_state_dict({k: vgg[k] for k in net.features.state_dict()})
        lins = read_state_dict(lin_path)
        try:
            for k, param in enumerate(net.lins):
                param.copy_(lins[f"lin{k}.model.1.weight"])
        except (KeyError, RuntimeError) as error:
            raise NerfsculptError(f"{lin_path} is not LPIPS' vgg.pth (lin0-4.model.1.weight): {error}") from None
        return net

    @staticmethod
    def check_range(images: Tensor) -> None:
        """Raise unless ``images`` are float [N, 3, H, W] in [-1, 1] (LPIPS' input convention)."""
        if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"LPIPS takes float images [N, 3, H, W] in [-1, 1], got {images.dtype} "
                             f"{tuple(images.shape)}; convert uint8 with x / 127.5 - 1")
        low, high = float(images.min()), float(images.max())
        if low < -1.0 - 1e-4 or high > 1.0 + 1e-4:
            raise ValueError(f"LPIPS takes images in [-1, 1], got values in [{low:.3g}, {high:.3g}]")

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # [N, 3, H, W] each, in [-1, 1] -> [N]
        self.check_range(x)
        self.check_range(y)
        a, b = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = torch.zeros(len(x), device=x.device)
        tap = 0
        for index, layer in enumerate(self.features):
            a, b = layer(a), layer(b)
            if index in LPIPS_TAPS:
                na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit feature vectors per pixel
                nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + ((na - nb).pow(2) * self.lins[tap]).sum(1).mean(dim=(1, 2))  # (N,)
                tap += 1
            if tap == len(LPIPS_TAPS):
                break
        return total


def view_cameras(data: str | Path | None = None, views: int = VIEWS, seed: int = 123) -> Tensor:  # -> [V, 25]
    """The extra cameras: ``views`` labels of a dataset (without replacement) or of the FFHQ-like prior."""
    if data is not None:
        from nerfsculpt.eg3d_dataset import read_eg3d_dataset

        labels = read_eg3d_dataset(data).labels
        pick = np.random.default_rng(seed).choice(len(labels), size=min(views, len(labels)), replace=False)
        return torch.from_numpy(labels[pick]).float()
    from nerfsculpt.eg3d_dataset import sample_ffhq_like_poses

    return sample_ffhq_like_poses(views, torch.Generator().manual_seed(seed))


def canonical_rgb_camera() -> Tensor:  # [1, 25]
    """The reference's canonical RGB camera: yaw 0, pitch -0.2 rad, the paper's focal."""
    from nerfsculpt.camera import FOCAL_PAPER, intrinsics_from_focal, look_at_pose, make_label

    return make_label(look_at_pose(0.0, CANONICAL_RGB_PITCH), intrinsics_from_focal(FOCAL_PAPER))


@torch.no_grad()
def render_views(G: nn.Module, seeds: Sequence[int], psi: float, cameras: Tensor,
                 size: int = RENDER_SIZE) -> Tensor:  # -> [S, V, 3, size, size] in [-1, 1]
    """Each seed's RGB from each camera (rendering), conditioned on the canonical camera, resized to ``size``."""
    from nerfsculpt.latents import ws_from_seeds

    device = G.dataset_label_std.device
    images = []
    for seed in seeds:
        ws = ws_from_seeds(G, [seed], psi, None).expand(len(cameras), -1, -1)  # (V, num_ws, w_dim)
        out = G.synthesis(ws, cameras.to(device), noise_mode="const", deterministic=True)["image"]  # (V, 3, H, W)
        images.append(F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1).cpu())
    return torch.stack(images)


def _cosine(a: Tensor, b: Tensor) -> Tensor:  # [..., E] each -> [...]
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)


def identity_drift(before: nn.Module, after: nn.Module, seeds: Sequence[int], psi: float = 0.7,
                   lpips: LPIPS | None = None, embedder: Any = None, data: str | Path | None = None,
                   geometry_change: dict[str, np.ndarray] | None = None, size: int = RENDER_SIZE) -> dict[str, Any]:
    """LPIPS and face-identity drift of the same latents between two generators (see the module docstring).

    ``embedder`` maps float images [N, 3, 160, 160] in [-1, 1] to embeddings [N, E]; without it (or
    without ``lpips``) that half is left out. ``geometry_change``: per-seed geometry changes by name
    (e.g. {"depth": mean |depth change| [S], "sigma": mean |sigma change| [S]}) to correlate with the
    identity drift at the canonical view and averaged over the views (Spearman).
    """
    from nerfsculpt.stats import bootstrap_mean

    cameras = torch.cat([canonical_rgb_camera(), view_cameras(data)])  # (1 + V, 25); view 0 is canonical
    a, b = (render_views(G, seeds, psi, cameras, size) for G in (before, after))  # (S, 1+V, 3, R, R) each
    out: dict[str, Any] = {"views": len(cameras) - 1, "size": size,
                           "camera_source": "dataset labels" if data else "FFHQ-like prior"}
    if lpips is not None:
        s, v = a.shape[:2]
        device = lpips.shift.device
        pairs = list(zip(a.flatten(0, 1).split(BATCH), b.flatten(0, 1).split(BATCH), strict=True))
        with torch.no_grad():
            distance = torch.cat([lpips(x.to(device), y.to(device)).cpu() for x, y in pairs])  # (S * (1+V),)
        distance = distance.view(s, v).double().numpy()  # (S, 1+V)
        out["lpips"] = {"canonical": {"mean": float(distance[:, 0].mean()), "ci95": bootstrap_mean(distance[:, 0])},
                        "views": {"mean": float(distance[:, 1:].mean()),
                                  "ci95": bootstrap_mean(distance[:, 1:].mean(1))}}
    if embedder is not None:
        out["face_identity"] = _face_identity(a, b, embedder, geometry_change)
    return out


def _face_identity(a: Tensor, b: Tensor, embedder: Any,
                   geometry_change: dict[str, np.ndarray] | None) -> dict[str, Any]:
    from scipy import stats as scipy_stats

    from nerfsculpt.stats import bootstrap_mean

    def embed(images: Tensor) -> Tensor:  # (S, 1+V, 3, R, R) -> (S, 1+V, E)
        s, v = images.shape[:2]
        out = []
        for chunk in images.flatten(0, 1).split(BATCH):
            faces = F.interpolate(chunk, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False)
            out.append(torch.as_tensor(embedder(faces)).double().cpu())
        return torch.cat(out).reshape(s, v, -1)

    ea, eb = embed(a), embed(b)
    across = _cosine(ea, eb).numpy()  # (S, 1+V)
    within_a = _cosine(ea[:, 1:], ea[:, :1]).numpy().mean(1)  # (S,) each view against the canonical
    within_b = _cosine(eb[:, 1:], eb[:, :1]).numpy().mean(1)
    diff = within_b - within_a
    test = scipy_stats.wilcoxon(diff[diff != 0]) if (diff != 0).sum() > 0 else None
    result: dict[str, Any] = {
        "across_canonical": {"mean": float(across[:, 0].mean()), "ci95": bootstrap_mean(across[:, 0])},
        "across_views": {"mean": float(across[:, 1:].mean()), "min": float(across[:, 1:].min())},
        "consistency": {"original": float(within_a.mean()), "tuned": float(within_b.mean()),
                        "wilcoxon_p": float(test.pvalue) if test is not None else 1.0, "n": int((diff != 0).sum())},
    }
    v = ea.shape[1] - 1
    if v >= 2:  # within a model: every pair of the extra views
        upper = np.triu_indices(v, k=1)
        pairs = {name: _cosine(e[:, 1:, None], e[:, None, 1:]).numpy()[:, upper[0], upper[1]].mean()
                 for name, e in (("original", ea), ("tuned", eb))}
        result["consistency"]["view_pairs"] = {k: float(x) for k, x in pairs.items()}
    if geometry_change and len(across) >= 3:  # identity drift against geometry change, per seed
        drift = {"canonical": 1 - across[:, 0], "views": 1 - across[:, 1:].mean(1)}
        result["drift_vs_geometry_spearman"] = {
            f"{d}_vs_{g}": float(scipy_stats.spearmanr(drift[d], np.asarray(change)).statistic)
            for d in drift for g, change in geometry_change.items()}
    return result
