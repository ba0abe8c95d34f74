"""Writing a bank: the manifest, then each seed's artefacts, crash-safe and resumable, under torch.distributed.

Layout and guarantees: ``geometry.bank`` (the package docstring).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nerfsculpt.atomic import png_bytes, remove_temporaries, write_atomic
from nerfsculpt.distributed import world
from nerfsculpt.geometry.bank.manifest import (
    ARTEFACTS,
    BANK_FORMAT_VERSION,
    DEFAULT_WHAT,
    MANIFEST_FILE,
    SEED_META_FILE,
    SEEDS_DIR,
    BankConfig,
    BankError,
    build_manifest,
    finished_artefacts,
    merge_manifest,
    plan_bank,
    read_seed_meta,
    seed_dir_name,
)
from nerfsculpt.geometry.slab import SlabSpec

if TYPE_CHECKING:
    from nerfsculpt.generator.builtin import GeneratorInfo
    from nerfsculpt.generator.triplane import TriPlaneGenerator

logger = logging.getLogger(__name__)


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


def prepare_bank(path: str | os.PathLike, new: dict[str, Any]) -> dict[str, Any]:
    """Create or extend the bank at ``path`` for a run described by ``new`` (see ``merge_manifest``)."""
    merged, changed = merge_manifest(path, new)
    if changed:
        merged = {**merged, "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        (Path(path) / SEEDS_DIR).mkdir(parents=True, exist_ok=True)
        _write_atomic(Path(path) / MANIFEST_FILE, _json_bytes(merged))
    return merged


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
