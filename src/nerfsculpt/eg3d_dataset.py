"""EG3D dataset zips: the format of real images and their camera labels, and an FFHQ-like prior over the labels.

The shared dataset vocabulary of nerfsculpt, read by fine-tuning (``finetune.data``) and written by the
synthetic benchmark (``synthetic.dataset``). Format (docs/method/eg3d.md §5.1, as EG3D's ``dataset_tool.py``
writes it):

- a zip (stored or deflated; ``dataset_tool.py`` stores) of PNGs named ``%05d/img%08d.png``, the folder
  being the first five digits of the 8-digit index (:func:`archive_name`);
- ``dataset.json`` = ``{"labels": [[name, [25 floats]], ...]}``, a label being the row-major 4x4
  OpenCV cam2world followed by the row-major 3x3 intrinsics normalised by the image size
  (``camera.make_label``). Other files are ignored by EG3D's loader, as they are here;
- pixels are EG3D's ``(x * 127.5 + 128).clamp(0, 255)`` of a [-1, 1] image (:func:`image_to_uint8`),
  read back as ``x / 127.5 - 1`` (:func:`image_to_float`).

FFHQ's cameras are not published as a distribution; :class:`PoseDistribution` and
:func:`sample_ffhq_like_poses` give labels of that kind, for datasets that stand in for FFHQ and for
fine-tuning without one (data-free mode).

Example::

    data = read_eg3d_dataset("synth.zip")
    image, label = data[0]                  # uint8 [3, 128, 128], float32 [25]
    labels = sample_ffhq_like_poses(16)     # float32 [16, 25]
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfsculpt.camera import (
    AVG_CAMERA_PIVOT,
    AVG_CAMERA_RADIUS,
    FOCAL_FFHQ_DATASET,
    intrinsics_from_focal,
    look_at_pose,
    make_label,
)
from nerfsculpt.errors import NerfsculptError

__all__ = [
    "IMAGE_EXTENSIONS", "LABELS_FILE", "DatasetError", "EG3DDataset", "PoseDistribution", "archive_name",
    "image_to_float", "image_to_uint8", "labels_json", "read_eg3d_dataset", "sample_ffhq_like_poses", "zip_entry",
]

LABELS_FILE = "dataset.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DatasetError(NerfsculptError, ValueError):
    """A dataset that cannot be written or read as asked; the message says what to change."""


# ------------------------------------------------------------------------------------------------
# Cameras


@dataclass(frozen=True)
class PoseDistribution:
    """FFHQ-like cameras: yaw and pitch are truncated normals around the frontal view (nerfsculpt's choice).

    FFHQ's poses (Deep3DFaceRecon, docs/method/eg3d.md §5.1) are mostly frontal with a yaw spread of roughly
    +-0.3 rad and a narrower pitch spread; the exact distribution is not published, so these are
    round numbers of that size. Angles are offsets from the frontal view as in ``camera.look_at_pose``
    (the camera orbits the world origin at ``radius`` and looks at ``pivot``). Out-of-range angles are
    not clipped (that would pile mass at the limits): the normal is truncated by inverse-cdf sampling.
    """

    yaw_std: float = 0.3
    """Standard deviation (rad) of the yaw before truncation."""
    pitch_std: float = 0.15
    """Standard deviation (rad) of the pitch before truncation."""
    yaw_limit: float = 0.8
    """Yaws lie in [-yaw_limit, yaw_limit] (rad)."""
    pitch_limit: float = 0.45
    """Pitches lie in [-pitch_limit, pitch_limit] (rad)."""
    radius: float = AVG_CAMERA_RADIUS
    """Camera distance from the world origin (rendering_kwargs['avg_camera_radius'])."""
    pivot: tuple[float, float, float] = AVG_CAMERA_PIVOT
    """Look-at point (rendering_kwargs['avg_camera_pivot'])."""
    focal: float = FOCAL_FFHQ_DATASET
    """Normalised focal of the labels: FFHQ's 2985.29 / 700 = 4.2647, since these images stand in for
    FFHQ's (not the paper's 4.26339 used for preference renders)."""

    def validate(self) -> None:
        for name in ("yaw_std", "pitch_std"):
            if not getattr(self, name) >= 0:
                raise DatasetError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("yaw_limit", "pitch_limit", "radius", "focal"):
            if not getattr(self, name) > 0:
                raise DatasetError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.pitch_limit >= np.pi / 2:
            raise DatasetError(f"pitch_limit must be < pi/2 (the poles), got {self.pitch_limit}")
        if len(self.pivot) != 3:
            raise DatasetError(f"pivot must be 3 numbers, got {self.pivot}")


def _truncated_normal(n: int, std: float, limit: float, generator: torch.Generator | None) -> Tensor:  # [n] float64
    """N(0, std^2) restricted to [-limit, limit] by the inverse cdf: exactly one uniform per sample."""
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    if std == 0:
        return torch.zeros(n, dtype=torch.float64)
    lo = torch.special.ndtr(torch.tensor(-limit / std, dtype=torch.float64))  # P(X < -limit)
    return (std * torch.special.ndtri(lo + u * (1 - 2 * lo))).clamp(-limit, limit)  # clamp: rounding only


def sample_ffhq_like_poses(
    n: int,
    generator: torch.Generator | None = None,
    distribution: PoseDistribution = PoseDistribution(),
) -> Tensor:  # [n, 25] labels
    """``n`` camera labels from ``distribution`` (yaw draws first, then pitch, from ``generator``)."""
    if not (isinstance(n, int) and n >= 1):
        raise DatasetError(f"n must be a positive integer, got {n!r}")
    distribution.validate()
    yaw = _truncated_normal(n, distribution.yaw_std, distribution.yaw_limit, generator)  # (n,)
    pitch = _truncated_normal(n, distribution.pitch_std, distribution.pitch_limit, generator)  # (n,)
    poses = look_at_pose(yaw, pitch, distribution.pivot, distribution.radius)  # (n, 4, 4)
    return make_label(poses, intrinsics_from_focal(distribution.focal))


# ------------------------------------------------------------------------------------------------
# Writing


def archive_name(index: int) -> str:
    """EG3D dataset_tool's name of image ``index``: ``'%05d/img%08d.png'`` (e.g. 1234 -> ``00001/img00001234.png``)."""
    digits = f"{index:08d}"
    return f"{digits[:5]}/img{digits}.png"


