"""Seeds and latent codes: the project's seed -> z convention and the ``--seeds`` syntax.

A named seed ``s`` always means ``z = numpy.random.RandomState(s).randn(1, 512)``
(docs/method/reference_method.md §0.2; EG3D gen_samples.py does the same). numpy draws float64; the mapping
network casts to float32, so casting here gives the identical z.

Example::

    seeds = parse_seeds("20000-20002,7")   # [20000, 20001, 20002, 7]
    z = z_from_seeds(seeds)                 # [4, 512] float32, row i from seeds[i]
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

MAX_SEED = 2**32 - 1  # numpy.random.RandomState accepts seeds in [0, 2**32 - 1]
Z_DIM = 512  # EG3D FFHQ latent size

_TOKEN = re.compile(r"^(\d+)(?:-(\d+))?$")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**32 - 1] (numpy RandomState), got {seed}")
    return int(seed)


def z_from_seed(seed: int, z_dim: int = Z_DIM, device: torch.device | str | None = None) -> Tensor:
    """Latent [1, z_dim] float32 of one seed: ``RandomState(seed).randn(1, z_dim)`` cast to float32."""
    z = np.random.RandomState(_check_seed(seed)).randn(1, z_dim)  # (1, z_dim) float64
    return torch.from_numpy(z).to(device=device, dtype=torch.float32)


def z_from_seeds(
    seeds: Iterable[int], z_dim: int = Z_DIM, device: torch.device | str | None = None
) -> Tensor:
    """Latents [len(seeds), z_dim] float32; row i is ``z_from_seed(seeds[i])``.

    Each row comes from its own RandomState, so a seed's z does not depend on its batch. (This is
    not ``RandomState(s).randn(B, z_dim)``, whose rows 1.. are unrelated latents; docs/method/reference_method.md
    §2.1 documents that bug in the reference's depth-map data.)
    """
    seeds = [_check_seed(s) for s in seeds]
    if not seeds:
        raise ValueError("z_from_seeds needs at least one seed")
    return torch.cat([z_from_seed(s, z_dim, device) for s in seeds], dim=0)  # (B, z_dim)


def ws_from_seeds(G, seeds: Iterable[int], psi: float = 1.0, cutoff: int | None = None) -> Tensor:
    """ws [len(seeds), num_ws, w_dim] of ``G`` for seeds, mapped at the canonical camera (how every command
    samples a seed's geometry), with truncation ``psi`` / ``cutoff``; on G's device."""
    from nerfsculpt.camera import canonical_camera

    device = G.dataset_label_std.device
    z = z_from_seeds(seeds, G.z_dim, device)  # (B, z_dim)
    c = canonical_camera(device=device).expand(len(z), -1)  # (B, 25)
    return G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)


def parse_seeds(text: str) -> list[int]:
    """Parse a comma-separated list of seeds and inclusive ranges, in the given order.

    ``"20000-20099,5,7-9"`` -> ``[20000, ..., 20099, 5, 7, 8, 9]``. Whitespace around items is
    ignored. Raises ``ValueError`` on an empty list or item, a negative or non-integer seed, a
    reversed range, a seed above 2**32 - 1, or a seed listed twice (outputs are named by seed).

    >>> parse_seeds("3, 0-2")
    [3, 0, 1, 2]
    """
    if not text.strip():
        raise ValueError("no seeds given; expected e.g. '0-99' or '1,5,7-9'")
    seeds: list[int] = []
    seen: set[int] = set()
    for item in text.split(","):
        match = _TOKEN.match(item.strip())
        if match is None:
            raise ValueError(
                f"bad seed item {item.strip()!r} in {text!r}: expected a non-negative integer 'N' "
                "or an inclusive range 'A-B' with A <= B"
            )
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise ValueError(f"reversed seed range {item.strip()!r}: write {stop}-{start}")
        if stop > MAX_SEED:
            raise ValueError(f"seed {stop} in {item.strip()!r} exceeds 2**32 - 1 (numpy RandomState limit)")
        for seed in range(start, stop + 1):
            if seed in seen:
                raise ValueError(f"seed {seed} is listed more than once in {text!r}")
            seen.add(seed)
            seeds.append(seed)
    return seeds
