"""Write mock EG3D snapshot pickles in NVIDIA's on-disk format, from any nn.Module tree (tests only).

Written from the format description in eg3d.md §4.1-4.2; no NVIDIA code is used or imported.
A module whose `eg3d_class_name` has no dot becomes a persistent-class record, i.e. the call
`torch_utils.persistence._reconstruct_persistent_obj(meta)`; a dotted name (e.g.
'training.triplane.OSGDecoder') is pickled by reference with its `__dict__` state; torch's own
modules (Sequential, Softplus) pickle as themselves. Tensors pickle the usual torch way
(`_rebuild_tensor_v2` + legacy storage bytes), gains as numpy float64, kwargs as EasyDicts.

    write_eg3d_snapshot(tmp_path / "snapshot.pkl", G=G, D=D, G_ema=G_ema)
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

PLAIN_CLASS_NAMES = (
    "training.triplane.OSGDecoder",
    "training.volumetric_rendering.renderer.ImportanceRenderer",
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",
    "training.volumetric_rendering.ray_sampler.RaySampler",
)
FAKE_MODULE_NAMES = (
    "dnnlib", "dnnlib.util", "torch_utils", "torch_utils.persistence", "training", "training.triplane",
    "training.volumetric_rendering", "training.volumetric_rendering.renderer",
    "training.volumetric_rendering.ray_marcher", "training.volumetric_rendering.ray_sampler",
)
NUMPY_FLOAT_ATTRIBUTES = ("weight_gain", "act_gain")  # np.sqrt results in EG3D, hence float64
DROPPED_ATTRIBUTES = ("eg3d_class_name",)  # our bookkeeping, absent from EG3D's objects


@dataclass
class FakeEG3DModules:
    """Stand-ins registered under EG3D's module paths so that pickle can name them."""

    reconstruct_persistent_obj: Any
    easy_dict: type
    plain_classes: dict[str, type]


@contextlib.contextmanager
def fake_eg3d_modules() -> Iterator[FakeEG3DModules]:
    """Install empty `dnnlib`, `torch_utils` and `training` modules in `sys.modules`, then restore."""
    saved = {name: sys.modules.get(name) for name in FAKE_MODULE_NAMES}
    modules = {name: types.ModuleType(name) for name in FAKE_MODULE_NAMES}

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("mock snapshots are only written with these stand-ins, never loaded")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    easy_dict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    modules["dnnlib.util"].EasyDict = easy_dict
    plain_classes = {}
    for qualified_name in PLAIN_CLASS_NAMES:
        module_name, class_name = qualified_name.rsplit(".", 1)
        plain_classes[qualified_name] = type(class_name, (), {"__module__": module_name})
        setattr(modules[module_name], class_name, plain_classes[qualified_name])
    sys.modules.update(modules)
    try:
        yield FakeEG3DModules(_reconstruct_persistent_obj, easy_dict, plain_classes)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class PersistentObject:
    """Pickles as `_reconstruct_persistent_obj(meta)`, as EG3D's persistent classes do (§4.2)."""

    def __init__(self, reconstruct: Any, meta: dict[str, Any]):
        self.reconstruct = reconstruct
        self.meta = meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def discriminator_init_kwargs(config) -> dict[str, Any]:
    """EG3D's DualDiscriminator kwargs for a nerfsculpt `DiscriminatorConfig` (eg3d.md §1.4)."""
    return {
        "c_dim": config.c_dim, "img_resolution": config.img_resolution, "img_channels": config.img_channels,
        "channel_base": config.channel_base, "channel_max": config.channel_max,
        "num_fp16_res": config.num_fp16_res, "conv_clamp": config.conv_clamp, "cmap_dim": config.cmap_dim,
        "disc_c_noise": config.disc_c_noise, "architecture": "resnet",
        "block_kwargs": {"freeze_layers": 0}, "mapping_kwargs": {"num_layers": config.mapping_layers},
        "epilogue_kwargs": {"mbstd_group_size": config.mbstd_group_size,
                            "mbstd_num_channels": config.mbstd_num_channels},
    }


def default_init_kwargs(module: nn.Module) -> dict[str, Any]:
    """The `_init_kwargs` EG3D would have recorded for a nerfsculpt network."""
    config = getattr(module, "config", None)
    if hasattr(config, "to_eg3d_init_kwargs"):
        return config.to_eg3d_init_kwargs()
    if config is not None:
        return discriminator_init_kwargs(config)
    return {}


def _is_plain_data(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str | np.generic | torch.Tensor):
        return True
    if isinstance(value, list | tuple | set):
        return all(_is_plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain_data(k) and _is_plain_data(v) for k, v in value.items())
    return False


