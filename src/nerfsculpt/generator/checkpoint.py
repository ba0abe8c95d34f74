"""Load EG3D networks from NVIDIA's snapshot pickles or from nerfsculpt's converted format.

    net = load_network("ffhq512-128.pkl")            # {'G', 'D', 'G_ema', 'meta'}, eval mode
    G = load_generator("ffhq512-128.pkl")            # the G_ema generator
    convert("ffhq512-128.pkl", "ffhq512-128")        # -> config.json + {G,G_ema,D}.safetensors
    G = load_generator("ffhq512-128")                # later loads never touch pickle

Pickles are read by :mod:`nerfsculpt.generator.safe_pickle`, which never runs code from the file
(docs/method/eg3d.md §4.3). The converted format is a directory holding one `<network>.safetensors` per
network (EG3D's state-dict keys, contiguous fp32 tensors) and a `config.json`:

    format, format_version, nerfsculpt_version, networks   what the directory holds
    generator, discriminator                               GeneratorConfig / DiscriminatorConfig dicts
    neural_rendering_resolution, rendering_kwargs          copies of the generator's, for readers
    meta                                                   source file + sha256, module_src hashes, ...
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nerfsculpt._version import __version__
from nerfsculpt.atomic import atomic_directory, check_directory_destination
from nerfsculpt.generator.config import (
    SUPERRESOLUTION_SPECS,
    DiscriminatorConfig,
    GeneratorConfig,
    superresolution_class_name,
)
from nerfsculpt.generator.discriminator import DualDiscriminator
from nerfsculpt.generator.safe_pickle import NETWORK_NAMES, CheckpointError, read_eg3d_snapshot
from nerfsculpt.generator.triplane import TriPlaneGenerator

FORMAT_NAME = "nerfsculpt-eg3d"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
GENERATOR_NAMES = ("G", "G_ema")

__all__ = ["CheckpointError", "convert", "load_generator", "load_network", "save_network"]


@dataclass
class _Checkpoint:
    """Weights and configurations read from a file, before any module is built."""

    source: Path
    state_dicts: dict[str, dict[str, torch.Tensor]]
    configs: dict[str, GeneratorConfig | DiscriminatorConfig]
    meta: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_network(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load every network of a checkpoint, frozen and in eval mode (as EG3D stores them).

    `path` is an EG3D snapshot `.pkl`, a directory made by :func:`convert` / :func:`save_network`,
    or that directory's `config.json`. Returns `{'G', 'D', 'G_ema', 'meta'}`; a network the
    checkpoint lacks is None. `meta` is JSON-serialisable.
    """
    return _load(path, device, NETWORK_NAMES, required=False)


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", network: str = "G_ema"
) -> TriPlaneGenerator:
    """Load one generator ('G_ema', the EMA weights used for sampling, or 'G'), in eval mode."""
    if network not in GENERATOR_NAMES:
        raise ValueError(f"network must be one of {GENERATOR_NAMES}, got {network!r}")
    return _load(path, device, (network,), required=True)[network]


def _load(
    path: str | Path, device: str | torch.device, names: Iterable[str], required: bool
) -> dict[str, Any]:
    """Build the networks `names` of a checkpoint; a missing one is None, or an error if `required`."""
    checkpoint = _read_checkpoint(Path(path))
    notes: list[str] = []
    out: dict[str, Any] = {name: None for name in NETWORK_NAMES}
    for name in names:
        if name in checkpoint.state_dicts:
            out[name] = _build_module(name, checkpoint, notes).eval().requires_grad_(False).to(device)
        elif required:
            others = [n for n in GENERATOR_NAMES if n in checkpoint.state_dicts and n != name]
            hint = f"; pass network='{others[0]}'" if name in GENERATOR_NAMES and others else ""
            raise CheckpointError(f"checkpoint {checkpoint.source} has no {name}{hint}")
    out["meta"] = {**checkpoint.meta, "notes": checkpoint.meta.get("notes", []) + notes}
    return out


