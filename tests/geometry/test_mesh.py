import json
import math
import os

import numpy as np
import pytest
import torch
import trimesh

from nerfsculpt.geometry import mesh as mesh_module
from nerfsculpt.geometry.grid import grid_coordinates
from nerfsculpt.geometry.mesh import BORDER_PRESETS, Border, extract_mesh, save_mesh, sidecar_path

N = 48
VOXEL = 1 / (N - 1)


def ellipsoid_sigma(
    n: int = N, centre=(0.0, 0.0, 0.0), radii=(0.3, 0.3, 0.3), level: float = 10.0
) -> np.ndarray:  # [n, n, n] in [x, y, z] order
    """sigma = level + 100 (1 - |(p - c) / r|): above `level` inside, exactly `level` on the surface."""
    xyz = grid_coordinates(n, dtype=torch.float64).numpy()  # (n^3, 3)
    q = np.linalg.norm((xyz - np.asarray(centre)) / np.asarray(radii), axis=1)
    return (level + 100.0 * (1.0 - q)).reshape(n, n, n)


def test_sphere_radius_watertight_volume_orientation():
    r0 = 0.3
    mesh = extract_mesh(ellipsoid_sigma(radii=(r0,) * 3), level=10.0)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - r0).max() < VOXEL
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * r0**3, rel=0.02)
    # Outward faces: positive signed volume and normals pointing away from the centre (high sigma).
    assert mesh.volume > 0
    assert (np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center) > 0).all()


def test_vertices_are_world_xyz_without_transposition():
    centre, radii = (0.1, -0.05, 0.2), (0.25, 0.15, 0.1)
    mesh = extract_mesh(ellipsoid_sigma(centre=centre, radii=radii))
    lo, hi = mesh.bounds
    np.testing.assert_allclose((lo + hi) / 2, centre, atol=VOXEL)
    np.testing.assert_allclose((hi - lo) / 2, radii, atol=VOXEL)


def test_cube_length_scales_vertices():
    sigma = ellipsoid_sigma(centre=(0.1, 0.0, 0.0), radii=(0.2, 0.2, 0.2))
    a, b = extract_mesh(sigma), extract_mesh(sigma, cube_length=2.0)
    np.testing.assert_allclose(b.vertices, 2 * a.vertices, atol=1e-12)


def test_flip_x_mirrors_the_shape_and_keeps_orientation():
    mesh = extract_mesh(ellipsoid_sigma(centre=(0.15, 0.05, -0.1), radii=(0.1, 0.1, 0.1)), flip_x=True)
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), (-0.15, 0.05, -0.1), atol=VOXEL)
    assert mesh.volume > 0 and mesh.metadata["nerfsculpt"]["flip_x"] is True


def test_torch_and_numpy_inputs_agree():
    sigma = ellipsoid_sigma(n=24)
    a = extract_mesh(sigma)
    b = extract_mesh(torch.from_numpy(sigma).float().requires_grad_())
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)
    assert np.array_equal(a.faces, b.faces)


def test_input_is_not_modified():
    sigma = ellipsoid_sigma(n=24)
    before = sigma.copy()
    extract_mesh(sigma, border="eg3d", flip_x=True)
    assert np.array_equal(sigma, before)


# ---- borders -----------------------------------------------------------------------------------


def test_border_voxel_counts():
    assert BORDER_PRESETS["eg3d"].voxels(256) == (30,) * 6
    assert BORDER_PRESETS["eg3d"].voxels(512) == (60,) * 6  # int(30 * 512 / 256), eg3d.md §3.15
    assert BORDER_PRESETS["legacy_sigma10"].voxels(256) == (60, 60, 30, 30, 80, 30)  # §7.9
    assert BORDER_PRESETS["legacy_sigma10"].voxels(64) == (15, 15, 7, 7, 20, 7)
    assert Border(1, 2, 3, 4, 5, 6, reference_resolution=10).voxels(20) == (2, 4, 6, 8, 10, 12)


def test_border_closes_a_surface_that_touches_the_box():
    xyz = grid_coordinates(N, dtype=torch.float64).numpy().reshape(N, N, N, 3)
    sigma = 10.0 + 100.0 * (-0.2 - xyz[..., 0])  # dense for x < -0.2: open at the x = -0.5 face
    assert not extract_mesh(sigma).is_watertight
    closed = extract_mesh(sigma, border="eg3d")  # int(30 * 48 / 256) = 5 voxels cleared per face
    assert closed.is_watertight and closed.volume > 0
    # The new faces lie between the last cleared sample (index 4) and the first kept one (index 5).
    last_cleared = 0.5 - 4 * VOXEL
    assert closed.vertices.min() > -last_cleared and closed.vertices.max() < last_cleared
    assert closed.bounds[0, 0] < -0.5 + 5 * VOXEL
    assert closed.metadata["nerfsculpt"]["border_voxels"] == [5] * 6


