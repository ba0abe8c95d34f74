"""Reading and writing EG3D dataset zips (the format: ``nerfsculpt.eg3d_dataset``)."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfsculpt.eg3d_dataset import IMAGE_EXTENSIONS, LABELS_FILE, DatasetError

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