def _read_checkpoint(path: Path) -> _Checkpoint:
    if path.is_dir() or path.suffix == ".json":
        return _read_converted(path if path.is_dir() else path.parent)
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: pass the directory holding it and {CONFIG_FILE}, not the file itself")
    return _read_snapshot(path)


def _read_snapshot(path: Path) -> _Checkpoint:
    """An EG3D pickle: weights via the safe unpickler, configurations from the recorded kwargs."""
    snapshot = read_eg3d_snapshot(path)
    networks = snapshot.meta["networks"]
    configs: dict[str, GeneratorConfig | DiscriminatorConfig] = {}
    for name, network in networks.items():
        try:
            if name == "D":
                configs[name] = DiscriminatorConfig.from_eg3d_init_kwargs(network["init_kwargs"])
            else:
                configs[name] = generator_config_from_snapshot(network, snapshot.state_dicts[name])
        except ValueError as e:
            raise CheckpointError(f"{path}: {name}: {e}") from e
    generator = next((configs[n] for n in ("G_ema", "G") if n in configs), None)
    meta = {
        "format": "eg3d-pickle",
        "source": snapshot.meta["source"],
        "generator": generator.to_dict() if generator else None,
        "discriminator": configs["D"].to_dict() if "D" in configs else None,
        "eg3d": snapshot.meta,
    }
    return _Checkpoint(path, dict(snapshot.state_dicts), configs, meta)


