"""Tests of the `nerfsculpt` command line: help, convert, sample, info, errors and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from nerfsculpt import cli
from nerfsculpt.geometry.bank import open_bank
from nerfsculpt.geometry.bank import writer as bank_module

SMALL = ["--resolution", "16", "--slab-resolution", "16", "--mesh-level", "0", "--depth-resolution", "8",
         "--n-points", "32", "--render-resolution", "16", "--device", "cpu", "--no-progress"]
TINY = ["--generator", "tiny-random", *SMALL]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    from tests.generator.eg3d_snapshot import tiny_networks, write_eg3d_snapshot

    networks = tiny_networks(seed=1)
    return write_eg3d_snapshot(tmp_path_factory.mktemp("pkl") / "network-snapshot.pkl", **networks), networks


# ------------------------------------------------------------------------------------------------
# Help and entry points


def test_console_script_and_module_help_from_the_installed_package():
    here = os.path.dirname(sys.executable)  # the environment's scripts, activated or not
    script = shutil.which("nerfsculpt", path=os.pathsep.join([here, os.environ.get("PATH", "")]))
    assert script is not None, "the console script is not installed; pip install -e ."
    for command in ([script, "--help"], [sys.executable, "-m", "nerfsculpt", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert all(name in result.stdout for name in ("convert", "sample", "info"))


def test_help_does_not_import_torch():
    """``nerfsculpt --help`` and every command's --help stay instant: neither torch nor numpy is imported."""
    code = """
import contextlib, io, sys
from nerfsculpt.cli import build_parser, main
commands = [[name] for name in build_parser()._subparsers._group_actions[0].choices]
for argv in [["--help"], *([*c, "--help"] for c in commands), ["reward", "train", "--help"],
             ["synthetic", "fit", "--help"], ["label", "serve", "--help"]]:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0, argv
print('torch' in sys.modules, 'numpy' in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr


@pytest.mark.parametrize("command", ["convert", "sample", "info"])
def test_command_help_shows_defaults_and_usage(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    out = " ".join(out.split())  # independent of the terminal width
    assert code == 0
    assert f"nerfsculpt {command}" in out
    if command == "sample":
        for default in ("(default: 1.0)", "(default: const)", "(default: 256)", "(default: 128)",
                        "(default: all)", "(default: sigma,slab,mesh,depth,renders)", "100000-100999"):
            assert default in out, default
        assert "torchrun --nproc_per_node" in out and "tiny-random" in out


def test_no_command_and_unknown_options_exit_2(capsys):
    assert run(capsys)[0] == 2
    assert run(capsys, "sample", "--frobnicate")[0] == 2
    assert run(capsys, "--version")[0] == 0


def test_defaults_mirror_the_library():
    args = cli.build_parser().parse_args(["sample", "--generator", "g", "--seeds", "0", "--out", "o"])
    defaults = bank_module.BankConfig()
    for field in ("psi", "truncation_cutoff", "noise_mode", "focal", "resolution", "slab_resolution",
                  "mesh_level", "mesh_border", "depth_resolution", "n_points", "render_resolution", "grid",
                  "slab_grid"):
        assert getattr(args, field) == getattr(defaults, field), field


# ------------------------------------------------------------------------------------------------
# sample


def test_sample_writes_resumes_and_reads_back(capsys, tmp_path, caplog):
    out = tmp_path / "bank"
    code, _, err = run(capsys, "sample", *TINY, "--seeds", "3-4,9", "--out", str(out))
    assert code == 0, err
    bank = open_bank(out)
    assert bank.seeds() == [3, 4, 9] and bank.manifest["what"] == ["sigma", "slab", "mesh", "depth", "renders"]
    assert bank.load(9, "slab").shape == (8, 9, 9)  # the reference pads at 16^3
    metas = {p: p.stat().st_mtime_ns for p in out.rglob("meta.json")}

    with caplog.at_level("INFO", logger="nerfsculpt"):
        code, _, _ = run(capsys, "sample", *TINY, "--seeds", "3-4,9", "--out", str(out))
    assert code == 0
    assert "3 of 3 seeds already finished, 0 to write" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("meta.json")} == metas


def test_sample_after_a_crash_completes_the_bank(capsys, tmp_path, monkeypatch):
    out = tmp_path / "bank"
    real = bank_module._write_mesh

    def crash(grid, seed_dir, params, tags):
        if tags["seed"] == 1:
            raise RuntimeError("power cut")
        return real(grid, seed_dir, params, tags)

    monkeypatch.setattr(bank_module, "_write_mesh", crash)
    with pytest.raises(RuntimeError, match="power cut"):  # not an input error: the traceback is shown
        cli.main(["sample", *TINY, "--seeds", "0-2", "--out", str(out), "--what", "sigma,mesh"])
    assert (out / "seeds" / "000001" / "sigma.safetensors").exists()
    assert open_bank(out).seeds() == [0]
    monkeypatch.setattr(bank_module, "_write_mesh", real)
    code, _, _ = run(capsys, "sample", *TINY, "--seeds", "0-2", "--out", str(out), "--what", "sigma,mesh")
    assert code == 0 and open_bank(out).seeds() == [0, 1, 2]


def test_sample_dry_run_prints_the_resolved_config_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "bank"
    code, stdout, _ = run(capsys, "sample", *TINY, "--seeds", "20000-20099", "--psi", "0.25", "--out", str(out),
                          "--dry-run")
    assert code == 0 and not out.exists()
    plan = json.loads(stdout)
    assert (plan["n_seeds"], plan["n_to_write"], plan["device"]) == (100, 100, "cpu")
    sampling = plan["manifest"]["sampling"]
    assert (sampling["psi"], sampling["truncation_cutoff"], sampling["noise_mode"]) == (0.25, 8, "const")
    assert plan["manifest"]["generator"]["kind"] == "builtin"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "5-2"], "--seeds: reversed seed range '5-2'"),
        (["--seeds", "1,x"], "--seeds: bad seed item 'x'"),
        (["--seeds", "0", "--what", "slab,voxels"], "unknown artefact"),
        (["--seeds", "0", "--psi", "nan"], "psi must be a finite number"),
        (["--seeds", "0", "--resolution", "1"], "resolution must be >= 2"),
        (["--seeds", "0", "--device", "tpu"], "--device"),
        (["--seeds", "0", "--what", "points", "--n-points", "100"], "lower --n-points or raise --depth-resolution"),
        (["--seeds", "0", "--generator", "no/such.pkl"], "not a built-in generator"),
        (["--seeds", "0", "--truncation-cutoff", "99"], "exceeds the generator's 8 ws"),
        (["--seeds", "0", "--truncation-cutoff", "some"], "expected a positive integer or 'all'"),
    ],
)
def test_sample_bad_input_exits_2_with_a_message_and_writes_nothing(capsys, tmp_path, argv, message):
    out = tmp_path / "bank"
    code, _, err = run(capsys, "sample", *TINY, "--out", str(out), *argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_sample_refuses_to_mix_settings(capsys, tmp_path):
    out = tmp_path / "bank"
    assert run(capsys, "sample", *TINY, "--seeds", "0", "--what", "slab", "--out", str(out))[0] == 0
    manifest = (out / "manifest.json").read_bytes()
    code, _, err = run(capsys, "sample", *TINY, "--seeds", "0-1", "--what", "slab", "--psi", "0.7", "--out", str(out))
    assert code == 2 and "refusing to mix banks" in err and "sampling.psi" in err
    assert (out / "manifest.json").read_bytes() == manifest and not (out / "seeds" / "000001").exists()


def test_verbose_errors_show_the_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "sample", *TINY, "--seeds", "9-1", "--out", str(tmp_path / "b"), "--verbose")
    assert code == 2 and "Traceback" in err and "reversed seed range" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_what_to_do(capsys, tmp_path):
    code, _, err = run(capsys, "sample", *TINY, "--seeds", "0", "--out", str(tmp_path / "b"), "--device", "cuda")
    assert code == 2 and "pass --device cpu" in err


# ------------------------------------------------------------------------------------------------
# convert and info


def test_convert_then_sample_and_info(capsys, tmp_path, snapshot):
    from nerfsculpt.generator.builtin import generator_fingerprint, resolve_generator

    pkl, networks = snapshot
    out = tmp_path / "converted"
    code, stdout, err = run(capsys, "convert", str(pkl), str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["D.safetensors", "G.safetensors", "G_ema.safetensors",
                                                     "config.json"]
    assert resolve_generator(str(out))[1].fingerprint == generator_fingerprint(networks["G_ema"])

    code, stdout, _ = run(capsys, "info", str(out), "--json")
    info = json.loads(stdout)
    assert code == 0 and info["kind"] == "converted" and info["networks"] == ["G", "G_ema", "D"]
    assert info["fingerprints"]["G_ema"] == generator_fingerprint(networks["G_ema"])
    code, stdout, _ = run(capsys, "info", str(pkl), "--json")
    assert code == 0 and json.loads(stdout)["fingerprints"] == info["fingerprints"]
    code, stdout, _ = run(capsys, "info", str(pkl))  # a summary first: a few lines, not the whole record
    assert code == 0 and len(stdout.splitlines()) <= 8 and "eg3d-pickle generator" in stdout
    assert f"G_ema fingerprint {info['fingerprints']['G_ema'][:16]}" in stdout and "--json" in stdout

    bank = tmp_path / "bank"
    assert run(capsys, "sample", "--generator", str(out), *SMALL, "--seeds", "0", "--what", "slab",
               "--out", str(bank))[0] == 0
    code, stdout, _ = run(capsys, "info", str(bank), "--json")
    assert code == 0 and json.loads(stdout)["n_finished"] == 1
    code, stdout, _ = run(capsys, "info", str(bank))
    assert code == 0 and stdout.startswith(f"sample bank {bank}: 1 of 1 seeds finished")


def test_convert_dry_run_and_refusals_change_nothing(capsys, tmp_path, snapshot):
    pkl, _ = snapshot
    out = tmp_path / "converted"
    code, stdout, _ = run(capsys, "convert", str(pkl), str(out), "--dry-run")
    assert code == 0 and not out.exists() and json.loads(stdout)["networks"] == ["G", "G_ema", "D"]

    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "convert", str(pkl), str(out))
    assert code == 2 and "pass --overwrite" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    code, _, err = run(capsys, "convert", str(garbage), str(tmp_path / "new"))
    assert code == 2 and "garbage.pkl" in err and not (tmp_path / "new").exists()
    code, _, err = run(capsys, "convert", str(tmp_path / "missing.pkl"), str(tmp_path / "new"))
    assert code == 2 and "is not a file" in err


def test_info_of_a_builtin(capsys):
    code, stdout, _ = run(capsys, "info", "tiny-random", "--json")
    info = json.loads(stdout)
    assert code == 0 and info["kind"] == "builtin" and info["num_ws"] == 8
    assert "random weights, for trying the tools only" in info["description"]
    code, stdout, _ = run(capsys, "info", "tiny-random")
    assert code == 0 and stdout.splitlines()[0] == "builtin generator tiny-random: G_ema"
    assert f"{info['n_parameters']:,} parameters" in stdout and "64 px images, 16 px neural rendering" in stdout
    code, _, err = run(capsys, "info", "no-such-generator")
    assert code == 2 and "not a built-in generator" in err


def test_synthetic_fit_dry_run_and_bad_input(capsys, tmp_path):
    out = tmp_path / "run"
    code, text, _ = run(capsys, "synthetic", "fit", "--out", str(out), "--dry-run", "--batch", "4")
    plan = json.loads(text)
    assert code == 0 and plan["fit_config"]["batch"] == 4 and plan["fit_config"]["minutes"] == 57.0
    assert not out.exists()
    code, _, err = run(capsys, "synthetic", "fit", "--out", str(out), "--batch", "0")
    assert code == 2 and "batch" in err and not out.exists()


def test_synthetic_evaluate_checks_its_input(capsys, tmp_path):
    code, _, err = run(capsys, "synthetic", "evaluate", "--seeds", "1-2")
    assert code == 2 and "at least 3 seeds" in err
    code, _, err = run(capsys, "synthetic", "evaluate", "--resolution", "8")
    assert code == 2 and "calibrated at 96-128" in err
    code, text, _ = run(capsys, "synthetic", "evaluate", "--dry-run")
    assert code == 0 and json.loads(text) == {"generator": "synthetic", "n_seeds": 200, "rgb": True, "out": None}
    code, text, _ = run(capsys, "synthetic", "evaluate", "--dry-run", "--no-rgb")
    assert code == 0 and json.loads(text)["rgb"] is False


def _all_parsers(parser, prefix=()):
    """(command words, parser) of the top level and every command and subcommand."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*prefix, name))


def test_help_texts_read_right():
    """One default per option, none that reads backwards, no reST markup, every command group described."""
    parsers = list(_all_parsers(cli.build_parser()))
    assert len(parsers) > 25
    for words, parser in parsers:
        text = parser.format_help()
        assert "``" not in text, words
        for option in re.split(r"\n(?=  -)", text):
            assert option.count("(default:") <= 1, (words, option)
            assert not ("--no-" in option.split("\n")[0] and "(default: True)" in option), (words, option)
            assert "(default: None)" not in option, (words, option)
    top = " ".join(cli.build_parser().format_help().split())
    for text in ("synthetic the built-in benchmark", "oracle", "reward sigma reward models: train", "sample -> label"):
        assert text in top, text


def test_main_leaves_the_callers_log_level(capsys):
    """In-process calls (tests, notebooks) keep their 'nerfsculpt' log level; main sets its own only meanwhile."""
    import logging

    logger = logging.getLogger("nerfsculpt")
    level = logger.level
    try:
        logger.setLevel(logging.ERROR)
        assert run(capsys, "-v", "info", "tiny-random")[0] == 0
        assert logger.level == logging.ERROR
    finally:
        logger.setLevel(level)
