"""What a bank is: its configuration, its manifest, which artefacts exist, and which seeds are finished.

Layout and guarantees: ``geometry.bank`` (the package docstring). This module reads and builds; it
writes nothing (``bank.writer`` does).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from nerfsculpt._version import __version__
from nerfsculpt.camera_conventions import AVG_CAMERA_PIVOT, AVG_CAMERA_RADIUS, FOCAL_PAPER
from nerfsculpt.errors import NerfsculptError

if TYPE_CHECKING:
    from nerfsculpt.generator.builtin import GeneratorInfo
    from nerfsculpt.generator.triplane import TriPlaneGenerator
    from nerfsculpt.geometry.slab import SlabSpec

BANK_FORMAT = "nerfsculpt-bank"
BANK_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SEEDS_DIR = "seeds"
SEED_META_FILE = "meta.json"
RENDER_VIEWS = ("front", "three_quarter", "profile")  # camera.annotation_views() names

ARTEFACT_FILES: dict[str, tuple[str, ...]] = {
    "sigma": ("sigma.safetensors",),
    "slab": ("slab.safetensors",),
    "mesh": ("mesh.glb", "mesh.glb.json"),
    "depth": ("depth.safetensors",),
    "points": ("points.safetensors",),
    "renders": tuple(f"render_{view}.png" for view in RENDER_VIEWS) + ("rgb.png",),
}
"""Files of each artefact inside a seed directory (an empty mesh has none, see ``write_seed``)."""
ARTEFACTS = tuple(ARTEFACT_FILES)
DEFAULT_WHAT = ("sigma", "slab", "mesh", "depth", "renders")
NoiseMode = Literal["const", "random", "none"]
NOISE_MODES = get_args(NoiseMode)
MeshBorder = Literal["eg3d", "legacy_sigma10", "none"]  # geometry.mesh.BORDER_PRESETS
MESH_BORDERS = get_args(MeshBorder)
Grid = Literal["exact", "eg3d"]  # geometry.grid.grid_coordinates / grid_coordinates_eg3d
GRIDS = get_args(Grid)


class BankError(NerfsculptError, ValueError):
    """The bank cannot be written or read as asked; the message says what to do instead."""


# ------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class BankConfig:
    """Everything that determines a bank's contents. Saved in the manifest; re-runs must match it."""

    psi: float = 1.0
    """Truncation psi: 1.0 for the ranked seeds, 0.25 for the HQ anchors 100000-100999 (§1.1)."""
    truncation_cutoff: int | None = None
    """Number of ws truncated; None = all of them (G.num_ws, 14 for EG3D FFHQ, as in §0.2)."""
    noise_mode: NoiseMode = "const"
    """Backbone noise: 'const' in every geometry extraction of the paper (§0.2)."""
    focal: float = FOCAL_PAPER
    """Normalised focal of every camera, conditioning included: the paper's 4.26339 (§0.3)."""
    resolution: int = 256
    """Samples per axis of the full sigma grid over the tri-plane box (sigma and mesh; §1.4, §7.9)."""
    slab_resolution: int = 256
    """Grid resolution the reward slab is cut from (§1.2: 256 -> slab [128, 141, 129])."""
    mesh_level: float = 10.0
    """Iso-level of the mesh in raw sigma (EG3D and the reference: 10, §7.9)."""
    mesh_border: MeshBorder = "eg3d"
    """Faces cleared before marching cubes: 'eg3d' (30/256 on all faces), 'legacy_sigma10', 'none'."""
    depth_resolution: int = 128
    """Side of the depth maps from the three dmap cameras (§2.1: 128)."""
    n_points: int = 2048
    """Points per point cloud (§2.3: 2048)."""
    render_resolution: int = 256
    """Side of the shaded geometry renders shown to annotators."""
    grid: Grid = "exact"
    """Points of the full sigma grid (sigma, mesh, renders): 'exact' or 'eg3d' (EG3D's ``create_samples``)."""
    slab_grid: Grid = "eg3d"
    """Points of the reward slab: 'eg3d', those the reference's data (and its released reward model)
    used (§1.2, up to ~0.9 voxel off the exact grid in x and y), or 'exact'."""

    def __post_init__(self) -> None:
        errors = []
        if not (isinstance(self.psi, int | float) and math.isfinite(self.psi)):
            errors.append(f"psi must be a finite number, got {self.psi!r}")
        if self.truncation_cutoff is not None and not self.truncation_cutoff >= 1:
            errors.append(f"truncation cutoff must be >= 1 (or unset for all ws), got {self.truncation_cutoff}")
        if self.noise_mode not in NOISE_MODES:
            errors.append(f"noise mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if not self.focal > 0:
            errors.append(f"focal must be positive, got {self.focal}")
        for name in ("resolution", "slab_resolution", "depth_resolution", "n_points", "render_resolution"):
            if not getattr(self, name) >= 2:
                errors.append(f"{name.replace('_', ' ')} must be >= 2, got {getattr(self, name)}")
        for name in ("grid", "slab_grid"):
            if getattr(self, name) not in GRIDS:
                errors.append(f"{name.replace('_', ' ')} must be one of {GRIDS}, got {getattr(self, name)!r}")
        if self.mesh_border not in MESH_BORDERS:
            errors.append(f"mesh border must be one of {MESH_BORDERS}, got {self.mesh_border!r}")
        if errors:
            raise ValueError("; ".join(errors))

    def check_what(self, what: Sequence[str]) -> None:
        """Raise ValueError if the artefacts ``what`` cannot be made with these settings."""
        pixels = self.depth_resolution**2
        if "points" in what and self.n_points > pixels:
            raise ValueError(f"n points {self.n_points} exceeds the {self.depth_resolution}x{self.depth_resolution} "
                             f"= {pixels} pixels of the depth map; lower --n-points or raise --depth-resolution")

    @property
    def slab_spec(self) -> SlabSpec:
        """The reference's crop (pads_vals_entire.yaml) at ``slab_resolution``."""
        from nerfsculpt.geometry.slab import REWARD_SLAB

        return dataclasses.replace(REWARD_SLAB, resolution=self.slab_resolution)


def parse_what(text: str) -> tuple[str, ...]:
    """``"slab,mesh"`` -> ``('slab', 'mesh')`` in canonical order; ``"all"`` -> every artefact."""
    names = [item.strip() for item in text.split(",") if item.strip()]
    if names == ["all"]:
        return ARTEFACTS
    unknown = [name for name in names if name not in ARTEFACT_FILES]
    if unknown or not names:
        raise ValueError(f"unknown artefact(s) {unknown or [text]} in --what {text!r}; "
                         f"choose from {','.join(ARTEFACTS)} or 'all'")
    return tuple(name for name in ARTEFACTS if name in names)


def seed_dir_name(seed: int) -> str:
    """``20000`` -> ``'020000'`` (six digits, more for larger seeds)."""
    return f"{seed:06d}"


# ------------------------------------------------------------------------------------------------
# Manifest


def build_manifest(
    G: TriPlaneGenerator,
    info: GeneratorInfo,
    config: BankConfig,
    what: Sequence[str],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """The manifest of a bank of ``seeds`` x ``what`` from ``G`` (JSON-serialisable)."""
    from nerfsculpt.camera import annotation_views, canonical_camera, dmap_cameras
    from nerfsculpt.geometry.shading import ClayShading

    cutoff = config.truncation_cutoff if config.truncation_cutoff is not None else G.num_ws
    if cutoff > G.num_ws:
        raise BankError(f"truncation cutoff {cutoff} exceeds the generator's {G.num_ws} ws; "
                        f"pass --truncation-cutoff all or a value <= {G.num_ws}")
    box = float(G.rendering_kwargs["box_warp"])
    spec = dataclasses.replace(config.slab_spec, cube_length=box)  # the crop is of the tri-plane box
    dmap = dmap_cameras(focal=config.focal)
    views = annotation_views(focal=config.focal)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {
        "format": BANK_FORMAT,
        "format_version": BANK_FORMAT_VERSION,
        "nerfsculpt_version": __version__,
        "created": now,
        "generator": info.to_dict(),
        "sampling": {
            "z": "numpy.random.RandomState(seed).randn(1, z_dim), cast to float32",
            "z_dim": G.z_dim,
            "psi": float(config.psi),
            "truncation_cutoff": int(cutoff),
            "noise_mode": config.noise_mode,
            "conditioning": {
                "camera": "canonical", "radius": AVG_CAMERA_RADIUS, "pivot": list(AVG_CAMERA_PIVOT),
                "focal": config.focal, "label": canonical_camera(focal=config.focal)[0].tolist(),
            },
        },
        "extraction": {
            "sigma": {"resolution": config.resolution, "cube_length": box, "grid": config.grid, "order": "xyz",
                      "dtype": "float16", "values": "raw sigma (decoder channel 0, no activation)"},
            "slab": {"spec": dataclasses.asdict(spec), "shape": list(spec.shape), "grid": config.slab_grid,
                     "order": "xyz", "dtype": "float16", "values": "raw sigma (decoder channel 0, no activation)"},
            "mesh": {"resolution": config.resolution, "grid": config.grid, "level": config.mesh_level,
                     "border": config.mesh_border, "cube_length": box, "format": "glb"},
            "depth": {"resolution": config.depth_resolution, "cameras": list(dmap.names),
                      "labels": dmap.render.tolist(), "dtype": "float32",
                      "ray_sampling": "deterministic (stratum centres, evenly spaced importance quantiles)"},
            "points": {"n_points": config.n_points, "camera": "front", "resolution": config.depth_resolution,
                       "subsample": "linspace", "units": "world (not normalised)"},
            "renders": {"resolution": config.render_resolution, "supersample": 2, "views": list(views.names),
                        "labels": views.render.tolist(), "surface": "sigma = level, the mesh's surface",
                        "grid_resolution": config.resolution, "level": config.mesh_level,
                        "border": config.mesh_border, "cube_length": box, "background": "white",
                        "shading": dataclasses.asdict(ClayShading()),
                        "rgb": {"camera": "canonical", "resolution": G.img_resolution,
                                "ray_sampling": "deterministic"}},
        },
        "config": dataclasses.asdict(config),
        "what": [name for name in ARTEFACTS if name in what],
        "seeds": list(seeds),
    }


def _identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """The parts of a manifest that must agree for two runs to write into one bank."""
    generator = manifest.get("generator", {})
    return json.loads(json.dumps({
        "format_version": manifest.get("format_version"),
        "generator.fingerprint": generator.get("fingerprint"),
        "generator.network": generator.get("network"),
        "generator.config": generator.get("config"),
        "sampling": manifest.get("sampling"),
        "extraction": manifest.get("extraction"),
    }))


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(set(old) | set(new), key=str)
                for line in _differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))]
    if old != new:
        return [f"{prefix}: bank has {_short_json(old)}, this run has {_short_json(new)}"]
    return []


