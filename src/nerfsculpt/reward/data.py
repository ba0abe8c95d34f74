"""Training inputs of the rewards: raw reward slabs (or depth maps, point clouds) for ranked lists' items.

An item (``preferences.store.Item``: generator, seed, psi, cutoff, noise mode) becomes the raw
sigma slab [X, Y, Z] that its generator produces on the bundle's slab (``Extraction``), exactly
as ``reward.scoring`` samples it. Two sources:

- :class:`GeneratorSlabs`: computed on demand from the generator, kept as float16 (the reference
  stores its training slabs as float16 too, docs/method/reference_method.md §1.3): with ``cache_dir`` on disk,
  one safetensors file per item, reused by later runs (``reward train`` always uses one); without,
  in memory;
- :class:`BankInputs`: read from sample banks (``nerfsculpt sample --what slab|depth|points``),
  one bank per psi (e.g. the ranked seeds at psi 1 and the anchors at psi 0.25); also the depth
  maps and point clouds of the baselines.

:func:`prepare` fills a source for every item of a set of lists (with a progress bar), so the
epochs then only read memory or disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from nerfsculpt.atomic import write_atomic
from nerfsculpt.preferences.pairs import RankedList
from nerfsculpt.preferences.store import Item
from nerfsculpt.reward.bundle import BundleError, Extraction

log = logging.getLogger(__name__)


class InputSource(Protocol):
    """Where a reward's raw inputs come from: ``load(item)`` -> one raw input (sigma: [X, Y, Z])."""

    def load(self, item: Item) -> Tensor:
        ...


def item_key(item: Item) -> tuple:
    """What determines an item's slab (the view is always the canonical camera for sigma)."""
    return (item.seed, float(item.psi), item.cutoff, item.noise_mode)


class GeneratorSlabs:
    """Slabs computed from a generator, kept as float16: on disk under ``cache_dir`` (read back when
    needed, so memory stays flat: a 256^3 slab is 4.7 MB), or in memory without one."""

    def __init__(self, G: nn.Module, extraction: Extraction, cache_dir: str | Path | None = None,
                 fingerprint: str | None = None, batch: int = 4):
        self.G = G
        self.extraction = extraction
        self.spec = dataclasses.replace(extraction.slab_spec, cube_length=float(G.rendering_kwargs["box_warp"]))
        self.batch = batch
        self.memory: dict[tuple, Tensor] = {}
        self.cache_dir = None
        if cache_dir is not None:
            from nerfsculpt.generator.builtin import generator_fingerprint

            identity = {"generator": fingerprint or generator_fingerprint(G), "slab": dataclasses.asdict(self.spec),
                        "eg3d_grid": extraction.eg3d_grid}
            tag = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
            self.cache_dir = Path(cache_dir) / tag
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.cache_dir / "identity.json", (json.dumps(identity, indent=2) + "\n").encode())

    def _file(self, key: tuple) -> Path:
        seed, psi, cutoff, noise = key
        return self.cache_dir / f"s{seed}_psi{psi:g}_c{cutoff}_{noise}.safetensors"

    def _load(self, key: tuple) -> Tensor | None:
        if key in self.memory:
            return self.memory[key]
        if self.cache_dir is not None and self._file(key).is_file():
            from safetensors.torch import load_file

            return load_file(self._file(key))["slab"]
        return None

    def _known(self, key: tuple) -> bool:
        return key in self.memory or (self.cache_dir is not None and self._file(key).is_file())

    def known(self, item: Item) -> bool:
        return self._known(item_key(item))

    def compute(self, items: Sequence[Item], on_done: Callable[[int], object] | None = None) -> None:
        """Compute and store the slabs of ``items`` not yet known (latents batched by psi/cutoff/noise);
        ``on_done(n)`` is called after each batch of n slabs."""
        from nerfsculpt.geometry.sigma import reward_slab
        from nerfsculpt.latents import ws_from_seeds

        todo = [key for key in dict.fromkeys(item_key(i) for i in items) if not self._known(key)]
        groups: dict[tuple, list[int]] = {}
        for seed, psi, cutoff, noise in todo:
            groups.setdefault((psi, cutoff, noise), []).append(seed)
        for (psi, cutoff, noise), seeds in groups.items():
            for start in range(0, len(seeds), self.batch):
                chunk = seeds[start : start + self.batch]
                with torch.no_grad():
                    ws = ws_from_seeds(self.G, chunk, psi, cutoff)
                    slabs = reward_slab(self.G, ws, self.spec, noise_mode=noise, eg3d_grid=self.extraction.eg3d_grid)
                for seed, slab in zip(chunk, slabs.half().cpu(), strict=True):
                    key = (seed, psi, cutoff, noise)
                    if self.cache_dir is None:
                        self.memory[key] = slab
                    else:
                        from safetensors.torch import save

                        write_atomic(self._file(key), save({"slab": slab.contiguous()}))
                if on_done is not None:
                    on_done(len(chunk))

    def load(self, item: Item) -> Tensor:  # -> [X, Y, Z] float32 raw sigma
        key = item_key(item)
        found = self._load(key)
        if found is None:
            self.compute([item])
            found = self._load(key)
        return found.float()


