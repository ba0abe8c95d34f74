"""nerfsculpt reward train / eval end to end on simulated rankings of the tiny random generator."""

import json

import pytest

from nerfsculpt.cli import main
from nerfsculpt.reward.bundle import load_bundle
from tests.reward.tiny import CPU, simulated_study


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    return simulated_study(tmp_path_factory.mktemp("prefs") / "p.sqlite", "0-39", 30, 32)


@pytest.mark.slow
def test_train_writes_a_bundle_with_its_report_and_resumes(prefs, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["reward", "train", "--db", str(prefs), "--out", str(out), "--model", "small", "--slab-resolution", "64",
            "--epochs", "2", "--batch", "4", "--lr", "1e-3", "--objective", "reference", *CPU]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "pair_head" in text and "regular only" in text  # the reference objective trains the pair head
    bundle = load_bundle(out / "bundle")
    training = bundle.config["training"]
    assert training["data"]["train"]["lists"] == 21 and training["config"]["objective"] == "reference"
    assert bundle.extraction.slab["resolution"] == 64 and bundle.extraction.psi == 1.0
    assert set(bundle.config["metrics"]) == {"test", "val"}
    assert bundle.config["generator"] == {"img_resolution": 64, "plane_resolution": 32, "box_warp": 1.0}  # tiny
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["test"]["accuracy"]["all_pairs/scalar"]["n"] == 3 * metrics["test"]["lists"]
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert main(args) == 0  # finished run: resumes to the end at once, same bundle
    assert len((out / "log.jsonl").read_text().splitlines()) == len(steps)
    assert main(["reward", "eval", "--bundle", str(out / "bundle"), "--db", str(prefs), "--objective", "reference",
                 "--out", str(tmp_path / "eval.json"), *CPU]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())["test"]
    assert evaluated["accuracy"] == metrics["test"]["accuracy"]


def test_train_dry_run_and_bad_arguments(prefs, tmp_path, capsys):
    assert main(["reward", "train", "--db", str(prefs), "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["train_config"]["lr"] == 1e-5 and config["train_config"]["patience"] == 3
    assert main(["reward", "train", "--db", str(prefs), "--out", str(tmp_path / "r"), "--slab-resolution", "32"]) == 2
    assert "16x18x17 slab; --model full needs every side >= 32" in capsys.readouterr().err  # and names small, tiny
    assert main(["reward", "train", "--db", str(prefs), "--out", str(tmp_path / "r"), "--model", "tiny",
                 "--slab-resolution", "12"]) == 2
    assert "needs every side >= 8" in capsys.readouterr().err
    assert main(["reward", "train", "--db", str(prefs), "--out", str(tmp_path / "r"), "--model", "tiny",
                 "--slab-resolution", "16", "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["reward", "train", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "r")]) == 2
    assert main(["reward", "train", "--db", str(prefs), "--out", str(tmp_path / "r"), "--generator", "synthetic",
                 "--epochs", "1", *CPU]) == 2
    assert "fingerprint" in capsys.readouterr().err
    assert not (tmp_path / "r" / "bundle").exists()


@pytest.mark.slow
def test_pointnet_baseline_trains_from_a_bank(prefs, tmp_path, capsys):
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.geometry.bank import BankConfig, write_bank

    bank = tmp_path / "bank"
    config = BankConfig(resolution=32, slab_resolution=64, mesh_level=0.0, depth_resolution=48, n_points=2048)
    write_bank(bank, *resolve_generator("tiny-random", "cpu"), config, list(range(40)), ("depth", "points"),
               progress=False)
    out = tmp_path / "run"
    assert main(["reward", "train", "--db", str(prefs), "--out", str(out), "--model", "pointnet", "--bank", str(bank),
                 "--no-anchors", "--epochs", "1", *CPU]) == 0
    bundle = load_bundle(out / "bundle")
    assert bundle.extraction.representation == "points" and bundle.config["architecture"]["name"] == "point_net"
    assert bundle.config["training"]["config"]["batch"] == 4  # the paper's PointNet batch
    assert main(["reward", "train", "--db", str(prefs), "--out", str(tmp_path / "r2"), "--model", "depth1",
                 "--no-anchors", *CPU]) == 2
    assert "pass --bank" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.distributed
def test_train_under_torchrun_with_two_cpu_ranks(prefs, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "nerfsculpt", "reward", "train", "--db", str(prefs), "--out", str(out), "--model", "small",
               "--slab-resolution", "64", "--epochs", "1", "--batch", "2", "--no-anchors", *CPU]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("regular only") == 1  # rank 0 reports
    bundle = load_bundle(out / "bundle")
    assert bundle.config["training"]["world_size"] == 2
