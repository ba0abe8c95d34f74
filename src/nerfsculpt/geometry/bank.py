"""Sample banks: per-seed geometry artefacts of one generator, resumable and shardable.

A bank is a directory::

    bank/manifest.json              what the bank is: generator (fingerprint, config), sampling
                                    (seed -> z, psi, truncation cutoff, noise mode, conditioning camera),
                                    extraction parameters of every artefact, `what`, `seeds`
    bank/seeds/020000/
        sigma.safetensors           "sigma"  float16 [R, R, R], raw sigma on the grid, [x, y, z] order
        slab.safetensors            "slab"   float16 [128, 141, 129], raw sigma of the reward slab,
                                             (X, Y, Z) order (docs/method/reference_method.md §1.2-1.3; the reward
                                             model's (Z, Y, X) layout is `slab.slab_to_model_order`)
        mesh.glb, mesh.glb.json     iso-surface sigma = 10 in world units + its extraction sidecar
        depth.safetensors           "depth"  float32 [3, 1, 128, 128] from the dmap cameras (§2.1),
                                    "cameras" float32 [3, 25] their labels (names in the metadata)
        points.safetensors          "points" float32 [2048, 3] world-space point cloud (§2.3)
        render_front.png, render_three_quarter.png, render_profile.png   shaded geometry, uint8 RGB
        rgb.png                     the generator's image from the canonical camera
        meta.json                   written last: the seed and the size and sha256 of every file

Seed ``s`` means ``z = numpy.random.RandomState(s).randn(1, z_dim)`` (docs/method/reference_method.md §0.2), mapped
with the canonical camera as conditioning (§0.3) and truncated with ``psi`` over the first
``truncation_cutoff`` ws (default all of them, EG3D FFHQ: 14).

A seed is finished iff its ``meta.json`` exists and lists every requested artefact with files of the
recorded sizes. Every file is written to a temporary name and moved into place with ``os.replace``,
and ``meta.json`` goes last, so an interrupted run leaves nothing that looks finished; re-running
redoes exactly what is missing. One writer per bank at a time (one process, or one torchrun job).

Example::

    G, info = resolve_generator("tiny-random", "cpu")      # random weights: noise shapes, level 0
    config = BankConfig(resolution=32, slab_resolution=32, mesh_level=0.0, depth_resolution=32,
                        n_points=256, render_resolution=64)
    write_bank("bank", G, info, config, seeds=range(4), what=ARTEFACTS)
    bank = open_bank("bank")
    slab = bank.load(0, "slab")          # [16, 18, 17] (X, Y, Z) float32
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from nerfsculpt import __version__
from nerfsculpt.atomic import png_bytes, remove_temporaries, write_atomic
from nerfsculpt.camera import AVG_CAMERA_PIVOT, AVG_CAMERA_RADIUS, FOCAL_PAPER
from nerfsculpt.distributed import world
from nerfsculpt.errors import NerfsculptError
from nerfsculpt.geometry.slab import REWARD_SLAB, SlabSpec

if TYPE_CHECKING:
    from nerfsculpt.generator.builtin import GeneratorInfo
    from nerfsculpt.generator.triplane import TriPlaneGenerator

logger = logging.getLogger(__name__)

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
NOISE_MODES = ("const", "random", "none")
MESH_BORDERS = ("eg3d", "legacy_sigma10", "none")
GRIDS = ("exact", "eg3d")  # geometry.grid.grid_coordinates / grid_coordinates_eg3d


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
    noise_mode: str = "const"
    """Backbone noise: 'const' in every geometry extraction of the paper (§0.2)."""
    focal: float = FOCAL_PAPER
    """Normalised focal of every camera, conditioning included: the paper's 4.26339 (§0.3)."""
    resolution: int = 256
    """Samples per axis of the full sigma grid over the tri-plane box (sigma and mesh; §1.4, §7.9)."""
    slab_resolution: int = 256
    """Grid resolution the reward slab is cut from (§1.2: 256 -> slab [128, 141, 129])."""
    mesh_level: float = 10.0
    """Iso-level of the mesh in raw sigma (EG3D and the reference: 10, §7.9)."""
    mesh_border: str = "eg3d"
    """Faces cleared before marching cubes: 'eg3d' (30/256 on all faces), 'legacy_sigma10', 'none'."""
    depth_resolution: int = 128
    """Side of the depth maps from the three dmap cameras (§2.1: 128)."""
    n_points: int = 2048
    """Points per point cloud (§2.3: 2048)."""
    render_resolution: int = 256
    """Side of the shaded geometry renders shown to annotators."""
    grid: str = "exact"
    """Points of the full sigma grid (sigma, mesh, renders): 'exact' or 'eg3d' (EG3D's ``create_samples``)."""
    slab_grid: str = "eg3d"
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


