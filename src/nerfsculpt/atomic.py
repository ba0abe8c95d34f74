"""Crash-safe file writing shared by every artefact writer.

A file is written under a temporary name in its own folder (same filesystem), flushed to disk and
then renamed over the target with ``os.replace``: readers see the old file or the new one, never
a half-written one. Temporary names start with a dot and end in ``.tmp`` so that a writer that
was killed can be cleaned up with ``remove_temporaries``.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np


def temporary_path(path: Path) -> Path:
    """A unique hidden name beside ``path``: ``.<name>.<pid>.<hex>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    On any exception (Ctrl-C included) the temporary file is deleted and ``path`` is untouched.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


def check_directory_destination(path: Path, overwrite: bool, error: type[Exception] = FileExistsError) -> None:
    """Raise ``error`` unless ``path`` is absent, an empty directory, or a directory that may be replaced."""
    if path.exists() and not path.is_dir():
        raise error(f"{path} exists and is not a directory; choose another output path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise error(f"{path} is not empty; pass overwrite=True (--overwrite) to replace it")


@contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False,
                     error: type[Exception] = FileExistsError) -> Iterator[Path]:
    """Yield a staging directory beside ``path``; on success it becomes ``path``, complete or not at all.

    An existing non-empty ``path`` is replaced only with ``overwrite`` (else ``error`` is raised,
    before and again after the body); on any exception the staging directory is deleted and
    ``path`` is untouched.
    """
    path = Path(path)
    check_directory_destination(path, overwrite, error)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        check_directory_destination(path, overwrite, error)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        if not path.exists():
            staging.rename(path)
        else:
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            path.rename(old)
            staging.rename(path)
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_temporaries(directory: str | os.PathLike) -> None:
    """Delete the temporary files an interrupted writer left in ``directory``."""
    for tmp in Path(directory).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def png_bytes(image: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode an [H, W, 3] (RGB) or [H, W, 4] (RGBA) uint8 image as PNG (zlib level 0-9)."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected a uint8 image [H, W, 3] or [H, W, 4], got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
