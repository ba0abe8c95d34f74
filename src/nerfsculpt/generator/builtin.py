"""Generators by name or by path, and a format-independent fingerprint of their weights.

Every command that takes ``--generator`` goes through :func:`resolve_generator`, which accepts

- a built-in name (see :data:`BUILTIN_GENERATORS`): ``synthetic``, a small EG3D fitted to the
  procedural heads of ``nerfsculpt.synthetic`` (shipped weights, the default), or ``tiny-random``,
  a tiny EG3D with **random weights, for trying the tools only** -- its shapes are noise, not faces;
- an EG3D snapshot pickle (``ffhq512-128.pkl``), read safely by ``generator.checkpoint``;
- a directory written by ``nerfsculpt convert`` or its ``config.json``.

Example::

    G, info = resolve_generator("tiny-random", "cpu")
    info.fingerprint        # sha256 of the weights; equal for a .pkl and its converted directory
    G, info = resolve_generator("checkpoints/ffhq512-128", "cuda")

New built-ins are added with :func:`register_builtin` (a name, a one-line description, a builder).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from nerfsculpt.generator.config import tiny_config
from nerfsculpt.generator.safe_pickle import CheckpointError
from nerfsculpt.generator.triplane import TriPlaneGenerator

__all__ = [
    "BUILTIN_GENERATORS",
    "BuiltinGenerator",
    "GeneratorInfo",
    "generator_fingerprint",
    "register_builtin",
    "resolve_generator",
]


@dataclass(frozen=True)
class BuiltinGenerator:
    """A generator that needs no file: built from code with fixed weights."""

    name: str
    """What ``--generator`` accepts."""
    description: str
    """One line shown by ``nerfsculpt info`` and stored in bank manifests."""
    build: Callable[[], TriPlaneGenerator]
    """Builds the generator on the CPU; must give the same weights on every call."""


BUILTIN_GENERATORS: dict[str, BuiltinGenerator] = {}
"""Built-in generators by name."""


def register_builtin(name: str, description: str, build: Callable[[], TriPlaneGenerator]) -> BuiltinGenerator:
    """Add a built-in generator. Names must not look like paths (no '/', no suffix such as '.pkl')."""
    if name in BUILTIN_GENERATORS:
        raise ValueError(f"a built-in generator named {name!r} already exists")
    if "/" in name or Path(name).suffix:
        raise ValueError(f"built-in generator names must not look like paths, got {name!r}")
    BUILTIN_GENERATORS[name] = BuiltinGenerator(name, description, build)
    return BUILTIN_GENERATORS[name]


TINY_RANDOM_SEED = 0
"""torch seed of the ``tiny-random`` weights."""


def _build_tiny_random() -> TriPlaneGenerator:
    # Private RNG state: building it neither depends on nor disturbs the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_RANDOM_SEED)
        return TriPlaneGenerator(tiny_config())


register_builtin(
    "tiny-random",
    "tiny EG3D (tiny_config: 32^2 planes, 16 px rendering) with random weights, for trying the tools only; "
    "its shapes are noise, not faces",
    _build_tiny_random,
)


def synthetic_weights_dir() -> Path:
    """Package data of the ``synthetic`` generator: ``config.json`` + ``G_ema.safetensors``."""
    return Path(str(resources.files("nerfsculpt.synthetic") / "data" / "synthetic"))


def _build_synthetic() -> TriPlaneGenerator:
    from nerfsculpt.generator.checkpoint import load_generator

    directory = synthetic_weights_dir()
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"the synthetic generator's weights are missing from this installation ({directory}); "
                              "reinstall nerfsculpt, or fit them with 'nerfsculpt synthetic fit'")
    return load_generator(directory)


register_builtin(
    "synthetic",
    "small EG3D (64^2 tri-planes, 32 px rendering, 128 px images) fitted to nerfsculpt's procedural heads "
    "with known geometric defects (nerfsculpt.synthetic); the default generator of every command",
    _build_synthetic,
)


@dataclass(frozen=True)
class GeneratorInfo:
    """Where a generator came from and which weights it has (stored in every artefact's manifest)."""

    spec: str
    """What the user passed: a built-in name or a path."""
    kind: str
    """'builtin', 'eg3d-pickle' or 'converted'."""
    network: str
    """Which network of the checkpoint: 'G_ema' (the sampling weights) or 'G'."""
    fingerprint: str
    """:func:`generator_fingerprint` of the weights (64 hex digits)."""
    config: dict[str, Any]
    """The generator's configuration (``GeneratorConfig.to_dict()``, with its live rendering state)."""
    description: str = ""
    """Human-readable note, e.g. the built-in's description."""
    path: str | None = None
    """Absolute path of the checkpoint (None for built-ins)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth recording (e.g. the checkpoint's notes)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "kind": self.kind, "network": self.network, "fingerprint": self.fingerprint,
            "description": self.description, "path": self.path, "config": self.config, **self.extra,
        }


def generator_fingerprint(G: torch.nn.Module) -> str:
    """sha256 (hex) of a module's state dict: keys sorted, each as name, dtype, shape and raw bytes.

    Depends only on the weights and buffers, so a snapshot pickle and its converted safetensors
    directory give the same id, on any device.
    """
    digest = hashlib.sha256()
    state = G.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        header = f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\0"
        digest.update(header.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return digest.hexdigest()


def _live_config(G: TriPlaneGenerator) -> dict[str, Any]:
    config = G.config.to_dict()
    config["neural_rendering_resolution"] = int(G.neural_rendering_resolution)
    config["rendering_kwargs"] = dict(G.rendering_kwargs)
    return config


def checkpoint_kind(path: Path) -> str:
    """'converted' for a directory (or its config.json) made by nerfsculpt, else 'eg3d-pickle'."""
    return "converted" if path.is_dir() or path.suffix == ".json" else "eg3d-pickle"


def describe_generator(G: TriPlaneGenerator, spec: str, path: Path | None, network: str = "G_ema") -> GeneratorInfo:
    """The :class:`GeneratorInfo` of a generator loaded from ``path`` (None for a built-in named ``spec``)."""
    if path is None:
        return GeneratorInfo(spec=spec, kind="builtin", network=network, fingerprint=generator_fingerprint(G),
                             config=_live_config(G), description=BUILTIN_GENERATORS[spec].description)
    return GeneratorInfo(spec=spec, kind=checkpoint_kind(path), network=network, fingerprint=generator_fingerprint(G),
                         config=_live_config(G), path=str(path.resolve()))


def resolve_generator(
    spec: str, device: str | torch.device = "cpu", network: str = "G_ema"
) -> tuple[TriPlaneGenerator, GeneratorInfo]:
    """Load a generator from a built-in name or a checkpoint path; eval mode, frozen, on ``device``.

    Raises ``CheckpointError`` with what to do next when ``spec`` names neither.
    """
    if spec in BUILTIN_GENERATORS:
        G = BUILTIN_GENERATORS[spec].build().eval().requires_grad_(False)
        return G.to(device), describe_generator(G, spec, None, network)

    path = checkpoint_path(spec)
    from nerfsculpt.generator.checkpoint import load_generator

    G = load_generator(path, device="cpu", network=network)
    return G.to(device), describe_generator(G, spec, path, network)


def checkpoint_path(spec: str) -> Path:
    """``spec`` as an existing path; CheckpointError saying what ``--generator`` accepts otherwise."""
    path = Path(spec).expanduser()
    if not path.exists():
        names = ", ".join(sorted(BUILTIN_GENERATORS))
        raise CheckpointError(
            f"--generator {spec!r}: no such file or directory, and not a built-in generator ({names}); "
            "pass an EG3D .pkl, a directory made by 'nerfsculpt convert', or a built-in name"
        )
    return path
