"""Tests of sample banks: layout, contents, resuming, crash safety, refusing mixed banks, sharding."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfsculpt.camera import canonical_camera, dmap_cameras
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.geometry.bank import (
    ARTEFACT_FILES,
    ARTEFACTS,
    MANIFEST_FILE,
    BankConfig,
    BankError,
    open_bank,
    parse_what,
    plan_bank,
    write_bank,
)
from nerfsculpt.geometry.bank import writer as bank_module
from nerfsculpt.geometry.sigma import reward_slab, sigma_grid
from nerfsculpt.geometry.slab import REWARD_SLAB, crop_reward_slab

TINY = BankConfig(resolution=16, slab_resolution=16, mesh_level=0.0, depth_resolution=8, n_points=32,
                  render_resolution=16)
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def tiny():
    return resolve_generator("tiny-random", "cpu")


@pytest.fixture(scope="module")
def full_bank(tiny, tmp_path_factory):
    """A finished bank of every artefact, never modified by the tests (copy it to change it)."""
    path = tmp_path_factory.mktemp("bank") / "bank"
    report = write_bank(path, *tiny, TINY, SEEDS, ARTEFACTS, progress=False)
    assert (report.requested, report.already_finished, report.written) == (3, 0, 3)
    return path


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _mtimes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*")) if p.is_file()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------
# Layout and contents


def test_layout_manifest_and_meta(full_bank, tiny):
    G, info = tiny
    manifest = json.loads((full_bank / MANIFEST_FILE).read_text())
    assert manifest["format"] == "nerfsculpt-bank" and manifest["seeds"] == SEEDS
    assert manifest["what"] == list(ARTEFACTS)
    assert manifest["generator"]["fingerprint"] == info.fingerprint and manifest["generator"]["spec"] == "tiny-random"
    sampling = manifest["sampling"]
    assert (sampling["psi"], sampling["truncation_cutoff"], sampling["noise_mode"]) == (1.0, G.num_ws, "const")
    assert sampling["conditioning"]["camera"] == "canonical"
    assert sampling["conditioning"]["label"] == canonical_camera()[0].tolist()
    assert manifest["extraction"]["slab"]["shape"] == [8, 9, 9]  # X[4:12], Y[4:13], Z[6:15] at 16^3
    assert manifest["extraction"]["depth"]["cameras"] == list(dmap_cameras().names)
    for seed in SEEDS:
        seed_dir = full_bank / "seeds" / f"{seed:06d}"
        meta = json.loads((seed_dir / "meta.json").read_text())
        assert meta["seed"] == seed and meta["generator_fingerprint"] == info.fingerprint
        assert list(meta["artefacts"]) == list(ARTEFACTS)
        for name, entry in meta["artefacts"].items():
            assert set(entry["files"]) == set(ARTEFACT_FILES[name]), name
            for file, record in entry["files"].items():
                assert record == {"bytes": (seed_dir / file).stat().st_size, "sha256": _sha256(seed_dir / file)}
        assert not list(seed_dir.glob(".*")), "temporary files left behind"


def test_contents_follow_the_seed_convention(full_bank, tiny):
    """Seed s -> RandomState(s).randn(1, z_dim), canonical conditioning, psi, float16 raw sigma in X,Y,Z."""
    G, _ = tiny
    bank = open_bank(full_bank)
    spec = dataclasses.replace(REWARD_SLAB, resolution=16)
    for seed in SEEDS:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
        ws = G.mapping(z, canonical_camera(), truncation_psi=1.0, truncation_cutoff=G.num_ws)
        slab = bank.load(seed, "slab")
        assert slab.dtype == torch.float32 and slab.shape == (8, 9, 9)
        # The slab defaults to the reference's points (EG3D create_samples), the full grid to the exact ones.
        assert torch.equal(slab, reward_slab(G, ws, spec, eg3d_grid=True)[0].half().float())
        sigma = bank.load(seed, "sigma")
        assert torch.equal(sigma, sigma_grid(G, ws, 16, eg3d_grid=False)[0].half().float())
        assert bank.load(seed, "slab", dtype=torch.float16).dtype == torch.float16
    assert not torch.equal(bank.load(0, "slab"), bank.load(1, "slab"))


def test_slab_on_the_grid_points_is_the_crop_of_the_cube(tiny, tmp_path):
    config = dataclasses.replace(TINY, slab_grid="exact")  # same points as the full grid: cropped from it
    write_bank(tmp_path, *tiny, config, [5], ["sigma", "slab"], progress=False)
    bank = open_bank(tmp_path)
    spec = dataclasses.replace(REWARD_SLAB, resolution=16)
    slab = bank.load(5, "slab")
    assert torch.equal(crop_reward_slab(bank.load(5, "sigma"), spec), slab), "X,Y,Z crop of the cube"
    write_bank(tmp_path / "alone", *tiny, config, [5], ["slab"], progress=False)  # sampled on its own
    assert torch.equal(open_bank(tmp_path / "alone").load(5, "slab"), slab)


def test_depth_points_renders_and_mesh(full_bank):
    bank = open_bank(full_bank)
    depth = bank.load(0, "depth")
    assert depth.shape == (3, 1, 8, 8) and depth.dtype == torch.float32
    assert bool(((depth >= 2.25 - 1e-4) & (depth <= 3.3 + 1e-4)).all()), "depth lies inside the ray range"
    assert torch.equal(bank.load(0, "depth_cameras"), dmap_cameras().render)
    points = bank.load(0, "points")
    assert points.shape == (32, 3) and bool(torch.isfinite(points).all())
    for view in ("render_front", "render_three_quarter", "render_profile"):
        image = bank.load(0, view)
        assert image.dtype == torch.uint8 and image.shape == (16, 16, 3)
    assert bank.load(0, "rgb").dtype == torch.uint8
    mesh = bank.load(0, "mesh")
    assert len(mesh.faces) > 0 and np.abs(mesh.vertices).max() <= 0.5 + 1e-6  # world units, inside the box
    sidecar = json.loads((full_bank / "seeds" / "000000" / "mesh.glb.json").read_text())
    assert sidecar["seed"] == 0 and sidecar["level"] == 0.0


def test_reader(full_bank):
    bank = open_bank(full_bank)
    assert bank.seeds() == SEEDS and bank.missing() == []
    assert bank.meta(1)["seed"] == 1
    with pytest.raises(BankError, match="seed 7 is not in"):
        bank.load(7, "slab")
    with pytest.raises(BankError, match="unknown bank item 'slabs'"):
        bank.load(0, "slabs")
    with pytest.raises(BankError, match="not a sample bank"):
        open_bank(full_bank / "seeds")


# ------------------------------------------------------------------------------------------------
# Resuming and crash safety


def test_second_run_skips_finished_seeds(full_bank, tiny, tmp_path, monkeypatch):
    path = _copy(full_bank, tmp_path / "bank")
    before = _mtimes(path)
    calls = []
    monkeypatch.setattr(bank_module, "write_seed", lambda *a, **k: calls.append(a))
    report = write_bank(path, *tiny, TINY, SEEDS, ARTEFACTS, progress=False)
    assert calls == [] and (report.already_finished, report.written) == (3, 0)
    assert _mtimes(path) == before


def test_interrupted_seed_is_redone(tiny, tmp_path, monkeypatch):
    path = tmp_path / "bank"
    real_png = bank_module.png_bytes
    state = {"n": 0}

    def crash_on_second_seed(image):
        state["n"] += 1
        if state["n"] == 5:  # 4 PNGs per seed: the first PNG of seed 1, after its tensors were written
            raise RuntimeError("simulated crash")
        return real_png(image)

    monkeypatch.setattr(bank_module, "png_bytes", crash_on_second_seed)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_bank(path, *tiny, TINY, SEEDS, ARTEFACTS, progress=False)
    seed1 = path / "seeds" / "000001"
    assert (seed1 / "slab.safetensors").exists() and not (seed1 / "meta.json").exists()
    assert open_bank(path).seeds() == [0]
    assert plan_bank(path, SEEDS, ARTEFACTS) == [(1, list(ARTEFACTS)), (2, list(ARTEFACTS))]

    monkeypatch.setattr(bank_module, "png_bytes", real_png)
    seed0 = _mtimes(path / "seeds" / "000000")
    report = write_bank(path, *tiny, TINY, SEEDS, ARTEFACTS, progress=False)
    assert (report.already_finished, report.written) == (1, 2)
    assert open_bank(path).seeds() == SEEDS
    assert _mtimes(path / "seeds" / "000000") == seed0


def test_truncated_artefact_and_leftovers_are_redone(full_bank, tiny, tmp_path):
    path = _copy(full_bank, tmp_path / "bank")
    seed_dir = path / "seeds" / "000002"
    slab = open_bank(path).load(2, "slab")
    data = (seed_dir / "slab.safetensors").read_bytes()
    (seed_dir / "slab.safetensors").write_bytes(data[: len(data) // 2])  # torn write
    (seed_dir / ".depth.safetensors.123.abcd.tmp").write_bytes(b"partial")  # a crashed writer's temporary
    assert open_bank(path).seeds() == [0, 1]
    assert plan_bank(path, SEEDS, ARTEFACTS) == [(2, ["slab"])]
    sigma_mtime = (seed_dir / "sigma.safetensors").stat().st_mtime_ns
    report = write_bank(path, *tiny, TINY, SEEDS, ARTEFACTS, progress=False)
    assert report.written == 1 and open_bank(path).seeds() == SEEDS
    assert torch.equal(open_bank(path).load(2, "slab"), slab)
    assert (seed_dir / "sigma.safetensors").stat().st_mtime_ns == sigma_mtime, "finished artefacts are kept"
    assert not list(seed_dir.glob(".*.tmp"))


def test_meta_without_the_artefact_files_is_not_finished(full_bank, tmp_path):
    path = _copy(full_bank, tmp_path / "bank")
    (path / "seeds" / "000001" / "rgb.png").unlink()
    (path / "seeds" / "000002" / "meta.json").write_text("{ truncated")
    assert plan_bank(path, SEEDS, ARTEFACTS) == [(1, ["renders"]), (2, list(ARTEFACTS))]
    assert open_bank(path).seeds(["slab"]) == [0, 1]


# ------------------------------------------------------------------------------------------------
# Extending and refusing


def test_new_what_and_seeds_extend_the_bank(tiny, tmp_path):
    path = tmp_path / "bank"
    write_bank(path, *tiny, TINY, [0, 1], ["slab"], progress=False)
    slab_mtime = (path / "seeds" / "000000" / "slab.safetensors").stat().st_mtime_ns
    report = write_bank(path, *tiny, TINY, [0, 1, 2], ["slab", "depth"], progress=False)
    assert report.written == 3
    bank = open_bank(path)
    assert bank.manifest["what"] == ["slab", "depth"] and bank.manifest["seeds"] == [0, 1, 2]
    assert bank.seeds() == [0, 1, 2]
    assert (path / "seeds" / "000000" / "slab.safetensors").stat().st_mtime_ns == slab_mtime
    assert bank.load(0, "depth").shape == (3, 1, 8, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(psi=0.25), "sampling.psi: bank has 1.0, this run has 0.25"),
        (dict(resolution=8), "extraction.mesh.resolution"),
        (dict(mesh_level=10.0), "extraction.mesh.level"),
        (dict(noise_mode="random"), "sampling.noise_mode"),
    ],
)
def test_other_settings_are_refused_and_nothing_changes(full_bank, tiny, tmp_path, change, message):
    path = _copy(full_bank, tmp_path / "bank")
    before = _mtimes(path)
    with pytest.raises(BankError, match=f"refusing to mix banks(.|\n)*{message}(.|\n)*new --out directory"):
        write_bank(path, *tiny, dataclasses.replace(TINY, **change), [0, 5], ["slab"], progress=False)
    assert _mtimes(path) == before and not (path / "seeds" / "000005").exists()


def test_other_generator_is_refused(full_bank, tiny, tmp_path):
    from nerfsculpt.generator.builtin import GeneratorInfo, generator_fingerprint

    path = _copy(full_bank, tmp_path / "bank")
    G, info = tiny
    other = resolve_generator("tiny-random")[0]
    with torch.no_grad():
        other.decoder.net[0].bias.add_(1.0)
    other_info = GeneratorInfo(**{**dataclasses.asdict(info), "fingerprint": generator_fingerprint(other)})
    with pytest.raises(BankError, match="generator.fingerprint"):
        write_bank(path, other, other_info, TINY, SEEDS, ["slab"], progress=False)


def test_a_non_bank_directory_is_refused(tiny, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BankError, match="non-empty directory without manifest.json"):
        write_bank(tmp_path, *tiny, TINY, SEEDS, ["slab"], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(BankError, match="not a directory"):
        write_bank(tmp_path / "file", *tiny, TINY, SEEDS, ["slab"], progress=False)


def test_a_field_without_surface_gives_an_empty_mesh(tiny, tmp_path):
    path = tmp_path / "bank"
    report = write_bank(path, *tiny, dataclasses.replace(TINY, mesh_level=1e4), [0], ["mesh"], progress=False)
    assert report.empty_meshes == [0]
    bank = open_bank(path)
    assert bank.seeds() == [0], "an empty mesh is a finished artefact"
    assert bank.meta(0)["artefacts"]["mesh"]["empty"] is True
    with pytest.raises(BankError, match="no mesh.*no surface"):
        bank.load(0, "mesh")


# ------------------------------------------------------------------------------------------------
# Configuration


def test_parse_what():
    assert parse_what("mesh, slab") == ("slab", "mesh")
    assert parse_what("all") == ARTEFACTS
    for bad in ("", "slab,voxels", ","):
        with pytest.raises(ValueError, match="choose from sigma,slab,mesh,depth,points,renders"):
            parse_what(bad)


def test_bank_config_validation():
    assert BankConfig().slab_spec.shape == (128, 141, 129)
    for bad, message in [(dict(psi=float("nan")), "psi"), (dict(noise_mode="off"), "noise mode"),
                         (dict(resolution=1), "resolution"), (dict(mesh_border="x"), "mesh border"),
                         (dict(truncation_cutoff=0), "truncation cutoff")]:
        with pytest.raises(ValueError, match=message):
            BankConfig(**bad)


def test_float16_overflow_is_refused():
    with pytest.raises(BankError, match="seed 4: sigma exceeds the float16 range"):
        bank_module._as_float16(torch.tensor([1e5]), 4)


# ------------------------------------------------------------------------------------------------
# torchrun


@pytest.mark.distributed
@pytest.mark.slow
def test_torchrun_two_processes_write_every_seed_once(tmp_path):
    out = tmp_path / "bank"
    seeds = list(range(7))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "nerfsculpt", "sample", "--generator", "tiny-random", "--seeds", "0-6", "--out", str(out),
        "--what", "slab,mesh,depth", "--resolution", "16", "--slab-resolution", "16", "--mesh-level", "0",
        "--depth-resolution", "8", "--device", "cpu", "--no-progress", "--verbose",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    written = [int(line.split("wrote seed ")[1].split()[0]) for line in result.stderr.splitlines()
               if "wrote seed " in line]
    assert sorted(written) == seeds, "every seed written exactly once"
    bank = open_bank(out)
    assert bank.manifest["seeds"] == seeds and bank.manifest["what"] == ["slab", "mesh", "depth"]
    assert bank.seeds() == seeds
    ranks = {bank.meta(seed)["rank"] for seed in seeds}
    assert ranks == {0, 1}, "both processes took a share"
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0 and "wrote seed" not in rerun.stderr
