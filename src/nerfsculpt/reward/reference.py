"""Import the paper's released reward (docs/method/reference_method.md §8) into a nerfsculpt bundle.

The release is a directory with ``best_model.pt`` (a plain ``state_dict``, or a Lightning checkpoint
holding one under ``state_dict``) and ``run_config.yaml`` (``release_config.yaml`` is accepted too).
The ``.pt`` is read with ``torch.load(weights_only=True)``: tensors only, no code runs. Its keys
map onto :class:`~nerfsculpt.reward.sigma_net.SigmaRewardNet` by prefix:

====================================  ===========================
reference                             nerfsculpt
====================================  ===========================
``Conv3DModule.encoders.*``            ``unet.encoders.*``
``Conv3DModule.decoders.*``            ``unet.decoders.*``
``Conv3DModule.final_conv.*``          ``unet.final_conv.*``
``Conv3DModule.conv3d_for_recon.*``    ``conv3d_for_recon.*``
``Conv3DModule.conv1d_for_recon.*``    ``conv1d_for_recon.*``
``MLP.*``, ``scalar_rwd_head*.*``      ``heads.MLP.*``, ``heads.scalar_rwd_head*.*``
====================================  ===========================

and the weights are loaded strictly: every tensor must be used and have its shape.

    nerfsculpt reward import-reference CM/RWD_MODELS_FOR_TUNING/7wnzkgie runs/reward-paper
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nerfsculpt.generator.builtin import generator_fingerprint
from nerfsculpt.reward.bundle import (
    FFHQ512_GENERATOR,
    BundleError,
    Extraction,
    load_strictly,
    read_state_dict,
    save_bundle,
)
from nerfsculpt.reward.heads import HeadsConfig
from nerfsculpt.reward.sigma_net import SigmaRewardConfig, SigmaRewardNet

WEIGHTS_NAME = "best_model.pt"
CONFIG_NAMES = ("run_config.yaml", "release_config.yaml")
SIGMA_DTYPE = "sigma_field_256"
"""The reference's name of the sigma-slab representation (``data.dset_dict.selected_dtypes[0]``)."""

