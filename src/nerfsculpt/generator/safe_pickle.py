"""Read EG3D snapshot pickles without running any of their code (docs/method/eg3d.md §4).

NVIDIA's loader unpickles with an ordinary `pickle.Unpickler`: it imports whatever the file
names and `exec`s the source code embedded in every persistent class. This module reads the same
files with an explicit allow-list instead. Every global a snapshot may reference maps to a
tensor rebuilder or to a plain data record; anything else stops the load before it is called.

    snapshot = read_eg3d_snapshot("ffhq512-128.pkl")
    snapshot.state_dicts["G_ema"]["backbone.mapping.w_avg"]          # a tensor, [512]
    snapshot.meta["networks"]["G_ema"]["neural_rendering_resolution"]  # 128
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch._utils

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.generator.config import SUPERRESOLUTION_SPECS
from nerfsculpt.generator.rendering import PLANE_AXES

logger = logging.getLogger(__name__)

NETWORK_NAMES = ("G", "D", "G_ema")
PERSISTENCE_VERSION = 6  # `_version` of EG3D's torch_utils/persistence.py (docs/method/eg3d.md §4.2)

# Classes EG3D pickles by reference rather than through `persistent_class` (docs/method/eg3d.md §4.2).
PLAIN_MODULE_CLASSES = (
    "training.triplane.OSGDecoder",
    "training.volumetric_rendering.renderer.ImportanceRenderer",
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",
    "training.volumetric_rendering.ray_sampler.RaySampler",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.Softplus",
)


class CheckpointError(NerfsculptError, ValueError):
    """A checkpoint file could not be read or does not describe a supported network."""


class UnsafePickleError(CheckpointError):
    """The pickle references a global outside the allow-list; nothing from it was run."""


# ---------------------------------------------------------------------------------------------
# What the allowed globals rebuild into
# ---------------------------------------------------------------------------------------------
@dataclass
class PersistentRecord:
    """One EG3D persistent object, as data: `_reconstruct_persistent_obj`'s meta (docs/method/eg3d.md §4.2)."""

    class_name: str
    """Class name inside the embedded module, e.g. 'TriPlaneGenerator'."""
    version: int
    """Persistence format version (always 6)."""
    type: str
    """Kind of persistent object (always 'class')."""
    state: dict[str, Any]
    """The instance `__dict__`: `_parameters`, `_buffers`, `_modules`, attributes."""
    module_src: str = field(repr=False)
    """Source text of the module that defined the class. Kept as text only, never executed."""
    module_src_sha256: str = ""
    """sha256 of `module_src` (UTF-8), to compare against the public sources."""


class PlainModuleRecord:
    """Stand-in for one of `PLAIN_MODULE_CLASSES`: pickle builds it by NEWOBJ, then BUILD(state).

    Each allowed name gets its own subclass so that the record remembers which class it replaced.
    """

    qualified_name: ClassVar[str] = ""
    state: dict[str, Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.qualified_name}: state is a {type(state).__name__}, not a dict")
        self.state = state

    @property
    def class_name(self) -> str:
        return self.qualified_name

    def __repr__(self) -> str:
        return f"PlainModuleRecord({self.qualified_name})"


_PLAIN_RECORD_CLASSES = {
    name: type(name.rsplit(".", 1)[1], (PlainModuleRecord,), {"qualified_name": name})
    for name in PLAIN_MODULE_CLASSES
}


class _AllowedFunction:
    """An allow-listed function. Refuses pickle's BUILD, so a file cannot rewrite its attributes."""

    __slots__ = ("qualified_name", "function")

    def __init__(self, qualified_name: str, function: Callable[..., Any]):
        self.qualified_name = qualified_name
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(
            f"the pickle tries to modify the function {self.qualified_name}; the file was not loaded"
        )