class _SnapshotBuilder:
    """Turns a module tree into the object graph EG3D's snapshot pickle contains."""

    def __init__(self, fakes: FakeEG3DModules, module_src: str | None):
        self.fakes = fakes
        self.module_src = module_src
        self.converted: dict[int, Any] = {}  # shared sub-modules stay shared, as pickle's memo keeps them

    def easy_dicts(self, value: Any) -> Any:
        """Nested dicts of init kwargs become `dnnlib.util.EasyDict`, as train.py builds them."""
        if isinstance(value, dict):
            return self.fakes.easy_dict({k: self.easy_dicts(v) for k, v in value.items()})
        return value

    def state(self, module: nn.Module) -> dict[str, Any]:
        state = module.__getstate__()  # a copy of __dict__, as nn.Module pickles itself
        children = state["_modules"].items()
        state["_modules"] = OrderedDict((k, None if v is None else self.convert(v)) for k, v in children)
        for key, value in list(state.items()):
            if key in ("_modules", "_parameters", "_buffers"):
                continue
            if key in DROPPED_ATTRIBUTES or not _is_plain_data(value):
                del state[key]  # e.g. our config dataclasses; EG3D objects hold plain data only
            elif key in NUMPY_FLOAT_ATTRIBUTES and isinstance(value, float):
                state[key] = np.float64(value)
        return state

    def convert(self, module: nn.Module, init_kwargs: dict[str, Any] | None = None) -> Any:
        if id(module) in self.converted:
            return self.converted[id(module)]
        cls = type(module)
        name = getattr(module, "eg3d_class_name", None)
        if cls.__module__.startswith("torch.nn.") or (name and "." in name):  # pickled by reference
            obj = cls.__new__(cls) if name is None else self.fakes.plain_classes[name]()
            self.converted[id(module)] = obj
            obj.__dict__.update(self.state(module))
            return obj
        if name is None:
            raise TypeError(f"{cls.__name__} has no eg3d_class_name; cannot write it as an EG3D module")
        state = self.state(module)
        state["_init_args"] = ()
        state["_init_kwargs"] = {k: self.easy_dicts(v) for k, v in copy.deepcopy(init_kwargs or {}).items()}
        module_src = self.module_src or inspect.getsource(sys.modules[cls.__module__])
        meta = dict(type="class", version=6, module_src=module_src, class_name=name, state=state)
        self.converted[id(module)] = PersistentObject(self.fakes.reconstruct_persistent_obj, meta)
        return self.converted[id(module)]


def write_eg3d_snapshot(
    path: str | Path,
    *,
    G: nn.Module | None = None,
    D: nn.Module | None = None,
    G_ema: nn.Module | None = None,
    init_kwargs: dict[str, dict[str, Any]] | None = None,
    training_set_kwargs: dict[str, Any] | None = None,
    module_src: str | None = None,
) -> Path:
    """Pickle `{training_set_kwargs, G, D, G_ema, augment_pipe}` as EG3D's training loop does.

    `init_kwargs` overrides the recorded constructor kwargs per network ('G', 'D', 'G_ema');
    `module_src` replaces the embedded source text of every persistent class.
    """
    if training_set_kwargs is None:
        training_set_kwargs = {"class_name": "training.dataset.ImageFolderDataset", "path": "ffhq.zip",
                               "use_labels": True, "max_size": 70000, "xflip": True, "resolution": 512,
                               "random_seed": 0}
    networks = {"G": G, "D": D, "G_ema": G_ema}
    with fake_eg3d_modules() as fakes:
        builder = _SnapshotBuilder(fakes, module_src)
        snapshot: dict[str, Any] = {"training_set_kwargs": dict(training_set_kwargs)}
        for name, module in networks.items():
            if module is not None:
                kwargs = (init_kwargs or {}).get(name, default_init_kwargs(module))
                snapshot[name] = builder.convert(module, kwargs)
        snapshot["augment_pipe"] = None
        path = Path(path)
        with open(path, "wb") as f:
            pickle.Pickler(f, protocol=4).dump(snapshot)
    return path


def tiny_networks(seed: int = 0) -> dict[str, nn.Module]:
    """Tiny G, D and G_ema (different weights from G, as after training), frozen and in eval mode."""
    from nerfsculpt.generator.config import tiny_config, tiny_discriminator_config
    from nerfsculpt.generator.discriminator import DualDiscriminator
    from nerfsculpt.generator.triplane import TriPlaneGenerator

    torch.manual_seed(seed)
    networks = {"G": TriPlaneGenerator(tiny_config()), "D": DualDiscriminator(tiny_discriminator_config()),
                "G_ema": TriPlaneGenerator(tiny_config())}
    with torch.no_grad():
        for module in networks.values():
            for buffer in module.buffers():  # make every buffer informative too
                buffer.add_(torch.rand_like(buffer))
    return {name: module.eval().requires_grad_(False) for name, module in networks.items()}
