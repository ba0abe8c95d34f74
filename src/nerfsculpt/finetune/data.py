"""What the discriminator sees as real, and where the generator's cameras come from.

See docs/method/reference_method.md §5.6.

Two sources, one interface (:class:`RealImages`):

- :class:`DatasetImages`: an EG3D dataset zip (FFHQ, or ``nerfsculpt synthetic dataset``): images
  and their 25-number camera labels; the generator is conditioned on labels drawn from the same set,
  as EG3D does.
- :class:`RenderedImages` (data-free mode): the "real" images are renders of the frozen pretrained
  generator at poses from a label file or an FFHQ-like camera prior. The discriminator then keeps the
  tuned generator's images close to the pretrained generator's, for users without FFHQ.

Every draw comes from a :class:`Draws` (seeded by run seed, iteration, rank and phase), so a run's
draws are a function of those numbers alone: a resumed run draws what an uninterrupted one would.

Example::

    real = DatasetImages("synth.zip")
    real.check(G)                                   # resolution and channels match G's images
    draws = Draws.for_step(seed=0, iteration=7, rank=0, stream=2, device=device)
    images, labels = real.sample(16, draws, device)       # [16, 3, 128, 128] in [-1, 1], [16, 25]
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfsculpt.eg3d_dataset import LABELS_FILE, DatasetError, EG3DDataset, image_to_float, sample_ffhq_like_poses
from nerfsculpt.finetune.config import FinetuneError


@dataclass
class Draws:
    """Random generators of one phase of one iteration on one process."""

    cpu: torch.Generator
    """Latents, labels, image indices, regulariser points: drawn on the CPU (identical on any device)."""
    device: torch.Generator
    """Synthesis noise and renderer jitter, drawn on the training device."""

    @classmethod
    def for_step(cls, seed: int, iteration: int, rank: int, stream: int, device: torch.device) -> Draws:
        state = np.random.SeedSequence([seed, iteration, rank, stream]).generate_state(2, np.uint64)
        cpu = torch.Generator().manual_seed(int(state[0]))
        return cls(cpu, torch.Generator(device).manual_seed(int(state[1])) if device.type != "cpu" else
                   torch.Generator().manual_seed(int(state[1])))


class RealImages(Protocol):
    """A source of real images and of the camera labels the generator is conditioned on."""

    description: str

    def labels(self, n: int, generator: torch.Generator) -> Tensor:  # -> [n, 25] float32, CPU
        ...

    def sample(self, n: int, draws: Draws, device: torch.device) -> tuple[Tensor, Tensor]:
        """``n`` real images [n, 3, H, W] in [-1, 1] and their labels [n, 25], on ``device``."""
        ...

    def check(self, G: nn.Module) -> None:
        """Raise FinetuneError if these images cannot be compared with ``G``'s."""
        ...


def filtered_resize(images: Tensor, resolution: int) -> Tensor:  # [N, C, H, W] -> [N, C, R, R]
    """EG3D's 'antialiased' filtered resizing of real images to the neural rendering resolution.

    See docs/method/eg3d.md §5.2.
    """
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)


def _check_labels(labels: np.ndarray, source: str) -> np.ndarray:  # [N, 25] float32
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape[1] != 25 or len(labels) == 0:
        raise FinetuneError(f"{source}: camera labels must be a non-empty list of 25 numbers each (4x4 cam2world + "
                            f"3x3 normalised intrinsics), got shape {labels.shape}")
    if not np.isfinite(labels).all():
        raise FinetuneError(f"{source}: camera labels contain NaN or Inf")
    return labels