def _rebuild_persistent_object(meta: Any) -> PersistentRecord:
    """Replaces `torch_utils.persistence._reconstruct_persistent_obj`; never runs `module_src`."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"persistent object: expected a meta dict, got {type(meta).__name__}")
    class_name, state, module_src = meta.get("class_name"), meta.get("state"), meta.get("module_src")
    if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(module_src, str):
        raise CheckpointError(f"persistent object {class_name!r}: meta lacks class_name/state/module_src")
    if meta.get("version") != PERSISTENCE_VERSION or meta.get("type") != "class":
        raise CheckpointError(
            f"persistent object {class_name!r}: version {meta.get('version')!r}, type {meta.get('type')!r}; "
            f"only version {PERSISTENCE_VERSION}, type 'class' (EG3D's format) is supported"
        )
    digest = hashlib.sha256(module_src.encode("utf-8")).hexdigest()
    return PersistentRecord(class_name, meta["version"], meta["type"], state, module_src, digest)


def _load_storage_from_bytes(raw: Any) -> torch.TypedStorage:
    """Replaces `torch.storage._load_from_bytes`: a legacy `torch.save` of one storage (§4.2)."""
    if not isinstance(raw, bytes):
        raise CheckpointError(f"tensor storage: expected bytes, got {type(raw).__name__}")
    storage = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise CheckpointError(f"tensor storage: decoded to {type(storage).__name__}, not a storage")
    return storage


_NUMERIC_DTYPE_CODE = re.compile(r"[biufc]\d{1,2}")


def _numeric_dtype(code: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """Replaces `numpy.dtype`: numeric codes only ('f8', 'i4', ...), always a fresh copy."""
    del align, copy  # a shared builtin descriptor would be mutated by the BUILD that follows
    if not isinstance(code, str) or not _NUMERIC_DTYPE_CODE.fullmatch(code):
        raise UnsafePickleError(f"numpy.dtype({code!r}) is not a numeric dtype; the file was not loaded")
    return np.dtype(code, False, True)


def _numeric_scalar(dtype: Any, raw: Any) -> np.generic:
    """Replaces `numpy.(_)core.multiarray.scalar` for numeric dtypes: bytes -> numpy scalar."""
    if not isinstance(dtype, np.dtype) or not isinstance(raw, bytes):
        raise UnsafePickleError("numpy scalar with a non-numeric payload; the file was not loaded")
    clean = np.dtype(dtype.str)  # drop whatever BUILD wrote into the descriptor
    if clean.kind not in "biufc" or clean.hasobject or len(raw) != clean.itemsize:
        raise UnsafePickleError(f"numpy scalar of dtype {dtype.str!r}; the file was not loaded")
    return np.frombuffer(raw, dtype=clean)[0]


def _allowed_functions() -> dict[str, Callable[..., Any]]:
    functions: dict[str, Callable[..., Any]] = {
        "torch_utils.persistence._reconstruct_persistent_obj": _rebuild_persistent_object,
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
        "torch.storage._load_from_bytes": _load_storage_from_bytes,
        "numpy.dtype": _numeric_dtype,
        "numpy.core.multiarray.scalar": _numeric_scalar,  # numpy 1.x pickles
        "numpy._core.multiarray.scalar": _numeric_scalar,  # numpy 2.x pickles
    }
    return {name: _AllowedFunction(name, fn) for name, fn in functions.items()}


# The complete allow-list: the globals of an EG3D snapshot (docs/method/eg3d.md §4.2, "[verified]").
ALLOWED_GLOBALS: dict[str, Any] = {
    **_allowed_functions(),
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "dnnlib.util.EasyDict": dict,
    **_PLAIN_RECORD_CLASSES,
}


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` only resolves `ALLOWED_GLOBALS` (fail closed)."""

    def __init__(self, file: Any):
        super().__init__(file)
        self.globals_seen: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        qualified_name = f"{module}.{name}"
        logger.debug("pickle global %s", qualified_name)
        if qualified_name not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refusing pickle global {qualified_name!r}: it is not on the EG3D snapshot allow-list, "
                "so the file was not loaded and nothing in it was run"
            )
        self.globals_seen.add(qualified_name)
        return ALLOWED_GLOBALS[qualified_name]