def generator_config_from_snapshot(
    network: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> GeneratorConfig:
    """The :class:`GeneratorConfig` of one generator read by :func:`read_eg3d_snapshot`.

    The constructor kwargs come from `init_kwargs`; the live `rendering_kwargs` and
    `neural_rendering_resolution` attributes win over the constructor's (docs/method/eg3d.md §1.2-1.3). Sizes
    that EG3D hard-codes (plane resolution and features, decoder and SR widths) are read from
    the weights' shapes, so that they equal EG3D's for NVIDIA's checkpoints.
    """
    init_kwargs = dict(network["init_kwargs"])
    if network.get("rendering_kwargs") is not None:
        init_kwargs["rendering_kwargs"] = network["rendering_kwargs"]
    sizes = {}
    sr_module = (init_kwargs.get("rendering_kwargs") or {}).get("superresolution_module")
    if sr_module is not None:  # otherwise from_eg3d_init_kwargs reports what is missing
        sr_name = superresolution_class_name(sr_module)
        sr_class = network["modules"].get("superresolution")
        if sr_class != sr_name:
            raise ValueError(f"rendering_kwargs.superresolution_module names {sr_name} "
                             f"but the superresolution module is {sr_class}")
        sizes = _sizes_from_weights(sr_name, init_kwargs.get("w_dim", 512), network, state_dict)
    return GeneratorConfig.from_eg3d_init_kwargs(init_kwargs, network.get("neural_rendering_resolution"), **sizes)


def _sizes_from_weights(sr_name: str, w_dim: int, network: dict[str, Any], state_dict: dict[str, torch.Tensor]
                        ) -> dict[str, Any]:
    """Config fields EG3D hard-codes, from tensor shapes; EG3D's own values map to the defaults."""
    sizes: dict[str, Any] = {}
    blocks = sorted(int(m.group(1)) for key in state_dict
                    if (m := re.fullmatch(r"backbone\.synthesis\.b(\d+)\.torgb\.weight", key)))
    if blocks:
        sizes["plane_resolution"] = blocks[-1]
        sizes["plane_features"] = state_dict[f"backbone.synthesis.b{blocks[-1]}.torgb.weight"].shape[0] // 3
    if "decoder.net.0.weight" in state_dict:
        sizes["decoder_hidden"] = state_dict["decoder.net.0.weight"].shape[0]
    spec = SUPERRESOLUTION_SPECS[sr_name]
    sr_keys = [f"superresolution.block{i}.conv1.weight" for i in (0, 1)]
    if all(key in state_dict for key in sr_keys):
        channels = tuple(state_dict[key].shape[0] for key in sr_keys)
        sizes["sr_channels"] = channels if channels != spec.channels else None
    input_resolution = network["attributes"].get("superresolution", {}).get("input_resolution")
    if input_resolution is not None:
        sizes["sr_input_resolution"] = input_resolution if input_resolution != spec.input_resolution else None
    affine = state_dict.get("superresolution.block0.conv1.affine.weight")
    if affine is not None:
        sizes["sr_w_dim"] = affine.shape[1] if affine.shape[1] != w_dim else None
    return sizes


def _read_converted(directory: Path) -> _Checkpoint:
    """A directory written by :func:`save_network`."""
    from safetensors.torch import load_file

    config_path = directory / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path}: cannot read the checkpoint configuration ({e})") from e
    if config.get("format") != FORMAT_NAME or not isinstance(config.get("format_version"), int):
        raise CheckpointError(f"{config_path}: not a {FORMAT_NAME} checkpoint configuration")
    if config["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: format version {config['format_version']} is newer than this "
                              f"nerfsculpt understands ({FORMAT_VERSION}); upgrade nerfsculpt")
    generator = config.get("generator")
    for key in ("neural_rendering_resolution", "rendering_kwargs"):
        if generator is not None and key in config and config[key] != generator.get(key):
            raise CheckpointError(f"{config_path}: {key} disagrees with generator.{key}; make them equal")
    configs: dict[str, GeneratorConfig | DiscriminatorConfig] = {}
    state_dicts: dict[str, dict[str, torch.Tensor]] = {}
    for name in config.get("networks", []):
        if name not in NETWORK_NAMES:
            raise CheckpointError(f"{config_path}: unknown network {name!r}")
        try:
            if name == "D":
                configs[name] = DiscriminatorConfig.from_dict(config["discriminator"])
            else:
                configs[name] = GeneratorConfig.from_dict(config["generator"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{config_path}: invalid configuration for {name} ({e})") from e
        try:
            state_dicts[name] = load_file(directory / f"{name}.safetensors", device="cpu")
        except Exception as e:  # missing file, truncated header, bad dtype: safetensors raises several types
            raise CheckpointError(f"{directory / name}.safetensors: cannot read ({type(e).__name__}: {e}); "
                                  "convert or save the network again") from e
    return _Checkpoint(directory, state_dicts, configs, config)


def _build_module(name: str, checkpoint: _Checkpoint, notes: list[str]) -> nn.Module:
    """Build the network from its configuration and load its weights with `strict=True`."""
    config = checkpoint.configs[name]
    module = DualDiscriminator(config) if name == "D" else TriPlaneGenerator(config)
    expected = module.state_dict()
    state_dict = dict(checkpoint.state_dicts[name])
    if "dataset_label_std" in expected and "dataset_label_std" not in state_dict:
        # Registered by EG3D's training loop, so every released pickle has it (docs/method/eg3d.md §2.4).
        state_dict["dataset_label_std"] = expected["dataset_label_std"]
        notes.append(f"{name}: the checkpoint has no dataset_label_std; kept the default (ones)")
    problems = state_dict_mismatches(state_dict, expected)
    if problems:
        raise CheckpointError(
            f"{checkpoint.source}: {name} does not match the {type(module).__name__} its configuration "
            f"describes ({len(problems)} problems):\n  - " + "\n  - ".join(problems)
        )
    module.load_state_dict(state_dict, strict=True)
    return module


def state_dict_mismatches(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches, one line per key (empty = compatible)."""
    problems = [f"missing: {key} {list(v.shape)}" for key, v in expected.items() if key not in found]
    problems += [f"unexpected: {key} {list(v.shape)}" for key, v in found.items() if key not in expected]
    problems += [
        f"shape: {key}: checkpoint {list(found[key].shape)}, model {list(value.shape)}"
        for key, value in expected.items()
        if key in found and found[key].shape != value.shape
    ]
    return problems


# ---------------------------------------------------------------------------------------------
# Saving and converting
# ---------------------------------------------------------------------------------------------
def convert(src_pkl: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Convert an EG3D snapshot pickle to nerfsculpt's format (safetensors + config.json).

    The pickle is read safely, every network is built and loaded with `strict=True`, and only
    then is `out_dir` written, atomically. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    check_directory_destination(out_dir, overwrite, CheckpointError)
    net = load_network(src_pkl)
    eg3d = net["meta"]["eg3d"]
    meta = {
        "source": eg3d["source"],
        "module_src_sha256": eg3d["module_src_sha256"],
        "training_set_kwargs": eg3d["training_set_kwargs"],
        "eg3d_init_kwargs": {name: network["init_kwargs"] for name, network in eg3d["networks"].items()},
        "notes": net["meta"]["notes"],
    }
    return save_network(out_dir, G=net["G"], D=net["D"], G_ema=net["G_ema"], meta=meta, overwrite=overwrite)


def save_network(
    out_dir: str | Path,
    G: TriPlaneGenerator | None = None,
    D: DualDiscriminator | None = None,
    G_ema: TriPlaneGenerator | None = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Save networks in nerfsculpt's format, readable by :func:`load_network`. Returns `out_dir`.

    G and G_ema must share one configuration. The generator's current `neural_rendering_resolution`
    and `rendering_kwargs` are saved, as EG3D's pickles do. `meta` (JSON-serialisable) is stored
    under `meta` in config.json. `extra_files` ({name: bytes}) are written into the same directory
    (e.g. a training run's optimiser state). The directory appears atomically, complete or not at all.
    """
    from safetensors.torch import save  # not save_file: it creates its files 0600, not by the umask

    out_dir = Path(out_dir)
    networks = {name: module for name, module in (("G", G), ("G_ema", G_ema), ("D", D)) if module is not None}
    if not networks:
        raise ValueError("save_network needs at least one of G, D, G_ema")
    generators = {name: _live_generator_config(networks[name]).to_dict() for name in GENERATOR_NAMES
                  if name in networks}
    if len(generators) == 2 and generators["G"] != generators["G_ema"]:
        differing = sorted(k for k in generators["G"] if generators["G"][k] != generators["G_ema"][k])
        raise ValueError(f"G and G_ema have different configurations ({differing}); save them separately")
    generator = next(iter(generators.values()), None)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "nerfsculpt_version": __version__,
        "networks": list(networks),
        "generator": generator,
        "discriminator": D.config.to_dict() if D is not None else None,
        "neural_rendering_resolution": generator["neural_rendering_resolution"] if generator else None,
        "rendering_kwargs": generator["rendering_kwargs"] if generator else None,
        "meta": meta or {},
    }
    config_text = json.dumps(config, indent=2) + "\n"  # fails before anything is written
    reserved = {CONFIG_FILE, *(f"{name}.safetensors" for name in networks)}
    for name in extra_files or {}:
        if name in reserved or Path(name).name != name:
            raise ValueError(f"extra file name {name!r} is reserved or not a plain file name")

    with atomic_directory(out_dir, overwrite, error=CheckpointError) as staging:
        for name, module in networks.items():
            (staging / f"{name}.safetensors").write_bytes(save(_tensors_for_saving(module.state_dict()),
                                                               metadata={"format": "pt"}))
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        (staging / CONFIG_FILE).write_text(config_text)
    return out_dir


def _live_generator_config(G: TriPlaneGenerator) -> GeneratorConfig:
    """G's configuration with the rendering state it has now (EG3D changes both after building)."""
    return dataclasses.replace(G.config, neural_rendering_resolution=int(G.neural_rendering_resolution),
                               rendering_kwargs=dict(G.rendering_kwargs))


def _tensors_for_saving(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, floating point as fp32."""
    return {
        key: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for key, v in state_dict.items()
    }


