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

import math
from dataclasses import dataclass

from nerfsculpt.camera_conventions import AVG_CAMERA_PIVOT, AVG_CAMERA_RADIUS, FOCAL_FFHQ_DATASET
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
        if self.pitch_limit >= math.pi / 2:
            raise DatasetError(f"pitch_limit must be < pi/2 (the poles), got {self.pitch_limit}")
        if len(self.pivot) != 3:
            raise DatasetError(f"pivot must be 3 numbers, got {self.pivot}")


_LAZY = {"EG3DDataset": "zips", "read_eg3d_dataset": "zips", "image_to_float": "zips", "image_to_uint8": "zips",
         "archive_name": "zips", "zip_entry": "zips", "labels_json": "zips", "sample_ffhq_like_poses": "poses"}
"""Names that need torch or numpy, imported on first use: the settings above stay light for the command
line, which builds ``nerfsculpt synthetic dataset``'s options from ``PoseDistribution``."""


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nerfsculpt.eg3d_dataset.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nerfsculpt.eg3d_dataset' has no attribute {name!r}")
