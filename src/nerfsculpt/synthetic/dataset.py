"""The discriminator's "real images": renders of defect-free procedural heads in EG3D's dataset format.

Format (``nerfsculpt.eg3d_dataset``, docs/method/eg3d.md §5.1): an uncompressed (ZIP_STORED) zip of
uncompressed PNGs named ``%05d/img%08d.png`` and ``dataset.json`` with the 25-number camera label of
each. nerfsculpt adds ``synthetic_config.json`` (the resolved configuration); EG3D's loader ignores
files that are not images.

Each image shows its own head identity (``synthetic.heads.sample_head_params(defect_free=True)``)
from its own pose (``eg3d_dataset.sample_ffhq_like_poses``), rendered with the generator's renderer
(``synthetic.render.render_field``, the synthetic generator's 32 + 32 samples per ray, deterministic
sample positions)
directly at the generator's image resolution ``G.img_resolution`` (128 for the built-in synthetic
generator: real images are what D compares with G's super-resolved output). Pixels are EG3D's
``(x * 127.5 + 128).clamp(0, 255)`` of the [-1, 1] render; the loader maps them back with
``x / 127.5 - 1``. Everything is a function of ``seed``: the poses and the head parameters come from
two independent streams derived from it, so changing the pose distribution leaves the identities
alone. The zip is written under a temporary name and moved into place when complete.

Cost grows with n * resolution^2 * samples per ray. Measured on 2 (shared, busy) CPU cores at 128^2:
0.2-0.35 s per image with FFHQ's 48 + 48 samples, about half of it the renderer and half the head
field; the default 32 + 32 (the synthetic generator's own sampling) takes about two thirds of that.

Example::

    path = write_dataset("synth.zip", n=2000, resolution=128, seed=0)
    data = read_eg3d_dataset(path)
    image, label = data[0]          # uint8 [3, 128, 128], float32 [25]
"""

from __future__ import annotations

import functools
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerfsculpt.atomic import atomic_file, png_bytes
from nerfsculpt.eg3d_dataset import (
    LABELS_FILE,
    DatasetError,
    PoseDistribution,
    archive_name,
    image_to_uint8,
    labels_json,
    read_eg3d_dataset,
    sample_ffhq_like_poses,
    zip_entry,
)
from nerfsculpt.synthetic.config import SyntheticDatasetConfig
from nerfsculpt.synthetic.generator import SYNTHETIC_RENDERING_KWARGS
from nerfsculpt.synthetic.render import DEFAULT_RAY_CHUNK, render_field

# From eg3d_dataset and synthetic.config: write_dataset's argument and error types, and the reader of what it
# writes.
__all__ = ["DatasetError", "PoseDistribution", "SyntheticDatasetConfig", "read_eg3d_dataset", "write_dataset"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "synthetic_config.json"


def _stream_seed(seed: int, stream: int) -> int:
    """An independent 64-bit torch seed per (seed, stream) pair (numpy SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0])


POSE_STREAM, HEAD_STREAM = 0, 1


def write_dataset(
    out_zip: str | os.PathLike,
    n: int,
    resolution: int = 128,
    seed: int = 0,
    *,
    poses: PoseDistribution | None = None,
    rendering_kwargs: Mapping[str, Any] | None = None,
    ray_chunk: int = DEFAULT_RAY_CHUNK,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Render ``n`` defect-free procedural heads into an EG3D dataset zip at ``out_zip`` (module docstring).

    ``rendering_kwargs`` update the synthetic generator's; ``ray_chunk`` bounds memory (rays rendered at once) and does
    not change the images. The zip appears only when complete (temporary file + ``os.replace``).
    Returns the path.
    """
    from tqdm import tqdm

    from nerfsculpt.synthetic.heads import head_field, sample_head_params

    config = SyntheticDatasetConfig(n, resolution, seed, poses or PoseDistribution(),
                                    {**SYNTHETIC_RENDERING_KWARGS, **(rendering_kwargs or {})})
    out = Path(out_zip)
    if out.suffix.lower() != ".zip":
        raise DatasetError(f"the dataset is a zip file: pass a path ending in .zip, got {out}")
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} already exists; pass overwrite=True (--overwrite) or choose another path")
    if ray_chunk < 1:
        raise DatasetError(f"ray_chunk must be >= 1, got {ray_chunk}")
    out.parent.mkdir(parents=True, exist_ok=True)

    labels = sample_ffhq_like_poses(n, torch.Generator().manual_seed(_stream_seed(seed, POSE_STREAM)), config.poses)
    heads = sample_head_params(n, torch.Generator().manual_seed(_stream_seed(seed, HEAD_STREAM)), defect_free=True)
    per_batch = max(1, ray_chunk // resolution**2)  # images per render call
    names = [archive_name(i) for i in range(n)]

    with atomic_file(out) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf, torch.inference_mode(), \
                tqdm(total=n, desc="synthetic dataset", unit="img", disable=not progress) as bar:
            for start in range(0, n, per_batch):
                batch = heads.index(slice(start, start + per_batch))
                images = render_field(functools.partial(head_field, params=batch),
                                      labels[start : start + per_batch], resolution, config.rendering_kwargs,
                                      deterministic=True, ray_chunk=ray_chunk)["image"]
                for offset, pixels in enumerate(image_to_uint8(images)):
                    zf.writestr(zip_entry(names[start + offset]), png_bytes(pixels, compress_level=0))
                bar.update(len(images))
            zf.writestr(zip_entry(LABELS_FILE), labels_json(names, labels))
            zf.writestr(zip_entry(CONFIG_FILE), json.dumps(_provenance(config), indent=2))
    logger.info("wrote %s: %d images of %d^2 px", out, n, resolution)
    return out


def _provenance(config: SyntheticDatasetConfig) -> dict[str, Any]:
    from nerfsculpt import __version__

    return {
        "kind": "nerfsculpt synthetic dataset",
        "nerfsculpt_version": __version__,
        "subjects": "synthetic.heads.sample_head_params(n, defect_free=True), one identity per image",
        "renderer": "synthetic.render.render_field (EG3D ImportanceRenderer + MipRayMarcher2), deterministic",
        "pixels": "uint8 = clamp(x * 127.5 + 128, 0, 255) of the [-1, 1] render",
        "label": "row-major 4x4 OpenCV cam2world (16) + row-major normalised 3x3 intrinsics (9)",
        "config": config.to_dict(),
    }
