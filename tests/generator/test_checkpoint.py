"""Tests of checkpoint loading (EG3D pickles and the converted format), conversion and saving."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nerfsculpt
from nerfsculpt.camera import canonical_camera
from nerfsculpt.generator.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    convert,
    generator_config_from_snapshot,
    load_generator,
    load_network,
    save_network,
    state_dict_mismatches,
)
from nerfsculpt.generator.config import (
    FFHQ_RENDERING_KWARGS,
    DiscriminatorConfig,
    GeneratorConfig,
    ffhq512_config,
    tiny_config,
)
from nerfsculpt.generator.discriminator import DualDiscriminator
from nerfsculpt.generator.triplane import TriPlaneGenerator
from tests.generator.eg3d_snapshot import write_eg3d_snapshot

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def converted_dir(snapshot_path, tmp_path_factory):
    return convert(snapshot_path, tmp_path_factory.mktemp("converted") / "tiny")


def assert_same_state_dict(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_same_generator_outputs(G_ref: TriPlaneGenerator, G: TriPlaneGenerator) -> None:
    torch.manual_seed(123)
    z, c = torch.randn(2, G_ref.z_dim), canonical_camera().repeat(2, 1)
    ws = G_ref.mapping(z, c, truncation_psi=0.7)
    assert torch.equal(G.mapping(z, c, truncation_psi=0.7), ws)
    points = torch.rand(2, 50, 3) - 0.5  # (N, M, 3) inside the box
    expected, found = G_ref.sample_mixed(points, None, ws), G.sample_mixed(points, None, ws)
    assert torch.equal(found["sigma"], expected["sigma"]) and torch.equal(found["rgb"], expected["rgb"])
    expected = G_ref.synthesis(ws, c, noise_mode="const", deterministic=True)
    found = G.synthesis(ws, c, noise_mode="const", deterministic=True)
    for key in ("image", "image_raw", "image_depth"):
        assert torch.equal(found[key], expected[key]), key


# ---------------------------------------------------------------------------------------------
# EG3D pickles
# ---------------------------------------------------------------------------------------------
def test_load_network_from_pickle(networks, snapshot_path):
    net = load_network(snapshot_path)
    assert set(net) == {"G", "D", "G_ema", "meta"}
    for name in ("G", "D", "G_ema"):
        module = net[name]
        assert isinstance(module, DualDiscriminator if name == "D" else TriPlaneGenerator)
        assert not module.training and not any(p.requires_grad for p in module.parameters())
        assert_same_state_dict(module, networks[name])
    assert net["G"].config == networks["G"].config  # sizes EG3D hard-codes were read from the weights
    assert net["D"].config == networks["D"].config
    meta = net["meta"]
    assert meta["format"] == "eg3d-pickle" and meta["notes"] == []
    assert meta["source"]["sha256"] == hashlib.sha256(snapshot_path.read_bytes()).hexdigest()
    assert meta["generator"] == networks["G_ema"].config.to_dict()
    json.dumps(meta)


def test_loaded_networks_compute_what_the_source_computes(networks, snapshot_path):
    net = load_network(snapshot_path)
    assert_same_generator_outputs(networks["G_ema"], net["G_ema"])
    assert_same_generator_outputs(networks["G"], net["G"])
    torch.manual_seed(0)
    images = {"image": torch.randn(4, 3, 64, 64), "image_raw": torch.randn(4, 3, 16, 16)}
    c = canonical_camera().repeat(4, 1)
    assert torch.equal(net["D"](images, c), networks["D"](images, c))


def test_other_superresolution_module(tmp_path):
    rendering = copy.deepcopy(tiny_config().rendering_kwargs)
    rendering["superresolution_module"] = "training.superresolution.SuperresolutionHybrid2X"
    config = tiny_config(img_resolution=32, rendering_kwargs=rendering, sr_input_resolution=16,
                         sr_channels=(8, 8))
    torch.manual_seed(0)
    G = TriPlaneGenerator(config).eval()
    loaded = load_generator(write_eg3d_snapshot(tmp_path / "s.pkl", G_ema=G))
    assert loaded.config == config
    assert_same_generator_outputs(G, loaded)


def _eg3d_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Key -> tensor of the listed shape (on the meta device), from a companion file of eg3d.md §2."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            _, key, shape, _ = line.split("\t")
            out[key] = torch.empty(json.loads(shape), device="meta")
    return out


def test_ffhq_checkpoint_layout_maps_to_the_ffhq_config():
    """NVIDIA's ffhq512-128 state dict (keys/shapes from the official code) fits our modules exactly."""
    state_dict = _eg3d_state_dict(DATA / "eg3d_state_dict_G.txt")
    init_kwargs = {  # G.init_kwargs of ffhq512-128.pkl, eg3d.md §1.2
        "z_dim": 512, "w_dim": 512, "mapping_kwargs": {"num_layers": 2}, "channel_base": 32768,
        "channel_max": 512, "fused_modconv_default": "inference_only",
        "rendering_kwargs": FFHQ_RENDERING_KWARGS, "num_fp16_res": 0, "sr_num_fp16_res": 4,
        "sr_kwargs": {"channel_base": 32768, "channel_max": 512, "fused_modconv_default": "inference_only"},
        "conv_clamp": None, "c_dim": 25, "img_resolution": 512, "img_channels": 3,
    }
    network = {  # the part of read_eg3d_snapshot's metadata the configuration is built from
        "init_kwargs": init_kwargs, "rendering_kwargs": FFHQ_RENDERING_KWARGS,
        "neural_rendering_resolution": 128,
        "modules": {"superresolution": "SuperresolutionHybrid8XDC"},
        "attributes": {"superresolution": {"input_resolution": 128}},
    }
    config = generator_config_from_snapshot(network, state_dict)
    assert config == ffhq512_config()
    with torch.device("meta"):
        G = TriPlaneGenerator(config)
    assert state_dict_mismatches(state_dict, G.state_dict()) == []
    assert list(G.state_dict()) == list(state_dict)