def prepare_bank(path: str | os.PathLike, new: dict[str, Any]) -> dict[str, Any]:
    """Create or extend the bank at ``path`` for a run described by ``new`` (see ``merge_manifest``)."""
    merged, changed = merge_manifest(path, new)
    if changed:
        merged = {**merged, "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        (Path(path) / SEEDS_DIR).mkdir(parents=True, exist_ok=True)
        _write_atomic(Path(path) / MANIFEST_FILE, _json_bytes(merged))
    return merged


# ------------------------------------------------------------------------------------------------
# Files


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, allow_nan=False) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` crash-safely (``atomic.write_atomic``); returns its size and sha256 record."""
    write_atomic(path, data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _file_record(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _safetensors_bytes(tensors: dict[str, Tensor], metadata: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    tensors = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    return save(tensors, metadata={key: str(value) for key, value in metadata.items()})


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


# ------------------------------------------------------------------------------------------------
# Writing one seed


def seed_latent(G: TriPlaneGenerator, seed: int, manifest: dict[str, Any], device: torch.device) -> Tensor:
    """ws [1, num_ws, w_dim] of ``seed`` under the manifest's sampling (§0.2-0.3)."""
    from nerfsculpt.latents import z_from_seed

    sampling = manifest["sampling"]
    z = z_from_seed(seed, G.z_dim, device=device)  # (1, z_dim)
    c = torch.tensor([sampling["conditioning"]["label"]], dtype=torch.float32, device=device)  # (1, 25)
    return G.mapping(z, c, truncation_psi=sampling["psi"], truncation_cutoff=sampling["truncation_cutoff"])


@dataclass
class _SeedJob:
    """One seed being written: its latent, directory and the bank's parameters."""

    G: TriPlaneGenerator
    seed: int
    ws: Tensor  # [1, num_ws, w_dim]
    seed_dir: Path
    manifest: dict[str, Any]
    chunk_points: int

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest["extraction"]

    @property
    def noise_mode(self) -> str:
        return self.manifest["sampling"]["noise_mode"]

    @property
    def focal(self) -> float:
        return self.manifest["sampling"]["conditioning"]["focal"]

    @property
    def tags(self) -> dict[str, Any]:
        """Recorded in every file's metadata / sidecar."""
        return {"seed": self.seed, "psi": self.manifest["sampling"]["psi"],
                "generator_fingerprint": self.manifest["generator"]["fingerprint"]}

    def save_tensors(self, file: str, tensors: dict[str, Tensor], **info: Any) -> dict[str, Any]:
        data = _safetensors_bytes(tensors, {**self.tags, **info})
        return {"files": {file: _write_atomic(self.seed_dir / file, data)},
                "shapes": {key: list(value.shape) for key, value in tensors.items()}}


@torch.no_grad()
def write_seed(
    G: TriPlaneGenerator,
    seed: int,
    what: Sequence[str],
    bank: str | os.PathLike,
    manifest: dict[str, Any],
    chunk_points: int = 1 << 20,
    rank: int = 0,
) -> dict[str, Any]:
    """Compute the artefacts ``what`` of one seed, write them, then its ``meta.json``. Returns the meta.

    Artefacts already finished and not in ``what`` are kept. ws are computed once per seed. The
    sigma grid is computed once and shared by sigma, mesh, renders and (when it has the slab's
    resolution and points) the slab. The extraction functions take ws and run the backbone
    themselves, so it runs once per call (grid, slab if not cropped, depth, RGB): cheap next to
    the grid, and not shareable through their API.
    """
    start = datetime.datetime.now(datetime.UTC)
    seed_dir = Path(bank) / SEEDS_DIR / seed_dir_name(seed)
    seed_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(seed_dir)
    old = read_seed_meta(seed_dir)
    entries = {name: old["artefacts"][name] for name in finished_artefacts(seed_dir, old)} if old else {}
    ws = seed_latent(G, seed, manifest, next(G.parameters()).device)  # (1, num_ws, w_dim)
    job = _SeedJob(G, seed, ws, seed_dir, manifest, chunk_points)
    if {"sigma", "slab", "mesh", "renders"} & set(what):
        entries.update(_write_grid_artefacts(job, what))
    if {"depth", "points"} & set(what):
        entries.update(_write_depth_artefacts(job, what))
    meta = {
        "seed": seed,
        "format_version": BANK_FORMAT_VERSION,
        "generator_fingerprint": manifest["generator"]["fingerprint"],
        "artefacts": {name: entries[name] for name in ARTEFACTS if name in entries},
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rank": rank,
        "seconds": round((datetime.datetime.now(datetime.UTC) - start).total_seconds(), 3),
    }
    _write_atomic(seed_dir / SEED_META_FILE, _json_bytes(meta))  # last: the seed's completion marker
    return meta


def _write_grid_artefacts(job: _SeedJob, what: Sequence[str]) -> dict[str, Any]:
    """sigma, slab, mesh and renders, all from one sigma grid where possible."""
    from nerfsculpt.geometry import sigma
    from nerfsculpt.geometry.slab import crop_reward_slab

    grid_params, slab_params = job.params["sigma"], job.params["slab"]
    spec = SlabSpec(**slab_params["spec"])
    # The slab is a crop of the grid when both sample the same points.
    slab_in_grid = spec.resolution == grid_params["resolution"] and slab_params["grid"] == grid_params["grid"]
    entries: dict[str, Any] = {}
    grid = None
    if {"sigma", "mesh", "renders"} & set(what):
        grid = sigma.sigma_grid(job.G, job.ws, resolution=grid_params["resolution"], chunk_points=job.chunk_points,
                                noise_mode=job.noise_mode, eg3d_grid=grid_params["grid"] == "eg3d",
                                seeds=[job.seed])[0]  # (R, R, R) [x, y, z], checked finite
    if "sigma" in what:
        entries["sigma"] = job.save_tensors("sigma.safetensors", {"sigma": _as_float16(grid, job.seed)},
                                            order="xyz", values=grid_params["values"])
    if "slab" in what:
        if grid is not None and slab_in_grid:
            slab = crop_reward_slab(grid, spec)  # (X, Y, Z): the points sigma.reward_slab samples
        else:
            slab = sigma.reward_slab(job.G, job.ws, spec=spec, chunk_points=job.chunk_points, noise_mode=job.noise_mode,
                                     eg3d_grid=slab_params["grid"] == "eg3d",
                                     seeds=[job.seed])[0]  # (X, Y, Z), checked finite
        entries["slab"] = job.save_tensors("slab.safetensors", {"slab": _as_float16(slab, job.seed)},
                                           order="xyz", values=slab_params["values"])
    if "mesh" in what:
        entries["mesh"] = _write_mesh(grid, job.seed_dir, job.params["mesh"], job.tags)
    if "renders" in what:
        entries["renders"] = _write_renders(job, grid)
    return entries


def _write_depth_artefacts(job: _SeedJob, what: Sequence[str]) -> dict[str, Any]:
    """Depth maps from the three dmap cameras (§2.1) and the front view's point cloud (§2.3)."""
    from nerfsculpt.camera import dmap_cameras
    from nerfsculpt.geometry import views

    cameras = dmap_cameras(focal=job.focal, device=job.ws.device)
    front = cameras.names.index("front")  # the canonical camera, the point clouds' view
    labels = cameras.render if "depth" in what else cameras.render[front : front + 1]  # (V, 25)
    depth = views.render_depth(job.G, job.ws, labels, resolution=job.params["depth"]["resolution"],
                               noise_mode=job.noise_mode)[0]  # (V, 1, R, R), deterministic ray sampling
    entries: dict[str, Any] = {}
    if "depth" in what:
        entries["depth"] = job.save_tensors(
            "depth.safetensors", {"depth": depth.float(), "cameras": cameras.render.float()},
            camera_names=json.dumps(list(cameras.names)), units="distance along the unit ray, world units",
        )
    if "points" in what:
        view = front if "depth" in what else 0
        points = views.depth_to_points(depth[view : view + 1], labels[view : view + 1])  # (1, R*R, 3)
        points = views.subsample_points(points, job.params["points"]["n_points"])  # (1, P, 3), linspace
        entries["points"] = job.save_tensors("points.safetensors", {"points": points[0].float()},
                                             units="world", camera="front")
    return entries


def _write_renders(job: _SeedJob, grid: Tensor) -> dict[str, Any]:
    """Clay renders of the mesh's surface from the annotation views, and the generator's RGB image."""
    from nerfsculpt.camera import annotation_views, canonical_camera
    from nerfsculpt.geometry import shading

    params = job.params["renders"]
    views = annotation_views(focal=job.focal, device=grid.device)
    cube = shading.clear_border(grid, None if params["border"] == "none" else params["border"])  # (R, R, R)
    surface = shading.trace_level_surface(cube, views, params["resolution"] * params["supersample"],
                                          params["level"], params["cube_length"])
    images = shading.shade_surface(surface, views, shading.ClayShading(**params["shading"]),
                                   params["supersample"], "white")  # (V, H, W, 3) uint8
    rgb = shading.render_rgb(job.G, job.ws, canonical_camera(focal=job.focal, device=grid.device),
                             noise_mode=job.noise_mode)[0]  # (H, W, 3) uint8
    files = {f"render_{view}.png": _write_atomic(job.seed_dir / f"render_{view}.png", png_bytes(image))
             for view, image in zip(views.names, images, strict=True)}
    files["rgb.png"] = _write_atomic(job.seed_dir / "rgb.png", png_bytes(rgb))
    return {"files": files}


def _as_float16(sigma: Tensor, seed: int) -> Tensor:
    """Cast raw sigma to float16 for storage (as the reference did, §1.3), refusing overflow."""
    half = sigma.to(torch.float16)
    if not bool(torch.isfinite(half).all()):
        raise BankError(f"seed {seed}: sigma exceeds the float16 range (|sigma| > 65504); "
                        "this checkpoint's densities cannot be stored in a bank")
    return half


def _write_mesh(grid: Tensor, seed_dir: Path, params: dict[str, Any], tags: dict[str, Any]) -> dict[str, Any]:
    """Mesh of one sigma cube [R, R, R]; a field with no surface at the level gives an empty entry."""
    from nerfsculpt.geometry.mesh import extract_mesh, save_mesh, sidecar_path

    border = None if params["border"] == "none" else params["border"]
    try:
        mesh = extract_mesh(grid, level=params["level"], cube_length=params["cube_length"], border=border)
    except ValueError as e:  # no surface: every sigma is below (or above) the level
        logger.warning("seed %s: no mesh (%s)", tags["seed"], e)
        return {"files": {}, "empty": True, "reason": str(e)}
    path = save_mesh(mesh, seed_dir / "mesh.glb", tags)
    files = {path.name: _file_record(path), sidecar_path(path).name: _file_record(sidecar_path(path))}
    return {"files": files, "n_vertices": len(mesh.vertices), "n_faces": len(mesh.faces)}


# ------------------------------------------------------------------------------------------------
# Writing a bank (single process or torch.distributed)


@dataclass
class BankRunReport:
    """What one call of :func:`write_bank` did (this process's share when distributed)."""

    requested: int
    """Seeds requested."""
    already_finished: int
    """Requested seeds that were finished before the run."""
    written: int
    """Seeds written by all processes together."""
    empty_meshes: list[int]
    """Seeds this process wrote whose sigma field has no surface at the mesh level."""


def _broadcast_from_rank0(value: Any) -> Any:
    import torch.distributed as dist

    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def write_bank(
    path: str | os.PathLike,
    G: TriPlaneGenerator,
    info: GeneratorInfo,
    config: BankConfig,
    seeds: Sequence[int],
    what: Sequence[str] = DEFAULT_WHAT,
    chunk_points: int = 1 << 20,
    progress: bool = True,
) -> BankRunReport:
    """Write (or complete) the bank at ``path``: every seed x artefact not already finished.

    Under ``torch.distributed`` (e.g. torchrun) call it on every rank with the same arguments:
    rank 0 checks and writes the manifest and lists the unfinished seeds, then the list is
    sharded ``todo[rank::world_size]`` (each seed is written by exactly one rank) and all ranks
    meet at a final barrier. Raises BankError (on every rank) if the bank has other settings.
    """
    import torch.distributed as dist
    from tqdm import tqdm

    rank, n_ranks = world()
    seeds = list(dict.fromkeys(seeds))  # a seed listed twice would be written by two ranks at once
    what = [name for name in ARTEFACTS if name in what]
    config.check_what(what)
    shared: tuple[str, Any, Any]
    if rank == 0:
        try:
            manifest = prepare_bank(path, build_manifest(G, info, config, what, seeds))
            shared = ("ok", manifest, plan_bank(path, seeds, what))
        except BankError as e:
            shared = ("error", str(e), None)
    else:
        shared = ("", None, None)
    status, manifest, todo = _broadcast_from_rank0(shared)
    if status == "error":
        raise BankError(manifest)
    finished = len(seeds) - len(todo)
    if rank == 0:
        logger.info("bank %s: %d of %d seeds already finished, %d to write on %d process(es)",
                    path, finished, len(seeds), len(todo), n_ranks)
    report = BankRunReport(requested=len(seeds), already_finished=finished, written=0, empty_meshes=[])
    shard = todo[rank::n_ranks]
    for seed, missing in tqdm(shard, desc=f"bank seeds (rank 0 of {n_ranks})" if n_ranks > 1 else "bank seeds",
                              unit="seed", disable=not progress or rank != 0 or not shard, dynamic_ncols=True):
        meta = write_seed(G, seed, missing, path, manifest, chunk_points=chunk_points, rank=rank)
        logger.debug("rank %d wrote seed %d (%s)", rank, seed, ",".join(missing))
        report.written += 1
        if meta["artefacts"].get("mesh", {}).get("empty"):
            report.empty_meshes.append(seed)
    if n_ranks > 1:
        written = torch.tensor([report.written], device=next(G.parameters()).device)
        dist.all_reduce(written)  # also the final barrier: every rank has finished its shard
        report.written = int(written.item())
    return report


# ------------------------------------------------------------------------------------------------
# Reading


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
