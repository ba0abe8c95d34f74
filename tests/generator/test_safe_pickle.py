"""Tests of the restricted EG3D snapshot reader: fidelity, metadata, checks, and refusal of code."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from nerfsculpt.generator import discriminator, layers, superresolution, triplane
from nerfsculpt.generator.safe_pickle import (
    CheckpointError,
    PersistentRecord,
    UnsafePickleError,
    read_eg3d_snapshot,
)
from tests.generator.eg3d_snapshot import tiny_networks, write_eg3d_snapshot

# What a snapshot written by EG3D's own code references (eg3d.md §4.2, "[verified]").
EG3D_SNAPSHOT_GLOBALS = {
    "torch_utils.persistence._reconstruct_persistent_obj",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.storage._load_from_bytes",
    "collections.OrderedDict",
    "dnnlib.util.EasyDict",
    "numpy._core.multiarray.scalar" if np.__version__ >= "2" else "numpy.core.multiarray.scalar",
    "numpy.dtype",
    "training.triplane.OSGDecoder",
    "training.volumetric_rendering.renderer.ImportanceRenderer",
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",
    "training.volumetric_rendering.ray_sampler.RaySampler",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.Softplus",
}


@pytest.fixture(scope="module")
def snapshot(snapshot_path):
    return read_eg3d_snapshot(snapshot_path)


def call_pickle(module: str, name: str, *args) -> bytes:
    """A protocol-4 pickle whose only content is the call `module.name(*args)`."""
    return b"\x80\x04c" + f"{module}\n{name}\n".encode() + pickle.dumps(args, protocol=2)[2:-1] + b"R."


# ---------------------------------------------------------------------------------------------
# Fidelity
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["G", "G_ema", "D"])
def test_state_dicts_equal_the_source_modules(networks, snapshot, name):
    expected = networks[name].state_dict()
    found = snapshot.state_dicts[name]
    assert list(found) == list(expected)  # same keys, same order
    for key, value in expected.items():
        assert type(found[key]) is torch.Tensor, f"{key} should be a plain tensor"
        assert not found[key].requires_grad
        assert found[key].dtype == value.dtype and torch.equal(found[key], value), key
    assert not torch.equal(snapshot.state_dicts["G"]["decoder.net.0.weight"],
                           snapshot.state_dicts["G_ema"]["decoder.net.0.weight"])


def test_exactly_eg3ds_globals_are_referenced(snapshot):
    assert set(snapshot.meta["pickle_globals"]) == EG3D_SNAPSHOT_GLOBALS


def test_generator_metadata(networks, snapshot):
    G = networks["G_ema"]
    meta = snapshot.meta["networks"]["G_ema"]
    assert meta["class_name"] == "TriPlaneGenerator"
    assert meta["init_kwargs"] == G.config.to_eg3d_init_kwargs()
    assert type(meta["init_kwargs"]["mapping_kwargs"]) is dict  # EasyDict became a plain dict
    assert meta["init_args"] == []
    assert meta["neural_rendering_resolution"] == G.neural_rendering_resolution == 16
    assert meta["rendering_kwargs"] == G.rendering_kwargs
    assert (meta["z_dim"], meta["c_dim"], meta["w_dim"], meta["img_resolution"], meta["img_channels"]) == (
        32, 25, 32, 64, 3)
    modules = meta["modules"]
    assert modules[""] == "TriPlaneGenerator"
    assert modules["superresolution"] == "SuperresolutionHybrid8XDC"
    assert modules["backbone"] == "Generator"
    assert modules["decoder"] == "training.triplane.OSGDecoder"
    assert modules["decoder.net"] == "torch.nn.modules.container.Sequential"
    assert modules["decoder.net.1"] == "torch.nn.modules.activation.Softplus"
    assert modules["renderer.ray_marcher"] == "training.volumetric_rendering.ray_marcher.MipRayMarcher2"
    assert list(modules) == [name for name, _ in G.named_modules()]
    assert meta["attributes"]["backbone.mapping"]["num_ws"] == 8
    assert meta["attributes"]["backbone.mapping"]["w_avg_beta"] == 0.998
    assert meta["attributes"]["superresolution"]["input_resolution"] == 16
    assert meta["attributes"]["decoder.net.1"] == {"beta": 1.0, "threshold": 20.0}
    gain = meta["attributes"]["backbone.mapping.fc0"]["weight_gain"]
    assert type(gain) is float and gain == pytest.approx(0.01 / (64**0.5))


def test_discriminator_and_snapshot_metadata(networks, snapshot, snapshot_path):
    meta = snapshot.meta
    D = meta["networks"]["D"]
    assert D["class_name"] == "DualDiscriminator"
    assert D["init_kwargs"]["mapping_kwargs"] == {"num_layers": 2}
    assert "neural_rendering_resolution" not in D
    assert meta["training_set_kwargs"]["resolution"] == 512
    assert meta["source"] == {"file": "network-snapshot.pkl",
                              "sha256": hashlib.sha256(snapshot_path.read_bytes()).hexdigest()}
    assert meta["other_keys"] == ["augment_pipe"]
    json.dumps(meta)  # JSON-serialisable throughout


def test_module_source_hashes(snapshot):
    def sha(module):
        return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()

    hashes = snapshot.meta["module_src_sha256"]
    assert hashes[sha(triplane)] == ["TriPlaneGenerator"]
    assert "MappingNetwork" in hashes[sha(layers)] and "FullyConnectedLayer" in hashes[sha(layers)]
    assert hashes[sha(superresolution)] == ["SuperresolutionHybrid8XDC"]
    assert "DualDiscriminator" in hashes[sha(discriminator)]
    assert len(hashes) == 4
    record = snapshot.records["G"]
    assert isinstance(record, PersistentRecord) and record.version == 6 and record.type == "class"
    assert record.module_src == inspect.getsource(triplane)


class _Leaf(nn.Module):
    eg3d_class_name = "Conv2dLayer"

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 3))
        self.bias = None
        self.register_buffer("kept", torch.arange(3.0))
        self.register_buffer("cache", torch.ones(2), persistent=False)
        self.register_buffer("empty", None)


class _Root(nn.Module):
    eg3d_class_name = "DualDiscriminator"

    def __init__(self):
        super().__init__()
        self.register_buffer("resample_filter", torch.rand(4, 4))
        self.first = _Leaf()
        self.skipped = None
        self.seq = nn.Sequential(_Leaf(), nn.Softplus(), _Leaf())
        self.scale = nn.Parameter(torch.rand([]))


def test_state_dict_order_skips_none_and_non_persistent(tmp_path):
    root = _Root()
    snapshot = read_eg3d_snapshot(write_eg3d_snapshot(tmp_path / "s.pkl", D=root, init_kwargs={"D": {}}))
    found = snapshot.state_dicts["D"]
    assert list(found) == list(root.state_dict()) == [
        "scale", "resample_filter", "first.weight", "first.kept",
        "seq.0.weight", "seq.0.kept", "seq.2.weight", "seq.2.kept",
    ]
    assert all(torch.equal(found[k], v) for k, v in root.state_dict().items())
    assert set(snapshot.state_dicts) == {"D"}


def test_debug_log_names_globals(snapshot_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="nerfsculpt.generator.safe_pickle"):
        read_eg3d_snapshot(snapshot_path)
    assert "pickle global torch._utils._rebuild_tensor_v2" in caplog.text
    assert "pickle global torch_utils.persistence._reconstruct_persistent_obj" in caplog.text


# ---------------------------------------------------------------------------------------------
# Structural checks (eg3d.md §4.3 step 3)
# ---------------------------------------------------------------------------------------------
def test_structural_checks_report_every_problem(tmp_path):
    G = tiny_networks(seed=1)["G"]
    G.superresolution.eg3d_class_name = "SuperresolutionHybrid16X"
    G.backbone.mapping.num_ws = 9
    G.backbone.mapping.w_avg_beta = 0.99
    G.renderer.plane_axes = torch.eye(3).repeat(3, 1, 1)  # the "fixed" YZ plane EG3D does not use
    G.decoder.net[0].activation = "lrelu"
    G.backbone.mapping.fc1.weight_gain *= 2
    G.backbone.synthesis.b4.conv1.affine.bias_gain = 0.5
    with pytest.raises(CheckpointError) as error:
        read_eg3d_snapshot(write_eg3d_snapshot(tmp_path / "bad.pkl", G=G))
    message = str(error.value)
    for expected in ("G.superresolution: class 'SuperresolutionHybrid16X'",
                     "G.backbone.mapping.num_ws: 9, expected 8",
                     "G.backbone.mapping.w_avg_beta: 0.99, expected 0.998",
                     "G.renderer.plane_axes",
                     "G.decoder.net.0.activation: 'lrelu', expected 'linear'",
                     "G.backbone.mapping.fc1.weight_gain",
                     "G.backbone.synthesis.b4.conv1.affine.bias_gain: 0.5"):
        assert expected in message
    assert message.count("\n  - ") == 7


def test_wrong_network_class_is_reported(tmp_path):
    path = write_eg3d_snapshot(tmp_path / "s.pkl", G_ema=_Root(), init_kwargs={"G_ema": {}})
    expected = "G_ema: class 'DualDiscriminator', expected EG3D's 'TriPlaneGenerator'"
    with pytest.raises(CheckpointError, match=expected):
        read_eg3d_snapshot(path)


# ---------------------------------------------------------------------------------------------
# Security: nothing from the file runs
# ---------------------------------------------------------------------------------------------
def _payloads(marker):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": ("os", "system", f"touch {marker}"),
        "posix.system": ("posix", "system", f"touch {marker}"),
        "builtins.eval": ("builtins", "eval", touch),
        "builtins.exec": ("builtins", "exec", touch),
        "subprocess.check_output": ("subprocess", "check_output", ["touch", str(marker)]),
        "subprocess.Popen": ("subprocess", "Popen", ["touch", str(marker)]),
        "training.networks_stylegan2.Generator": ("training.networks_stylegan2", "Generator"),
        "torch.nn.modules.linear.Linear": ("torch.nn.modules.linear", "Linear", 2, 2),
    }


PAYLOAD_NAMES = list(_payloads("x"))


@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
def test_code_execution_payloads_are_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(call_pickle(*_payloads(marker)[payload]))
    with pytest.raises(UnsafePickleError, match=f"'{payload}'.*not loaded"):
        read_eg3d_snapshot(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "builtins.exec",
                                     "subprocess.check_output"])
def test_payloads_are_live_under_plain_pickle(tmp_path, payload):
    """The refusal above is meaningful: an ordinary unpickler runs these payloads."""
    marker = tmp_path / "ran"
    pickle.loads(call_pickle(*_payloads(marker)[payload]))  # the test's own payload: creates `marker`
    assert marker.exists()


class _SystemCall:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_payload_hidden_in_a_state_dict_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    G = tiny_networks(seed=2)["G"]
    G.backbone.mapping._buffers["w_avg"] = _SystemCall(f"touch {marker}")
    path = write_eg3d_snapshot(tmp_path / "evil.pkl", G=G)
    assert b"system" in path.read_bytes()
    with pytest.raises(UnsafePickleError, match=f"'{os.system.__module__}.system'"):
        read_eg3d_snapshot(path)
    assert not marker.exists()


def test_embedded_module_source_is_kept_as_text_and_never_run(tmp_path, networks):
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').close()\n"
    path = write_eg3d_snapshot(tmp_path / "s.pkl", **networks, module_src=source)
    snapshot = read_eg3d_snapshot(path)
    assert not marker.exists()
    record = snapshot.records["G_ema"]
    assert record.module_src == source
    assert record.module_src_sha256 == hashlib.sha256(source.encode()).hexdigest()
    assert list(snapshot.meta["module_src_sha256"]) == [record.module_src_sha256]


def test_object_dtype_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(call_pickle("numpy", "dtype", "O", False, True))
    with pytest.raises(UnsafePickleError, match="not a numeric dtype"):
        read_eg3d_snapshot(path)


def test_rewriting_an_allowed_function_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    build = pickle.dumps({"__defaults__": (1,)}, protocol=2)[2:-1] + b"b."  # BUILD on the function
    path.write_bytes(b"\x80\x04ctorch._utils\n_rebuild_tensor_v2\n" + build)
    with pytest.raises(UnsafePickleError, match="modify the function torch._utils._rebuild_tensor_v2"):
        read_eg3d_snapshot(path)
    assert torch._utils._rebuild_tensor_v2.__defaults__ != (1,)


def test_unknown_persistence_version_is_refused(tmp_path):
    meta = {"type": "class", "version": 5, "module_src": "", "class_name": "TriPlaneGenerator", "state": {}}
    path = tmp_path / "old.pkl"
    path.write_bytes(call_pickle("torch_utils.persistence", "_reconstruct_persistent_obj", meta))
    with pytest.raises(CheckpointError, match="version 5"):
        read_eg3d_snapshot(path)


def test_a_module_cycle_is_refused(tmp_path):
    root = _Root()
    root.seq._modules["loop"] = root.seq  # Sequential pickles by NEWOBJ + BUILD, so a cycle is writable
    with pytest.raises(CheckpointError, match="cycle"):
        read_eg3d_snapshot(write_eg3d_snapshot(tmp_path / "s.pkl", D=root, init_kwargs={"D": {}}))


# ---------------------------------------------------------------------------------------------
# Files that are not snapshots
# ---------------------------------------------------------------------------------------------
def test_truncated_file(tmp_path, snapshot_path):
    path = tmp_path / "truncated.pkl"
    path.write_bytes(snapshot_path.read_bytes()[: snapshot_path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pkl: could not be read as a pickle.*truncated"):
        read_eg3d_snapshot(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (np.random.default_rng(0).bytes(4096).replace(b"\x80", b"\x81"), "not a pickle"),
        (b"\x80\x04" + np.random.default_rng(1).bytes(4096), "truncated or corrupt|refusing pickle global"),
        (pickle.dumps([1, 2, 3], protocol=4), "expected an EG3D snapshot"),
        (pickle.dumps({"G": None, "D": None}, protocol=4), "expected an EG3D snapshot"),
        (pickle.dumps({"G": {"weights": 1}}, protocol=4), "G is a dict, not an EG3D network"),
    ],
    ids=["empty", "random", "pickle-header-then-random", "list", "no-networks", "not-a-record"],
)
def test_not_a_snapshot(tmp_path, content, message):
    path = tmp_path / "file.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_eg3d_snapshot(path)


def test_zip_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(CheckpointError, match="zip archive"):
        read_eg3d_snapshot(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_eg3d_snapshot(tmp_path / "absent.pkl")


def test_reader_imports_no_eg3d_code(snapshot_path):
    """Reading happens in a fresh interpreter that never imports dnnlib, torch_utils or training."""
    script = (
        "import sys; from nerfsculpt.generator.safe_pickle import read_eg3d_snapshot; "
        f"read_eg3d_snapshot({str(snapshot_path)!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dnnlib', 'torch_utils', 'training')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # same imports as this process
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == "[]"
