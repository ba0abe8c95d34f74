"""Triangle meshes from a sigma cube by marching cubes, and atomic saving with a JSON sidecar.

Units and axes: vertices are in world units of the tri-plane box [-L/2, L/2]^3, columns (x, y, z),
with the grid convention of ``geometry.grid``: voxel index ``(i, j, k)`` of the [x, y, z] input
array maps to ``(-L/2 + i L/(N-1), -L/2 + j L/(N-1), -L/2 + k L/(N-1))``; marching-cubes vertices
(fractional indices) use the same affine map. No axis is transposed. (EG3D gen_samples.py and the
reference's figure meshes instead flip X, transpose to (Z, Y, X) and keep voxel units or 1/N
spacing, docs/method/reference_method.md §7.9; this module writes world-unit (x, y, z) meshes only.)

Example::

    mesh = extract_mesh(sigma_xyz, level=10.0, border="eg3d")     # sigma_xyz: [N, N, N]
    save_mesh(mesh, "out/seed0042.ply", {"seed": 42, "psi": 0.7})   # + out/seed0042.ply.json
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nerfsculpt.atomic import write_atomic
from nerfsculpt.geometry.grid import index_to_world

if TYPE_CHECKING:
    import trimesh

MESH_FORMATS = (".ply", ".obj", ".glb")
UNITS = "world units of the tri-plane box [-L/2, L/2]^3; x image-right, y up, z toward the canonical camera"


@dataclass(frozen=True)
class Border:
    """Voxels overwritten on each face of an [x, y, z] sigma cube before meshing.

    Counts are given at ``reference_resolution`` and scaled to a cube of N samples as
    ``int(count * N / reference_resolution)``, the rule of EG3D and the reference.
    """

    x_low: int
    """Voxels at low X (image-left)."""
    x_high: int
    """Voxels at high X (image-right)."""
    y_low: int
    """Voxels at low Y (below the chin)."""
    y_high: int
    """Voxels at high Y (above the head)."""
    z_low: int
    """Voxels at low Z (behind the head)."""
    z_high: int
    """Voxels at high Z (toward the camera)."""
    reference_resolution: int = 256
    """Resolution at which the counts are given."""

    def voxels(self, resolution: int) -> tuple[int, int, int, int, int, int]:
        """Counts at ``resolution``: (x_low, x_high, y_low, y_high, z_low, z_high)."""
        counts = (self.x_low, self.x_high, self.y_low, self.y_high, self.z_low, self.z_high)
        return tuple(int(c * resolution / self.reference_resolution) for c in counts)


BORDER_PRESETS: dict[str, Border] = {
    # gen_samples.py: int(30 N / 256) voxels on all six faces (docs/method/eg3d.md §3.15, step 5).
    "eg3d": Border(30, 30, 30, 30, 30, 30),
    # The reference's user-study / figure meshes (docs/method/reference_method.md §7.9, `_apply_face_padding`):
    # 60 voxels on both X faces, 30 on both Y faces, 80 behind the head and 30 in front, at 256.
    # The reference also flips X (pass flip_x=True to reproduce its sigma array exactly).
    "legacy_sigma10": Border(60, 60, 30, 30, 80, 30),
}


def _resolve_border(border: Border | str | None) -> tuple[str | None, Border | None]:
    if border is None or isinstance(border, Border):
        return None, border
    if border not in BORDER_PRESETS:
        raise ValueError(
            f"unknown border preset {border!r}; choose one of {sorted(BORDER_PRESETS)} or pass a Border"
        )
    return border, BORDER_PRESETS[border]


def _sigma_to_numpy(sigma_xyz: np.ndarray | torch.Tensor) -> np.ndarray:  # [N, N, N] float32 copy
    if isinstance(sigma_xyz, torch.Tensor):
        sigma_xyz = sigma_xyz.detach().to(device="cpu", dtype=torch.float32).numpy()
    sigma = np.array(sigma_xyz, dtype=np.float32, copy=True)
    if sigma.ndim != 3 or len(set(sigma.shape)) != 1:
        raise ValueError(f"expected a cubic sigma array [N, N, N] in [x, y, z] order, got {sigma.shape}")
    if sigma.shape[0] < 2:
        raise ValueError(f"need at least 2 samples per axis, got shape {sigma.shape}")
    return sigma


def extract_mesh(
    sigma_xyz: np.ndarray | torch.Tensor,  # [N, N, N] raw sigma, [x, y, z] order
    level: float = 10.0,
    cube_length: float = 1.0,
    border: Border | str | None = None,
    border_value: float = -1000.0,
    flip_x: bool = False,
) -> trimesh.Trimesh:
    """Iso-surface ``sigma = level`` of a sigma cube as a watertight-where-closed triangle mesh.

    - ``level``: 10 is the value used by EG3D's .ply output and the reference's meshes (§7.9).
    - ``border``: ``"eg3d"``, ``"legacy_sigma10"``, a :class:`Border`, or ``None`` (nothing
      cleared). Border voxels are set to ``border_value``; clearing the faces closes surfaces
      that touch the box and removes the box-edge floaters of generated fields.
    - ``flip_x``: mirror the array along X first (EG3D gen_samples.py and the reference do this);
      borders refer to the flipped array.

    Vertices are in world units (see the module docstring); faces are oriented outward, i.e. the
    normals point toward decreasing sigma. ``mesh.metadata["nerfsculpt"]`` records the settings,
    which :func:`save_mesh` writes to the sidecar. Raises ``ValueError`` if ``level`` is not
    strictly inside the range of the (bordered) array, i.e. there is no surface.
    """
    import skimage.measure
    import trimesh

    sigma = _sigma_to_numpy(sigma_xyz)  # (N, N, N) float32, a private copy
    n = sigma.shape[0]
    if flip_x:
        sigma = np.ascontiguousarray(sigma[::-1])  # (N, N, N): x -> -x
    preset, border_spec = _resolve_border(border)
    voxels = border_spec.voxels(n) if border_spec is not None else (0,) * 6
    if border_spec is not None:
        xl, xh, yl, yh, zl, zh = voxels
        sigma[:xl] = border_value
        sigma[n - xh :] = border_value
        sigma[:, :yl] = border_value
        sigma[:, n - yh :] = border_value
        sigma[:, :, :zl] = border_value
        sigma[:, :, n - zh :] = border_value
    if not np.isfinite(sigma).all():
        raise ValueError("sigma contains NaN or inf; marching cubes needs finite values")
    lo, hi = float(sigma.min()), float(sigma.max())
    if not lo < level < hi:
        raise ValueError(
            f"no surface: level {level} is outside the sigma range [{lo:.4g}, {hi:.4g}] "
            f"(after the border); pick a level strictly inside it"
        )
    # 'ascent': the object is the high-sigma side, so faces wind outward (normals toward low sigma).
    verts_ijk, faces, _, _ = skimage.measure.marching_cubes(sigma, level=level, gradient_direction="ascent")
    verts = index_to_world(verts_ijk.astype(np.float64), n, cube_length)  # (V, 3) voxel index -> world
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
    mesh.metadata["nerfsculpt"] = {
        "level": float(level),
        "resolution": n,
        "cube_length": float(cube_length),
        "units": UNITS,
        "vertex_axes": "xyz",
        "flip_x": bool(flip_x),
        "border_preset": preset,
        "border": asdict(border_spec) if border_spec is not None else None,
        "border_voxels": list(voxels),
        "border_value": float(border_value) if border_spec is not None else None,
    }
    return mesh


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a mesh file: ``path + '.json'`` (``head.ply`` -> ``head.ply.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def save_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike, sidecar: dict[str, Any] | None = None) -> Path:
    """Write ``mesh`` as PLY, OBJ or GLB (by suffix) and its JSON sidecar, both atomically.

    The sidecar holds the extraction settings of :func:`extract_mesh` (``mesh.metadata
    ["nerfsculpt"]``), then the caller's ``sidecar`` entries (e.g. seed, psi, checkpoint; they
    win on a clash), then the file name, format and vertex/face counts. It is written first, so a
    mesh file on disk always has its sidecar. Returns the mesh path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise ValueError(f"unsupported mesh format {path.suffix!r} for {path}; use one of {MESH_FORMATS}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist; create it first")
    record = {
        **mesh.metadata.get("nerfsculpt", {}),
        **(sidecar or {}),
        "file": path.name,
        "format": suffix[1:],
        "n_vertices": len(mesh.vertices),
        "n_faces": len(mesh.faces),
    }
    try:
        text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sidecar must be JSON-serialisable (numbers, strings, lists, dicts): {e}") from e
    data = mesh.export(file_type=suffix[1:])
    write_atomic(sidecar_path(path), (text + "\n").encode())
    write_atomic(path, data.encode() if isinstance(data, str) else data)
    return path