class _HashingReader:
    """File wrapper that feeds every byte read into a sha256, so one pass both parses and hashes."""

    def __init__(self, file: io.BufferedReader):
        self.file = file
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.sha256.update(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.file.readline(size)
        self.sha256.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self.file.readinto(buffer)
        self.sha256.update(memoryview(buffer)[:n])
        return n

    def hexdigest_of_whole_file(self) -> str:
        """Hash what the unpickler did not read (bytes after STOP) and return the file's sha256."""
        while self.read(1 << 20):
            pass
        return self.sha256.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------------------------
@dataclass
class EG3DSnapshot:
    """Weights and metadata of an EG3D training snapshot, read without running its code."""

    path: Path
    """The pickle that was read."""
    state_dicts: dict[str, OrderedDict[str, torch.Tensor]]
    """'G' / 'D' / 'G_ema' (those present) -> flat state dict in `nn.Module.state_dict()` order."""
    meta: dict[str, Any]
    """JSON-serialisable metadata: configuration, class names, attributes, hashes."""
    records: dict[str, PersistentRecord]
    """The raw network records, for inspection."""


def read_eg3d_snapshot(path: str | Path) -> EG3DSnapshot:
    """Read an EG3D snapshot pickle (`network-snapshot-*.pkl`, `ffhq512-128.pkl`) safely.

    Raises :class:`UnsafePickleError` if the file references anything but tensors, EG3D's
    persistent-object records and plain data, and :class:`CheckpointError` if it is not a
    readable EG3D snapshot or fails the structural checks of docs/method/eg3d.md §4.3 step 3.
    """
    path = Path(path)
    data, globals_seen, sha256 = _unpickle(path)
    if not isinstance(data, dict) or all(data.get(name) is None for name in NETWORK_NAMES):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: expected an EG3D snapshot (a dict with 'G', 'D' and 'G_ema'), found {found}. "
            "Pass a network-snapshot-*.pkl written by EG3D's training loop."
        )
    records: dict[str, PersistentRecord] = {}
    for name in NETWORK_NAMES:
        if data.get(name) is None:
            continue
        if not isinstance(data[name], PersistentRecord):
            raise CheckpointError(f"{path}: {name} is a {type(data[name]).__name__}, not an EG3D network")
        records[name] = data[name]

    networks = {name: _read_network(name, record) for name, record in records.items()}
    problems = [problem for name, network in networks.items() for problem in _validate(name, network)]
    if problems:
        raise CheckpointError(
            f"{path}: not a supported EG3D network; failed checks:\n  - " + "\n  - ".join(problems)
        )
    sources: dict[str, set[str]] = {}
    for network in networks.values():
        for digest, class_names in network.module_src_sha256.items():
            sources.setdefault(digest, set()).update(class_names)
    meta = {
        "source": {"file": path.name, "sha256": sha256},
        "networks": {name: network.meta for name, network in networks.items()},
        "training_set_kwargs": _to_plain(data.get("training_set_kwargs"), "training_set_kwargs"),
        "module_src_sha256": {digest: sorted(names) for digest, names in sorted(sources.items())},
        "pickle_globals": sorted(globals_seen),
        "other_keys": sorted(str(k) for k in data if k not in NETWORK_NAMES and k != "training_set_kwargs"),
    }
    logger.debug("%s: pickle globals %s", path, meta["pickle_globals"])
    state_dicts = {name: network.state_dict for name, network in networks.items()}
    return EG3DSnapshot(path=path, state_dicts=state_dicts, meta=meta, records=records)