BANK_ARTEFACT = {"sigma_slab": "slab", "depth_single": "depth", "depth_triple": "depth", "points": "points"}
"""Bank artefact holding each representation's raw input."""


class BankInputs:
    """Raw inputs read from sample banks, from the bank whose psi matches the item's, by seed.

    sigma_slab -> the slab [X, Y, Z] (checked to be cut as ``extraction`` says); depth_triple -> the
    three depth maps [3, 1, H, W]; depth_single -> the canonical one [1, 1, H, W]; points -> [P, 3].
    """

    def __init__(self, banks: Iterable, extraction: Extraction):
        from nerfsculpt.reward.scoring import check_bank_matches

        self.representation = extraction.representation
        self.artefact = BANK_ARTEFACT[self.representation]
        self.by_psi = {}
        for bank in banks:
            if self.artefact not in bank.manifest["what"]:
                raise BundleError(f"{bank.path} has no {self.artefact!r}; add it with 'nerfsculpt sample "
                                  f"--what {self.artefact} ...'")
            if self.representation == "sigma_slab":
                check_bank_matches(extraction, bank.manifest)
            psi = float(bank.manifest["sampling"]["psi"])
            if psi in self.by_psi:
                raise BundleError(f"two banks at psi {psi} ({self.by_psi[psi].path}, {bank.path}); pass one per psi")
            self.by_psi[psi] = bank

    def load(self, item: Item) -> Tensor:
        bank = self.by_psi.get(float(item.psi))
        if bank is None:
            raise BundleError(f"no bank at psi {item.psi} for item seed {item.seed} (banks at psi "
                              f"{sorted(self.by_psi)}); sample one with "
                              f"'nerfsculpt sample --psi {item.psi} --what {self.artefact}'")
        raw = bank.load(item.seed, self.artefact)
        if self.representation == "depth_single":
            names = bank.manifest["extraction"]["depth"]["cameras"]
            view = names.index("front")
            raw = raw[view : view + 1]  # (1, 1, H, W): the canonical view
        return raw


def items_of(lists: Iterable[RankedList]) -> list[Item]:
    """The distinct items of ranked lists, in first-seen order."""
    return list(dict.fromkeys(item for ranked in lists for item in ranked.items))


def prepare(source: InputSource, items: Sequence[Item], progress: bool = True) -> None:
    """Make every item's input available (computed now for a generator source, read once from banks)."""
    from tqdm import tqdm

    with tqdm(total=len(items), disable=not progress, unit="slab", desc="slabs") as bar:
        if isinstance(source, GeneratorSlabs):
            bar.update(sum(1 for item in items if source.known(item)))
            source.compute(items, on_done=bar.update)
        else:
            for item in items:
                source.load(item)
                bar.update(1)


def ranking_tensor(lists: Sequence[RankedList], source: InputSource) -> tuple[Tensor, Tensor, Tensor]:
    """Raw inputs of a batch of ranked lists: (inputs [S, ...], lengths [B], offsets [B]).

    Inputs are concatenated list after list (best first); list b owns rows
    ``offsets[b] : offsets[b] + lengths[b]``.
    """
    inputs = [source.load(item) for ranked in lists for item in ranked.items]
    lengths = torch.tensor([len(r.items) for r in lists])
    offsets = torch.cumsum(lengths, 0) - lengths
    return torch.stack(inputs), lengths, offsets