def _short_json(value: Any, width: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the bank at ``path``; BankError if there is none or it is not a bank's."""
    manifest_path = Path(path) / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BankError(
            f"{path} is not a sample bank (no {MANIFEST_FILE}); create one with 'nerfsculpt sample'"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise BankError(f"{manifest_path}: unreadable ({e}); restore it or write a new bank") from e
    if manifest.get("format") != BANK_FORMAT:
        raise BankError(f"{manifest_path} is not a {BANK_FORMAT} manifest")
    if manifest.get("format_version", 0) > BANK_FORMAT_VERSION:
        raise BankError(f"{manifest_path}: bank format {manifest['format_version']} is newer than this "
                        f"nerfsculpt reads ({BANK_FORMAT_VERSION}); upgrade nerfsculpt")
    return manifest


def merge_manifest(path: str | os.PathLike, new: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The manifest a run described by ``new`` leaves at ``path``, and whether it differs from disk.

    A new bank gets ``new``. An existing one must have the same generator weights and config,
    sampling and extraction parameters (else BankError listing the differences); its ``what`` and
    ``seeds`` grow to include this run's. Nothing is written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BankError(f"--out {path} exists and is not a directory; choose another path")
    if not (path / MANIFEST_FILE).exists():
        if path.is_dir() and any(path.iterdir()):
            raise BankError(f"--out {path} is a non-empty directory without {MANIFEST_FILE}, not a bank; "
                            "choose a new or empty directory")
        return new, True
    old = read_manifest(path)
    differences = _differences(_identity(old), _identity(new))
    if differences:
        raise BankError(
            f"{path} was written with other settings; refusing to mix banks:\n  - " + "\n  - ".join(differences)
            + f"\nWrite to a new --out directory, or re-run with the bank's settings (see {path / MANIFEST_FILE})."
        )
    merged = dict(old)
    merged["what"] = [name for name in ARTEFACTS if name in old["what"] or name in new["what"]]
    known = set(old["seeds"])
    merged["seeds"] = old["seeds"] + [seed for seed in new["seeds"] if seed not in known]
    return merged, merged != old


# ------------------------------------------------------------------------------------------------
# Finished seeds


def read_seed_meta(seed_dir: Path) -> dict[str, Any] | None:
    """A seed's ``meta.json``, or None if it is missing or unreadable (then the seed is redone)."""
    try:
        meta = json.loads((seed_dir / SEED_META_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("artefacts"), dict) else None


def finished_artefacts(seed_dir: Path, meta: dict[str, Any] | None = None) -> set[str]:
    """Artefacts of a seed whose files all exist with the sizes ``meta.json`` records."""
    meta = read_seed_meta(seed_dir) if meta is None else meta
    if meta is None:
        return set()
    done = set()
    for name, entry in meta["artefacts"].items():
        files = entry.get("files", {}) if isinstance(entry, dict) else None
        if isinstance(files, dict) and all(
            (seed_dir / file).is_file() and (seed_dir / file).stat().st_size == record.get("bytes")
            for file, record in files.items()
        ):
            done.add(name)
    return done


def plan_bank(path: str | os.PathLike, seeds: Iterable[int], what: Sequence[str]) -> list[tuple[int, list[str]]]:
    """``(seed, artefacts still to write)`` for every seed that is not finished for ``what``."""
    seeds_dir = Path(path) / SEEDS_DIR
    todo = []
    for seed in seeds:
        done = finished_artefacts(seeds_dir / seed_dir_name(seed))
        missing = [name for name in what if name not in done]
        if missing:
            todo.append((seed, missing))
    return todo