def _unpickle(path: Path) -> tuple[Any, set[str], str]:
    """Run the restricted unpickler on `path`; returns (object, globals seen, file sha256)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if not head:
            raise CheckpointError(f"{path}: the file is empty; re-download or re-copy it")
        if head.startswith(b"PK\x03\x04"):
            raise CheckpointError(
                f"{path}: this is a zip archive (e.g. a torch.save file or a dataset), not an EG3D snapshot "
                "pickle; pass a network-snapshot-*.pkl or a directory made by `convert`"
            )
        if head[0] != pickle.PROTO[0]:
            raise CheckpointError(f"{path}: not a pickle (EG3D snapshots are protocol-4 pickles)")
        reader = _HashingReader(f)
        unpickler = RestrictedUnpickler(reader)
        try:
            data = unpickler.load()
        except CheckpointError as e:
            raise type(e)(f"{path}: {e}") from None
        except Exception as e:  # truncated or corrupt data surfaces as many exception types
            raise CheckpointError(
                f"{path}: could not be read as a pickle ({type(e).__name__}: {e}). The file is truncated "
                "or corrupt; download it again and compare its sha256 with the published one."
            ) from e
        return data, unpickler.globals_seen, reader.hexdigest_of_whole_file()


# ---------------------------------------------------------------------------------------------
# From records to state dicts and metadata
# ---------------------------------------------------------------------------------------------
_GENERATOR_ATTRIBUTES = ("neural_rendering_resolution", "rendering_kwargs", "z_dim", "c_dim", "w_dim",
                         "img_resolution", "img_channels")


def iter_modules(record: Any, prefix: str = "") -> Iterator[tuple[str, PersistentRecord | PlainModuleRecord]]:
    """Yield (prefix, record) for a network record and its sub-modules, in `state_dict()` order.

    The root's prefix is ''; the others have no trailing dot ('backbone.mapping').
    """
    yield from _iter_modules(record, prefix, frozenset())


def _iter_modules(record: Any, prefix: str, ancestors: frozenset[int]) -> Iterator[tuple[str, Any]]:
    where = prefix or "<root>"
    if not isinstance(record, PersistentRecord | PlainModuleRecord) or record.state is None:
        raise CheckpointError(f"{where}: expected a module, found {type(record).__name__}")
    if id(record) in ancestors:
        raise CheckpointError(f"{where}: the module tree contains a cycle")
    yield prefix, record
    ancestors = ancestors | {id(record)}
    for name, child in _mapping(record.state, "_modules", where).items():
        if child is not None:
            yield from _iter_modules(child, f"{prefix}.{name}" if prefix else str(name), ancestors)


def _mapping(state: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = state.get(key, {})
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, expected a dict")
    return value


def _own_tensors(prefix: str, state: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters, then persistent buffers, of one module (what `_save_to_state_dict` emits)."""
    where = prefix or "<root>"
    non_persistent = state.get("_non_persistent_buffers_set", set())
    tensors = list(_mapping(state, "_parameters", where).items())
    tensors += [(k, v) for k, v in _mapping(state, "_buffers", where).items() if k not in non_persistent]
    for name, value in tensors:
        if value is None:
            continue
        key = f"{prefix}.{name}" if prefix else str(name)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{key}: expected a tensor, found {type(value).__name__}")
        yield key, value.detach()


@dataclass
class _Network:
    """One network read from a snapshot: its state dict, JSON metadata, and module states."""

    state_dict: OrderedDict[str, torch.Tensor]
    meta: dict[str, Any]
    states: dict[str, dict[str, Any]]
    module_src_sha256: dict[str, set[str]]


def _read_network(name: str, record: PersistentRecord) -> _Network:
    """Flatten one network record into its state dict and metadata."""
    state_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
    modules, attributes, states, sources = {}, {}, {}, {}
    for prefix, module in iter_modules(record):
        modules[prefix] = module.class_name
        states[prefix] = module.state
        attributes[prefix] = _scalar_attributes(module.state)
        state_dict.update(_own_tensors(prefix, module.state))
        if isinstance(module, PersistentRecord):
            sources.setdefault(module.module_src_sha256, set()).add(module.class_name)
    root = record.state
    meta: dict[str, Any] = {
        "class_name": record.class_name,
        "init_args": _to_plain(root.get("_init_args", ()), f"{name}._init_args"),
        "init_kwargs": _to_plain(root.get("_init_kwargs", {}), f"{name}._init_kwargs"),
    }
    if record.class_name == "TriPlaneGenerator":
        for attr in _GENERATOR_ATTRIBUTES:
            meta[attr] = _to_plain(root.get(attr), f"{name}.{attr}")
    meta["modules"] = modules
    meta["attributes"] = attributes
    return _Network(state_dict, meta, states, sources)


def _scalar_attributes(state: dict[str, Any]) -> dict[str, Any]:
    """A module's public attributes that are plain scalars (or lists of them), as Python values."""
    scalar = bool | int | float | str | np.generic | None
    out = {}
    for key, value in state.items():
        if key.startswith("_") or key == "training":
            continue
        is_sequence = isinstance(value, list | tuple) and all(isinstance(v, scalar) for v in value)
        if isinstance(value, scalar) or is_sequence:
            out[key] = _to_plain(value, key)
    return out