def read_labels(path: str | os.PathLike) -> np.ndarray:  # -> [N, 25] float32
    """Camera labels from an EG3D ``dataset.json`` or from a dataset zip holding one."""
    path = Path(path)
    if not path.is_file():
        raise FinetuneError(f"--labels {path}: no such file; pass a dataset.json or an EG3D dataset zip")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                data = json.loads(z.read(LABELS_FILE))
        else:
            data = json.loads(path.read_text())
        entries = data["labels"]
        labels = [label for _, label in entries]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as error:
        raise FinetuneError(f"{path}: not an EG3D label file {{'labels': [[name, [25 floats]], ...]}} "
                            f"({type(error).__name__}: {error})") from None
    try:
        array = np.array(labels, dtype=np.float32)
    except (TypeError, ValueError):
        raise FinetuneError(f"{path}: every label must be a list of 25 numbers") from None
    return _check_labels(array, str(path))


def _check_resolution(resolution: int, channels: int, G: nn.Module, source: str) -> None:
    if resolution != G.img_resolution:
        raise FinetuneError(f"{source} has {resolution}x{resolution} images, the generator makes "
                            f"{G.img_resolution}x{G.img_resolution}; make a dataset at the generator's resolution "
                            f"(e.g. 'nerfsculpt synthetic dataset --resolution {G.img_resolution}') or use --data-free")
    if channels != 3:
        raise FinetuneError(f"{source} has {channels}-channel images; the discriminator compares RGB images")


class DatasetImages:
    """Real images and labels of an EG3D dataset zip (stored or deflated PNGs + dataset.json)."""

    def __init__(self, path: str | os.PathLike):
        try:
            self.dataset = EG3DDataset(path)
        except (DatasetError, OSError) as error:
            raise FinetuneError(f"--data {path}: {error}") from None
        self._labels = torch.from_numpy(_check_labels(self.dataset.labels, str(path)))  # (N, 25)
        self.description = f"dataset {self.dataset.path} ({len(self.dataset)} images)"

    def check(self, G: nn.Module) -> None:
        _check_resolution(self.dataset.resolution, self.dataset.num_channels, G, f"--data {self.dataset.path}")

    def labels(self, n: int, generator: torch.Generator) -> Tensor:  # [n, 25]
        return self._labels[torch.randint(len(self._labels), (n,), generator=generator)]

    def sample(self, n: int, draws: Draws, device: torch.device) -> tuple[Tensor, Tensor]:
        index = torch.randint(len(self.dataset), (n,), generator=draws.cpu).tolist()
        try:
            pixels = np.stack([self.dataset[i][0] for i in index])  # (n, 3, H, W) uint8
        except DatasetError as error:
            raise FinetuneError(f"--data: {error}") from None
        return image_to_float(pixels).to(device), self._labels[index].to(device)


class RenderedImages:
    """Data-free "real" images: the frozen pretrained generator's renders (psi 1, random noise)."""

    def __init__(self, G_frozen: nn.Module, labels: np.ndarray | None = None):
        self.G = G_frozen
        self._labels = None if labels is None else torch.from_numpy(_check_labels(labels, "--labels"))
        poses = "the FFHQ-like camera prior" if labels is None else f"{len(labels)} given camera labels"
        self.description = f"renders of the frozen pretrained generator at {poses} (data-free)"

    def check(self, G: nn.Module) -> None:
        _check_resolution(self.G.img_resolution, self.G.img_channels, G, "the pretrained generator")

    def labels(self, n: int, generator: torch.Generator) -> Tensor:  # [n, 25]
        if self._labels is None:
            return sample_ffhq_like_poses(n, generator).float()
        return self._labels[torch.randint(len(self._labels), (n,), generator=generator)]

    def sample(self, n: int, draws: Draws, device: torch.device) -> tuple[Tensor, Tensor]:
        labels = self.labels(n, draws.cpu).to(device)  # (n, 25)
        z = torch.randn(n, self.G.z_dim, generator=draws.cpu).to(device)  # (n, z_dim)
        with torch.no_grad():
            images = self.G(z, labels, noise_mode="random", generator=draws.device)["image"]  # (n, 3, H, W)
        return images.clamp(-1, 1), labels