def test_ffhq_discriminator_layout_maps_to_its_config():
    state_dict = _eg3d_state_dict(DATA / "eg3d_state_dict_D.txt")
    init_kwargs = {  # eg3d.md §1.4
        "c_dim": 25, "img_resolution": 512, "img_channels": 3, "channel_base": 32768, "channel_max": 512,
        "num_fp16_res": 4, "conv_clamp": 256, "disc_c_noise": 0, "architecture": "resnet", "cmap_dim": None,
        "block_kwargs": {"freeze_layers": 0}, "mapping_kwargs": {},
        "epilogue_kwargs": {"mbstd_group_size": 4},
    }
    with torch.device("meta"):
        D = DualDiscriminator(DiscriminatorConfig.from_eg3d_init_kwargs(init_kwargs))
    assert state_dict_mismatches(state_dict, D.state_dict()) == []


def test_configuration_mismatch_is_reported_key_by_key(networks, tmp_path):
    init_kwargs = networks["G_ema"].config.to_eg3d_init_kwargs()
    init_kwargs["mapping_kwargs"] = {"num_layers": 1}  # the weights have fc0 and fc1
    init_kwargs["channel_max"] = 16  # the weights have up to 32 channels
    path = write_eg3d_snapshot(tmp_path / "s.pkl", G_ema=networks["G_ema"],
                               init_kwargs={"G_ema": init_kwargs})
    with pytest.raises(CheckpointError) as error:
        load_network(path)
    message = str(error.value)
    assert "G_ema does not match the TriPlaneGenerator its configuration describes" in message
    assert "\n  - unexpected: backbone.mapping.fc1.weight [32, 32]" in message
    assert "\n  - shape: backbone.synthesis.b4.const: checkpoint [32, 4, 4], model [16, 4, 4]" in message
    assert "missing:" not in message


def test_unsupported_configuration_names_the_network(networks, tmp_path):
    init_kwargs = {**networks["G_ema"].config.to_eg3d_init_kwargs(), "architecture": "resnet"}
    path = write_eg3d_snapshot(tmp_path / "s.pkl", G_ema=networks["G_ema"],
                               init_kwargs={"G_ema": init_kwargs})
    with pytest.raises(CheckpointError, match="(?s)G_ema: .*init_kwargs.architecture must be 'skip'"):
        load_network(path)


def test_missing_dataset_label_std_keeps_the_default(networks, tmp_path):
    G = copy.deepcopy(networks["G_ema"])
    del G._buffers["dataset_label_std"]
    net = load_network(write_eg3d_snapshot(tmp_path / "s.pkl", G_ema=G))
    assert torch.equal(net["G_ema"].dataset_label_std, torch.ones(25))
    assert net["meta"]["notes"] == ["G_ema: the checkpoint has no dataset_label_std; kept the default (ones)"]
    assert net["G"] is None and net["D"] is None