def zip_entry(name: str) -> zipfile.ZipInfo:
    """A stored zip entry with a fixed timestamp, so the same content gives the same bytes on any day."""
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def image_to_uint8(image: Tensor) -> np.ndarray:  # [N, 3, R, R] in [-1, 1] -> [N, R, R, 3] uint8
    """EG3D's conversion of a [-1, 1] image to pixels (gen_samples.py): x * 127.5 + 128, clamped."""
    pixels = (image * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()  # (N, R, R, 3)


def labels_json(names: Sequence[str], labels: Tensor) -> str:  # labels [N, 25]
    """The text of ``dataset.json``: ``{"labels": [[name, [25 floats]], ...]}``, ``labels[i]`` for ``names[i]``."""
    return json.dumps({"labels": [[name, label] for name, label in zip(names, labels.tolist(), strict=True)]})


# ------------------------------------------------------------------------------------------------
# Reading


class EG3DDataset:
    """An EG3D dataset zip (docs/method/eg3d.md §5.1), read like EG3D's ``ImageFolderDataset`` with labels.

    ``data[i]`` is ``(image uint8 [C, H, W], label float32 [25])``; images are listed in sorted name
    order and labels matched by name. The zip handle is opened lazily, so the dataset can be handed
    to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not zipfile.is_zipfile(self.path):
            raise DatasetError(f"{self.path} is not a zip file; expected an EG3D dataset zip (dataset_tool.py)")
        self._zipfile: zipfile.ZipFile | None = None
        members = set(self._zip().namelist())
        self.names: list[str] = sorted(m for m in members if m.lower().endswith(IMAGE_EXTENSIONS))
        """Archive names of the images, sorted (EG3D's order)."""
        if not self.names:
            raise DatasetError(f"{self.path} contains no images")
        self.labels: np.ndarray = self._read_labels(members)
        """[N, 25] float32 camera labels, row i for ``names[i]``."""
        first = self._read_image(0)
        self.num_channels, self.resolution = first.shape[0], first.shape[1]
        if first.shape[1] != first.shape[2]:
            raise DatasetError(f"images must be square, {self.names[0]} is {first.shape[2]}x{first.shape[1]}")

    def _zip(self) -> zipfile.ZipFile:
        if self._zipfile is None:
            self._zipfile = zipfile.ZipFile(self.path)
        return self._zipfile

    def _read_labels(self, members: set[str]) -> np.ndarray:  # [N, 25]
        if LABELS_FILE not in members:
            raise DatasetError(f"{self.path} has no {LABELS_FILE}: EG3D needs a camera label per image")
        try:
            labels = json.loads(self._zip().read(LABELS_FILE))["labels"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise DatasetError(f"{self.path}: {LABELS_FILE} is not {{'labels': [[name, [25 floats]], ...]}}") from e
        if labels is None:
            raise DatasetError(f"{self.path}: {LABELS_FILE} has 'labels': null; every image needs a camera label")
        try:
            by_name = {str(name).replace("\\", "/"): label for name, label in labels}
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{self.path}: {LABELS_FILE} entries must be [name, [25 floats]]") from e
        missing = [name for name in self.names if name not in by_name]
        if missing:
            raise DatasetError(f"{self.path}: {len(missing)} image(s) have no label in {LABELS_FILE}, "
                               f"e.g. {missing[0]}")
        try:
            out = np.array([by_name[name] for name in self.names], dtype=np.float32)  # (N, 25)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{self.path}: labels must be lists of 25 numbers") from e
        if out.ndim != 2 or out.shape[1] != 25:
            raise DatasetError(f"{self.path}: labels must be 25 numbers (cam2world 16 + intrinsics 9), got "
                               f"shape {out.shape[1:]}")
        return out

    def _read_image(self, index: int) -> np.ndarray:  # [C, H, W] uint8
        from PIL import Image

        name = self.names[index]
        with self._zip().open(name) as f, Image.open(f) as image:
            if image.mode not in ("RGB", "L"):
                raise DatasetError(f"{self.path}: {name} is {image.mode}; EG3D datasets are RGB or L "
                                   f"(dataset_tool.py converts them)")
            pixels = np.array(image)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]  # (H, W, 1)
        return pixels.transpose(2, 0, 1)  # (C, H, W)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index %= len(self)
        image = self._read_image(index)
        if image.shape != (self.num_channels, self.resolution, self.resolution):
            raise DatasetError(f"{self.path}: {self.names[index]} is {tuple(image.shape)}, the dataset is "
                               f"{(self.num_channels, self.resolution, self.resolution)} (first image)")
        return image, self.labels[index].copy()

    def label_std(self) -> np.ndarray:  # [25] float32
        """Per-dimension standard deviation of the labels (EG3D's ``get_label_std``, the G buffer)."""
        return self.labels.std(0)

    def close(self) -> None:
        if self._zipfile is not None:
            self._zipfile.close()
            self._zipfile = None

    def __enter__(self) -> EG3DDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zipfile": None}  # worker processes reopen the zip

    def __repr__(self) -> str:
        return f"EG3DDataset({str(self.path)!r}, n={len(self)}, resolution={self.resolution}, C={self.num_channels})"


def read_eg3d_dataset(path: str | os.PathLike) -> EG3DDataset:
    """Open an EG3D dataset zip (stored or deflated) with its camera labels; see :class:`EG3DDataset`."""
    return EG3DDataset(path)


def image_to_float(images: np.ndarray | Tensor) -> Tensor:  # uint8 [N, C, H, W] -> float32 [-1, 1]
    """EG3D's training-loop conversion of dataset pixels: ``x / 127.5 - 1``."""
    return torch.as_tensor(images).to(torch.float32) / 127.5 - 1
