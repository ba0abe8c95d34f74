"""Reading a bank: :func:`open_bank` and the artefacts of its finished seeds.

Layout and guarantees: ``geometry.bank`` (the package docstring).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfsculpt.geometry.bank.manifest import (
    ARTEFACT_FILES,
    RENDER_VIEWS,
    SEED_META_FILE,
    SEEDS_DIR,
    BankError,
    finished_artefacts,
    read_manifest,
    read_seed_meta,
    seed_dir_name,
)


class Bank:
    """Read access to a sample bank. Use :func:`open_bank`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)

    def __repr__(self) -> str:
        return f"Bank({str(self.path)!r}, what={self.manifest['what']}, seeds={len(self.manifest['seeds'])})"

    def seed_dir(self, seed: int) -> Path:
        return self.path / SEEDS_DIR / seed_dir_name(seed)

    def meta(self, seed: int) -> dict[str, Any]:
        """The seed's ``meta.json`` (BankError if the seed has none)."""
        meta = read_seed_meta(self.seed_dir(seed))
        if meta is None:
            raise BankError(f"seed {seed} is not in {self.path} (no {SEED_META_FILE}); "
                            f"write it with 'nerfsculpt sample --generator ... --seeds {seed} --out {self.path}'")
        return meta

    def seeds(self, what: Sequence[str] | None = None) -> list[int]:
        """Seeds of the manifest that are finished for ``what`` (default: the manifest's ``what``)."""
        what = self.manifest["what"] if what is None else what
        return [seed for seed in self.manifest["seeds"]
                if set(what) <= finished_artefacts(self.seed_dir(seed))]

    def missing(self, what: Sequence[str] | None = None) -> list[int]:
        """Seeds of the manifest not finished for ``what``."""
        done = set(self.seeds(what))
        return [seed for seed in self.manifest["seeds"] if seed not in done]

    def file(self, seed: int, name: str) -> Path:
        """Path of one file of a finished artefact (``'slab'``, ``'render_front'``, ``'mesh'``, ...)."""
        file = _file_of(name)
        artefact = next(key for key, files in ARTEFACT_FILES.items() if file in files)
        entry = self.meta(seed)["artefacts"].get(artefact)
        if entry is None or artefact not in finished_artefacts(self.seed_dir(seed)):
            raise BankError(f"seed {seed} of {self.path} has no finished {artefact!r}; "
                            f"add it with 'nerfsculpt sample --generator ... --what {artefact} --seeds {seed} "
                            f"--out {self.path}'")
        if entry.get("empty"):
            raise BankError(f"seed {seed} has no {artefact}: {entry.get('reason', 'empty')}")
        return self.seed_dir(seed) / file

    def load(self, seed: int, name: str, dtype: torch.dtype = torch.float32) -> Any:
        """Load one artefact of a seed.

        - ``'sigma'`` [R, R, R], ``'slab'`` [X, Y, Z], ``'points'`` [P, 3]: tensors of ``dtype``;
        - ``'depth'`` [V, 1, H, W] of ``dtype`` (camera labels: ``load(seed, 'depth_cameras')`` [V, 25]);
        - ``'mesh'``: a ``trimesh.Trimesh`` in world units;
        - ``'render_front'``, ``'render_three_quarter'``, ``'render_profile'``, ``'rgb'``: uint8 [H, W, 3].
        """
        if name == "depth_cameras":
            return self._tensor(seed, "depth", "cameras", dtype)
        if name in ("sigma", "slab", "depth", "points"):
            return self._tensor(seed, name, name, dtype)
        path = self.file(seed, name)
        if name == "mesh":
            import trimesh

            return trimesh.load(path, force="mesh", process=False)
        from PIL import Image

        with Image.open(path) as image:
            return torch.from_numpy(np.array(image.convert("RGB")))  # (H, W, 3) uint8

    def _tensor(self, seed: int, artefact: str, key: str, dtype: torch.dtype) -> Tensor:
        from safetensors.torch import load_file

        return load_file(self.file(seed, artefact))[key].to(dtype)


def _file_of(name: str) -> str:
    files = {"sigma": "sigma.safetensors", "slab": "slab.safetensors", "mesh": "mesh.glb",
             "depth": "depth.safetensors", "points": "points.safetensors", "rgb": "rgb.png",
             **{f"render_{view}": f"render_{view}.png" for view in RENDER_VIEWS}}
    if name not in files:
        raise BankError(f"unknown bank item {name!r}; choose from {sorted(files) + ['depth_cameras']}")
    return files[name]


def open_bank(path: str | os.PathLike) -> Bank:
    """Open the bank at ``path`` for reading (BankError if it is not one)."""
    return Bank(path)
