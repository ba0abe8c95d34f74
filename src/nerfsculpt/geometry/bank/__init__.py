"""Sample banks: per-seed geometry artefacts of one generator, resumable and shardable.

A bank is a directory::

    bank/manifest.json              what the bank is: generator (fingerprint, config), sampling
                                    (seed -> z, psi, truncation cutoff, noise mode, conditioning camera),
                                    extraction parameters of every artefact, `what`, `seeds`
    bank/seeds/020000/
        sigma.safetensors           "sigma"  float16 [R, R, R], raw sigma on the grid, [x, y, z] order
        slab.safetensors            "slab"   float16 [128, 141, 129], raw sigma of the reward slab,
                                             (X, Y, Z) order (docs/method/reference_method.md §1.2-1.3; the reward
                                             model's (Z, Y, X) layout is `slab.slab_to_model_order`)
        mesh.glb, mesh.glb.json     iso-surface sigma = 10 in world units + its extraction sidecar
        depth.safetensors           "depth"  float32 [3, 1, 128, 128] from the dmap cameras (§2.1),
                                    "cameras" float32 [3, 25] their labels (names in the metadata)
        points.safetensors          "points" float32 [2048, 3] world-space point cloud (§2.3)
        render_front.png, render_three_quarter.png, render_profile.png   shaded geometry, uint8 RGB
        rgb.png                     the generator's image from the canonical camera
        meta.json                   written last: the seed and the size and sha256 of every file

Seed ``s`` means ``z = numpy.random.RandomState(s).randn(1, z_dim)`` (docs/method/reference_method.md §0.2), mapped
with the canonical camera as conditioning (§0.3) and truncated with ``psi`` over the first
``truncation_cutoff`` ws (default all of them, EG3D FFHQ: 14).

A seed is finished iff its ``meta.json`` exists and lists every requested artefact with files of the
recorded sizes. Every file is written to a temporary name and moved into place with ``os.replace``,
and ``meta.json`` goes last, so an interrupted run leaves nothing that looks finished; re-running
redoes exactly what is missing. One writer per bank at a time (one process, or one torchrun job).

Modules: ``bank.manifest`` (``BankConfig``, the manifest, ``parse_what``, which seeds are finished),
``bank.writer`` (``write_bank``, ``write_seed``) and ``bank.reader`` (``open_bank``, ``Bank``). Their
public names are importable from ``nerfsculpt.geometry.bank``.

Example::

    G, info = resolve_generator("tiny-random", "cpu")      # random weights: noise shapes, level 0
    config = BankConfig(resolution=32, slab_resolution=32, mesh_level=0.0, depth_resolution=32,
                        n_points=256, render_resolution=64)
    write_bank("bank", G, info, config, seeds=range(4), what=ARTEFACTS)
    bank = open_bank("bank")
    slab = bank.load(0, "slab")          # [16, 18, 17] (X, Y, Z) float32
"""

from nerfsculpt.geometry.bank.manifest import (
    ARTEFACT_FILES,
    ARTEFACTS,
    BANK_FORMAT,
    BANK_FORMAT_VERSION,
    DEFAULT_WHAT,
    GRIDS,
    MANIFEST_FILE,
    MESH_BORDERS,
    NOISE_MODES,
    RENDER_VIEWS,
    SEED_META_FILE,
    SEEDS_DIR,
    BankConfig,
    BankError,
    build_manifest,
    finished_artefacts,
    merge_manifest,
    parse_what,
    plan_bank,
    read_manifest,
    read_seed_meta,
    seed_dir_name,
)

__all__ = [
    "ARTEFACTS", "ARTEFACT_FILES", "BANK_FORMAT", "BANK_FORMAT_VERSION", "DEFAULT_WHAT", "GRIDS", "MANIFEST_FILE",
    "MESH_BORDERS", "NOISE_MODES", "RENDER_VIEWS", "SEEDS_DIR", "SEED_META_FILE", "Bank", "BankConfig", "BankError",
    "BankRunReport", "build_manifest", "finished_artefacts", "merge_manifest", "open_bank", "parse_what", "plan_bank",
    "prepare_bank", "read_manifest", "read_seed_meta", "seed_dir_name", "seed_latent", "write_bank", "write_seed",
]

_LAZY = {"Bank": "reader", "open_bank": "reader", "BankRunReport": "writer", "prepare_bank": "writer",
         "seed_latent": "writer", "write_bank": "writer", "write_seed": "writer"}
"""Names of the reader and writer (torch, numpy), imported on first use: the manifest and ``BankConfig``
stay light for the command line, which builds ``nerfsculpt sample``'s options from ``BankConfig``."""


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nerfsculpt.geometry.bank.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nerfsculpt.geometry.bank' has no attribute {name!r}")