def _to_plain(value: Any, where: str) -> Any:
    """Metadata -> JSON-serialisable Python (EasyDict/OrderedDict -> dict, tuple -> list, numpy -> Python)."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _to_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"{where}: unexpected {type(value).__name__} in the snapshot metadata")


# ---------------------------------------------------------------------------------------------
# Structural checks (docs/method/eg3d.md §4.3 step 3)
# ---------------------------------------------------------------------------------------------
def _expected_fully_connected(prefix: str, network: dict[str, Any]) -> tuple[str, float] | None:
    """(activation, lr multiplier) EG3D gives the FullyConnectedLayer at `prefix` (docs/method/eg3d.md §3.1)."""
    init_kwargs = network["init_kwargs"]
    parent, _, leaf = prefix.rpartition(".")
    if leaf == "affine":
        return "linear", 1.0
    if parent.rpartition(".")[2] == "mapping":  # backbone.mapping (G) or mapping (D)
        if leaf == "embed":
            return "linear", 1.0
        if re.fullmatch(r"fc\d+", leaf):
            return "lrelu", float((init_kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01))
    if parent == "decoder.net":
        rendering_kwargs = network.get("rendering_kwargs") or {}
        return "linear", float(rendering_kwargs.get("decoder_lr_mul", 1))
    if network["class_name"] == "DualDiscriminator" and prefix in ("b4.fc", "b4.out"):
        return ("lrelu" if leaf == "fc" else "linear"), 1.0
    return None


def _validate(name: str, network: _Network) -> list[str]:
    """Every structural problem of one network, one line each (empty = fine)."""
    meta, states = network.meta, network.states
    modules, attributes = meta["modules"], meta["attributes"]
    problems = []
    if name in ("G", "G_ema"):
        if meta["class_name"] != "TriPlaneGenerator":
            return [f"{name}: class {meta['class_name']!r}, expected EG3D's 'TriPlaneGenerator'"]
        sr_class = modules.get("superresolution")
        if sr_class not in SUPERRESOLUTION_SPECS:
            problems.append(f"{name}.superresolution: class {sr_class!r}, "
                            f"expected one of {sorted(SUPERRESOLUTION_SPECS)}")
        blocks = [p for p in modules if re.fullmatch(r"backbone\.synthesis\.b\d+", p)]
        mapping = attributes.get("backbone.mapping", {})
        if mapping.get("num_ws") != 2 * len(blocks):  # one w per conv, plus the last torgb (docs/method/eg3d.md §3.6)
            problems.append(f"{name}.backbone.mapping.num_ws: {mapping.get('num_ws')!r}, expected "
                            f"{2 * len(blocks)} for {len(blocks)} synthesis blocks")
        beta = (meta["init_kwargs"].get("mapping_kwargs") or {}).get("w_avg_beta", 0.998)
        if mapping.get("w_avg_beta") != beta:
            problems.append(f"{name}.backbone.mapping.w_avg_beta: {mapping.get('w_avg_beta')!r}, "
                            f"expected {beta}")
        axes = states.get("renderer", {}).get("plane_axes")
        if not (isinstance(axes, torch.Tensor) and axes.shape == PLANE_AXES.shape
                and torch.equal(axes.float(), PLANE_AXES)):
            problems.append(f"{name}.renderer.plane_axes: not EG3D's fixed matrices (docs/method/eg3d.md §3.8)")
    elif meta["class_name"] != "DualDiscriminator":
        return [f"{name}: class {meta['class_name']!r}, expected EG3D's 'DualDiscriminator'"]
    for prefix, class_name in modules.items():
        if class_name == "FullyConnectedLayer":
            problems += _check_fully_connected(f"{name}.{prefix}", states[prefix],
                                               network.state_dict.get(f"{prefix}.weight"),
                                               _expected_fully_connected(prefix, meta))
    return problems


def _check_fully_connected(where: str, state: dict[str, Any], weight: torch.Tensor | None,
                           expected: tuple[str, float] | None) -> list[str]:
    if expected is None:
        return [f"{where}: unexpected FullyConnectedLayer at this position"]
    if weight is None or weight.ndim != 2:
        return [f"{where}: FullyConnectedLayer without a 2-D weight"]
    activation, lr_multiplier = expected
    problems = []
    if state.get("activation") != activation:
        problems.append(f"{where}.activation: {state.get('activation')!r}, expected {activation!r}")
    weight_gain, bias_gain = state.get("weight_gain"), state.get("bias_gain")
    in_features = weight.shape[1]
    expected_gain = lr_multiplier / math.sqrt(in_features)
    if not (isinstance(weight_gain, float) and math.isclose(weight_gain, expected_gain, rel_tol=1e-6)):
        problems.append(f"{where}.weight_gain: {weight_gain!r}, expected {lr_multiplier}/sqrt({in_features}) "
                        f"= {expected_gain:.6g}")
    if not (isinstance(bias_gain, int | float) and math.isclose(bias_gain, lr_multiplier, rel_tol=1e-6)):
        problems.append(f"{where}.bias_gain: {bias_gain!r}, expected the lr multiplier {lr_multiplier}")
    return problems
