"""Networks of a fine-tuning run: where they start, how they are saved, how a run resumes.

A run directory::

    RUN/config.json                  the resolved FinetuneConfig + what the run started from
    RUN/pretrained/                  G_ema of the starting generator (G_old of L_c; the data-free "real" images)
    RUN/snapshots/<iteration>/       G, G_ema, D (nerfsculpt's network format: any command loads it as a
                                     generator) + optimizer.safetensors + state.json
    RUN/latest.json                  {"snapshot": "snapshots/0000315", ...}: the newest complete snapshot

Each snapshot directory appears atomically (staging directory + rename) and ``latest.json`` is
replaced atomically after it, so an interrupted write leaves the previous snapshot as the latest.

Example::

    start = load_start("synthetic", device)           # G, G_ema, D (None: the checkpoint has none)
    save_snapshot(run, iteration, G, G_ema, D, optimizers, state)
    snapshot = latest_snapshot(run)                    # Path or None
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nerfsculpt.atomic import write_atomic
from nerfsculpt.finetune.config import FinetuneError
from nerfsculpt.generator.builtin import (
    BUILTIN_GENERATORS,
    GeneratorInfo,
    checkpoint_path,
    describe_generator,
    resolve_generator,
)
from nerfsculpt.generator.config import DiscriminatorConfig
from nerfsculpt.generator.discriminator import DualDiscriminator
from nerfsculpt.generator.triplane import TriPlaneGenerator
from nerfsculpt.runlog import load_optimizer_tensors, optimizer_tensors

log = logging.getLogger(__name__)

LATEST_FILE = "latest.json"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


@dataclass
class StartNetworks:
    """The networks a run starts from (all on the training device, G and D trainable copies)."""

    G: TriPlaneGenerator
    G_ema: TriPlaneGenerator
    D: DualDiscriminator | None
    info: GeneratorInfo
    notes: list[str]


def discriminator_config_for(G: TriPlaneGenerator) -> DiscriminatorConfig:
    """A DualDiscriminator for ``G``'s images, with G's channel widths (as EG3D's train.py builds them)."""
    return DiscriminatorConfig(c_dim=G.c_dim, img_resolution=G.img_resolution, img_channels=G.img_channels,
                               channel_base=G.config.channel_base, channel_max=G.config.channel_max)


def load_start(spec: str, device: torch.device, discriminator: str | None = None) -> StartNetworks:
    """G, G_ema and D of a built-in name or checkpoint; a missing G or G_ema is a copy of the other."""
    from nerfsculpt.generator.checkpoint import CheckpointError, load_network

    notes: list[str] = []
    if spec in BUILTIN_GENERATORS:
        G_ema, info = resolve_generator(spec, device)
        G, D = None, None
    else:
        path = checkpoint_path(spec)
        network = load_network(path, device)  # one read of the file for every network
        G, G_ema, D = network["G"], network["G_ema"], network["D"]
        if G_ema is None:
            G_ema = copy.deepcopy(G)
            notes.append("the checkpoint has no G_ema: started it from G")
        info = describe_generator(G_ema, spec, path)
    if G is None:
        G = copy.deepcopy(G_ema)
        notes.append("the checkpoint has no G (non-EMA weights): started G from G_ema")
    if discriminator is not None:
        try:
            D = load_network(Path(discriminator).expanduser(), device)["D"]
        except CheckpointError as error:
            raise FinetuneError(f"--discriminator: {error}") from None
        if D is None:
            raise FinetuneError(f"--discriminator {discriminator} has no D network")
    if D is not None and (D.img_resolution != G.img_resolution or D.c_dim != G.c_dim):
        raise FinetuneError(f"the discriminator takes {D.img_resolution}px images with {D.c_dim}-number labels, the "
                            f"generator makes {G.img_resolution}px images with {G.c_dim}; pass a matching "
                            f"--discriminator or none (a new one is built)")
    return StartNetworks(G=G, G_ema=G_ema, D=D, info=info, notes=notes)


def new_discriminator(G: TriPlaneGenerator, seed: int, device: torch.device) -> DualDiscriminator:
    """A freshly initialised D for ``G`` (seeded, independent of the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DualDiscriminator(discriminator_config_for(G)).to(device)


def save_snapshot(run: Path, iteration: int, G: nn.Module, G_ema: nn.Module, D: nn.Module,
                  optimizers: dict[str, torch.optim.Optimizer], state: dict[str, Any]) -> Path:
    """Write ``RUN/snapshots/<iteration>`` atomically, then point ``latest.json`` at it. Returns the snapshot."""
    from safetensors.torch import save

    from nerfsculpt.generator.checkpoint import save_network

    name = f"snapshots/{iteration:07d}"
    tensors = {f"{key}.{k}": v for key, opt in optimizers.items() for k, v in optimizer_tensors(opt).items()}
    extra = {OPTIMIZER_FILE: save(tensors), STATE_FILE: (json.dumps(state, indent=2) + "\n").encode()}
    save_network(run / name, G=G, D=D, G_ema=G_ema, meta={"finetune": state}, overwrite=True, extra_files=extra)
    write_atomic(run / LATEST_FILE, (json.dumps({"snapshot": name, "iteration": iteration}) + "\n").encode())
    return run / name


def latest_snapshot(run: Path) -> Path | None:
    """The snapshot ``latest.json`` names, or None before the first one; FinetuneError if it is unreadable."""
    path = run / LATEST_FILE
    if not path.is_file():
        return None
    try:
        snapshot = run / json.loads(path.read_text())["snapshot"]
    except (ValueError, KeyError, TypeError) as error:
        raise FinetuneError(f"{path} is damaged ({error}); point it at a directory in {run / 'snapshots'} "
                            f'as {{"snapshot": "snapshots/NNNNNNN"}}') from None
    if not (snapshot / STATE_FILE).is_file():
        raise FinetuneError(f"{path} names {snapshot}, which is not a complete snapshot")
    return snapshot


def load_snapshot(snapshot: Path, G: nn.Module, G_ema: nn.Module, D: nn.Module,
                  optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Load a snapshot's weights and optimiser state into the given (already built) modules; returns its state."""
    from safetensors.torch import load_file

    for name, module in (("G", G), ("G_ema", G_ema), ("D", D)):
        device = next(module.parameters()).device
        module.load_state_dict(load_file(snapshot / f"{name}.safetensors", device=str(device)), strict=True)
    tensors = load_file(snapshot / OPTIMIZER_FILE)
    for key, opt in optimizers.items():
        mine = {name[len(key) + 1:]: v for name, v in tensors.items() if name.startswith(f"{key}.")}
        load_optimizer_tensors(opt, mine)
    return json.loads((snapshot / STATE_FILE).read_text())