PREFIXES = (
    ("Conv3DModule.encoders.", "unet.encoders."),
    ("Conv3DModule.decoders.", "unet.decoders."),
    ("Conv3DModule.final_conv.", "unet.final_conv."),
    ("Conv3DModule.conv3d_for_recon.", "conv3d_for_recon."),
    ("Conv3DModule.conv1d_for_recon.", "conv1d_for_recon."),
    ("MLP.", "heads.MLP."),
    ("scalar_rwd_head.", "heads.scalar_rwd_head."),
    ("scalar_rwd_head_BT.", "heads.scalar_rwd_head_BT."),
    ("scalar_rwd_head_pairs.", "heads.scalar_rwd_head_pairs."),
)
"""(reference prefix, nerfsculpt prefix) of every state-dict key."""


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for old, new in table:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def native_state_dict(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference key names -> nerfsculpt key names; unknown keys are an error."""
    renamed, unknown = {}, []
    for key, value in reference.items():
        new = _rename(key, PREFIXES)
        if new is None:
            unknown.append(key)
        else:
            renamed[new] = value
    if unknown:
        raise BundleError(f"{len(unknown)} weights of the reference file are not part of the sigma reward "
                          f"(e.g. {unknown[:3]}); is it a bundle of another representation?")
    return renamed


def reference_state_dict(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """nerfsculpt key names -> the reference's (the inverse of :func:`native_state_dict`)."""
    inverse = tuple((new, old) for old, new in PREFIXES)
    return {_rename(key, inverse): value for key, value in native.items()}


def _find(node: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in a nested YAML mapping, or None."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for value in node.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def _read_config(directory: Path) -> tuple[dict[str, Any], Path]:
    import yaml

    for name in CONFIG_NAMES:
        path = directory / name
        if path.is_file():
            try:
                config = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:
                raise BundleError(f"{path} is not valid YAML ({error})") from None
            if not isinstance(config, dict):
                raise BundleError(f"{path} is not a YAML mapping")
            return config, path
    raise BundleError(f"{directory} has no {' or '.join(CONFIG_NAMES)}; the release's config is needed to "
                      f"check what the weights score")


def sigma_config_from_weights(state: dict[str, torch.Tensor], num_groups: int = 8) -> SigmaRewardConfig:
    """The architecture of native-named sigma reward weights: U-Net levels and MLP sizes read off the shapes."""
    f_maps = []
    while f"unet.encoders.{len(f_maps)}.basic_module.conv2.conv.weight" in state:
        f_maps.append(int(state[f"unet.encoders.{len(f_maps)}.basic_module.conv2.conv.weight"].shape[0]))

    def mlp_sizes(prefix: str) -> tuple[int, tuple[int, ...], int]:
        if f"{prefix}.input_layer.weight" not in state:
            raise BundleError(f"the weights have no {prefix} (not a sigma reward state_dict)")
        hidden = [int(state[f"{prefix}.input_layer.weight"].shape[0])]
        while f"{prefix}.hidden_layers.{len(hidden) - 1}.0.weight" in state:
            hidden.append(int(state[f"{prefix}.hidden_layers.{len(hidden) - 1}.0.weight"].shape[0]))
        return (int(state[f"{prefix}.input_layer.weight"].shape[1]), tuple(hidden),
                int(state[f"{prefix}.output_layer.weight"].shape[0]))

    if len(f_maps) < 2:
        raise BundleError("the weights have no U-Net encoder levels (not a sigma reward state_dict)")
    global_features, embedding_hidden, embedding = mlp_sizes("heads.MLP")
    _, head_hidden, _ = mlp_sizes("heads.scalar_rwd_head")
    return SigmaRewardConfig(f_maps=tuple(f_maps), num_groups=num_groups, heads=HeadsConfig(
        global_features=global_features, embedding_hidden=embedding_hidden, embedding=embedding,
        head_hidden=head_hidden))


def _check_run_config(config: dict[str, Any], architecture: SigmaRewardConfig, config_path: Path) -> None:
    """The run config must describe a sigma reward with the architecture of the weights, normalised to 0-100."""
    dtypes = _find(config, "selected_dtypes")
    dtype = dtypes[0] if isinstance(dtypes, list) and dtypes else dtypes
    if dtype != SIGMA_DTYPE:
        raise BundleError(f"{config_path.name} selects data type {dtype!r}; only {SIGMA_DTYPE!r} rewards (the "
                          f"paper's released sigma model) can be imported")
    f_maps = _find(config, "f_maps")
    if f_maps is not None and tuple(int(f) for f in f_maps) != architecture.f_maps:
        raise BundleError(f"{config_path.name} says f_maps {list(f_maps)} but the weights have "
                          f"{list(architecture.f_maps)}; the two files are not from the same run")
    size = _find(config, "final_size_out")
    if size is not None and int(size) != architecture.heads.global_features:
        raise BundleError(f"{config_path.name} says final_size_out {size} but the weights' MLP takes "
                          f"{architecture.heads.global_features} features; the two files are not from the same run")


def _check_normalisation(config: dict[str, Any]) -> None:
    low, high = _find(config, "min_norm"), _find(config, "max_norm")
    if (low, high) != (None, None) and (float(low), float(high)) != (0.0, 100.0):
        raise BundleError(f"the run config normalises sigma to [{low}, {high}]; nerfsculpt implements the "
                          f"released model's [0, 100] min-max normalisation only")


def import_reference(directory: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Convert a reference reward release (``best_model.pt`` + ``run_config.yaml``) to a bundle at ``out_dir``."""
    directory = Path(directory)
    weights_path = directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise BundleError(f"{directory} has no {WEIGHTS_NAME}; unzip the released reward "
                          f"(reward-model-7wnzkgie-sfield256.zip) and pass its directory")
    config, config_path = _read_config(directory)
    state = native_state_dict(read_state_dict(weights_path))
    architecture = sigma_config_from_weights(state, num_groups=int(_find(config, "num_groups") or 8))
    _check_run_config(config, architecture, config_path)
    _check_normalisation(config)
    model = SigmaRewardNet(architecture)
    load_strictly(model, state, f"{weights_path} does not fit the architecture of {config_path.name}")
    source = {"kind": "reference-release", "weights": str(weights_path), "config": str(config_path),
              "weights_fingerprint": generator_fingerprint(model)}
    return save_bundle(out_dir, model, Extraction(), source=source, overwrite=overwrite, generator=FFHQ512_GENERATOR)