def test_load_generator(networks, snapshot_path, tmp_path):
    assert_same_state_dict(load_generator(snapshot_path), networks["G_ema"])
    assert_same_state_dict(load_generator(snapshot_path, network="G"), networks["G"])
    only_G = write_eg3d_snapshot(tmp_path / "only_G.pkl", G=networks["G"])
    with pytest.raises(CheckpointError, match="has no G_ema; pass network='G'"):
        load_generator(only_G)
    with pytest.raises(ValueError, match="network must be one of"):
        load_generator(snapshot_path, network="D")
    assert nerfsculpt.load_generator is load_generator


# ---------------------------------------------------------------------------------------------
# Converted format
# ---------------------------------------------------------------------------------------------
def test_convert_writes_safetensors_and_config(converted_dir, snapshot_path, networks):
    assert sorted(p.name for p in converted_dir.iterdir()) == [
        "D.safetensors", "G.safetensors", "G_ema.safetensors", "config.json"]
    config = json.loads((converted_dir / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION
    assert config["nerfsculpt_version"] == nerfsculpt.__version__
    assert config["networks"] == ["G", "G_ema", "D"]
    assert GeneratorConfig.from_dict(config["generator"]) == networks["G_ema"].config
    assert DiscriminatorConfig.from_dict(config["discriminator"]) == networks["D"].config
    assert config["neural_rendering_resolution"] == 16
    assert config["rendering_kwargs"] == networks["G_ema"].rendering_kwargs
    meta = config["meta"]
    assert meta["source"] == {"file": snapshot_path.name,
                              "sha256": hashlib.sha256(snapshot_path.read_bytes()).hexdigest()}
    assert len(meta["module_src_sha256"]) == 4
    tensors = load_file(converted_dir / "G_ema.safetensors")
    expected = networks["G_ema"].state_dict()
    assert set(tensors) == set(expected)
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors.values())
    assert all(torch.equal(tensors[k], v) for k, v in expected.items())


def test_converted_checkpoint_round_trip(converted_dir, snapshot_path):
    from_pickle = load_network(snapshot_path)
    for path in (converted_dir, converted_dir / "config.json"):
        net = load_network(path)
        for name in ("G", "G_ema", "D"):
            assert_same_state_dict(net[name], from_pickle[name])
            assert not net[name].training and not any(p.requires_grad for p in net[name].parameters())
        assert net["meta"]["meta"]["source"] == from_pickle["meta"]["source"]
    assert_same_generator_outputs(from_pickle["G_ema"], load_generator(converted_dir))


def test_convert_refuses_a_non_empty_directory_unless_asked(snapshot_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not empty; pass overwrite=True"):
        convert(snapshot_path, out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    convert(snapshot_path, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging leftovers


def test_convert_of_a_bad_file_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04cos\nsystem\n(Vtouch pwned\ntR.")
    with pytest.raises(CheckpointError):
        convert(bad, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pkl"]


def test_save_network_keeps_the_live_rendering_state(tmp_path):
    torch.manual_seed(0)
    G = TriPlaneGenerator(tiny_config())
    G.neural_rendering_resolution = 32  # EG3D's training loop changes both after construction
    G.rendering_kwargs["depth_resolution"] = 24
    out = save_network(tmp_path / "trained", G=G)
    loaded = load_generator(out, network="G")
    assert loaded.neural_rendering_resolution == 32 and loaded.rendering_kwargs["depth_resolution"] == 24
    assert_same_state_dict(loaded, G)
    with pytest.raises(CheckpointError, match="has no G_ema; pass network='G'"):
        load_generator(out)


def test_save_network_refuses_differing_generators(tmp_path):
    G, G_ema = TriPlaneGenerator(tiny_config()), TriPlaneGenerator(tiny_config(channel_max=16))
    with pytest.raises(ValueError, match=r"different configurations \(\['channel_max'\]\)"):
        save_network(tmp_path / "out", G=G, G_ema=G_ema)
    assert not (tmp_path / "out").exists()


def test_corrupt_converted_checkpoints(converted_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in converted_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "D.safetensors").write_bytes((converted_dir / "D.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="D.safetensors: cannot read"):
        load_network(broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(CheckpointError, match="upgrade nerfsculpt"):
        load_network(broken)
    (broken / "config.json").write_text(json.dumps({**config, "neural_rendering_resolution": 64}))
    with pytest.raises(CheckpointError, match="neural_rendering_resolution disagrees"):
        load_network(broken)
    with pytest.raises(CheckpointError, match="pass the directory"):
        load_network(broken / "G.safetensors")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint configuration"):
        load_network(tmp_path)