def test_legacy_border_is_asymmetric_in_z():
    # A small sphere behind the head survives the eg3d border but not the legacy 80-voxel back pad.
    sigma = ellipsoid_sigma(n=64, centre=(0.0, 0.0, -0.3), radii=(0.08, 0.08, 0.08))
    assert extract_mesh(sigma, border="eg3d").is_watertight
    with pytest.raises(ValueError, match="no surface"):
        extract_mesh(sigma, border="legacy_sigma10")  # z < -0.5 + 20/63 = -0.18 is cleared
    front = ellipsoid_sigma(n=64, centre=(0.0, 0.0, 0.3), radii=(0.08, 0.08, 0.08))
    assert extract_mesh(front, border="legacy_sigma10").is_watertight


def test_border_value_is_configurable():
    sigma = ellipsoid_sigma(n=24)
    mesh = extract_mesh(sigma, border=Border(2, 2, 2, 2, 2, 2, reference_resolution=24), border_value=0.0)
    assert mesh.metadata["nerfsculpt"]["border_value"] == 0.0 and mesh.is_watertight


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [111.0, -500.0])
def test_no_surface_error(level):
    with pytest.raises(ValueError, match="no surface"):
        extract_mesh(ellipsoid_sigma(n=16), level=level)


def test_bad_inputs():
    with pytest.raises(ValueError, match="cubic"):
        extract_mesh(np.zeros((8, 8, 9)))
    with pytest.raises(ValueError, match="NaN"):
        sigma = ellipsoid_sigma(n=8)
        sigma[0, 0, 0] = np.nan
        extract_mesh(sigma)
    with pytest.raises(ValueError, match="unknown border preset"):
        extract_mesh(ellipsoid_sigma(n=8), border="gen_videos")


# ---- saving ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_save_round_trip(tmp_path, suffix):
    mesh = extract_mesh(ellipsoid_sigma(n=24, centre=(0.05, 0.0, 0.1), radii=(0.3, 0.2, 0.25)))
    path = save_mesh(mesh, tmp_path / f"head{suffix}", {"seed": 42, "psi": 0.7})
    loaded = trimesh.load(path, force="mesh")
    assert len(loaded.faces) == len(mesh.faces)
    np.testing.assert_allclose(loaded.bounds, mesh.bounds, atol=1e-5)
    assert loaded.volume == pytest.approx(mesh.volume, rel=1e-4)
    assert sorted(os.listdir(tmp_path)) == sorted([f"head{suffix}", f"head{suffix}.json"])  # no temp files


def test_sidecar_content(tmp_path):
    mesh = extract_mesh(ellipsoid_sigma(n=32), level=10.0, border="legacy_sigma10", flip_x=True)
    path = save_mesh(mesh, tmp_path / "s.ply", {"seed": 7, "psi": 0.7, "level": "overridden?"})
    record = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "s.ply.json"
    assert record["seed"] == 7 and record["psi"] == 0.7
    assert record["level"] == "overridden?"  # caller entries win
    assert record["resolution"] == 32 and record["flip_x"] is True
    assert record["border_preset"] == "legacy_sigma10" and record["border_voxels"] == [7, 7, 3, 3, 10, 3]
    assert record["border_value"] == -1000.0 and "world units" in record["units"]
    assert record["format"] == "ply" and record["n_faces"] == len(mesh.faces)


def test_save_bad_inputs_write_nothing(tmp_path):
    mesh = extract_mesh(ellipsoid_sigma(n=16))
    with pytest.raises(ValueError, match="unsupported mesh format"):
        save_mesh(mesh, tmp_path / "m.stl")
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_mesh(mesh, tmp_path / "m.ply", {"z": np.zeros(3)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_mesh(mesh, tmp_path / "missing" / "m.ply")
    assert os.listdir(tmp_path) == []


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    mesh = extract_mesh(ellipsoid_sigma(n=16))
    target = tmp_path / "m.ply"
    target.write_bytes(b"previous version")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(mesh_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_mesh(mesh, target)
    assert target.read_bytes() == b"previous version"
    assert os.listdir(tmp_path) == ["m.ply"]  # the temporary file was removed
