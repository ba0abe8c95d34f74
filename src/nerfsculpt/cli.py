"""The nerfsculpt command line: ``nerfsculpt <command> [options]``; ``nerfsculpt <command> --help``.

``DESCRIPTION`` is the top-level help. This module imports neither torch nor numpy at import time,
and neither does building the parser, so ``nerfsculpt --help`` is instant; each command imports
what it needs when it runs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import os
import sys
import traceback
from typing import Any, NoReturn

from nerfsculpt.errors import NerfsculptError

logger = logging.getLogger("nerfsculpt")

# camera.FOCAL_PAPER (EG3D's FOV_to_intrinsics(18.837)), computed here to keep this module light;
# a test checks that both are equal.
FOCAL_PAPER = 1.0 / (math.tan(18.837 * 3.14159 / 360.0) * 1.414)
DEFAULT_WHAT = "sigma,slab,mesh,depth,renders"  # geometry.bank.DEFAULT_WHAT; checked by a test
FOCAL_FFHQ_DATASET = 2985.29 / 700  # camera.FOCAL_FFHQ_DATASET (docs/method/eg3d.md §5.1); checked by a test


DESCRIPTION = """\
Improve the 3D geometry (the density field sigma) of EG3D-family generators from human preferences.

The method, one command per stage (the built-in 'synthetic' generator is the default everywhere):
  sample -> label -> reward train -> finetune -> study

Exit codes: 0 success; 2 bad usage or input (one line saying what to do; --verbose adds the
traceback); 1 an unexpected failure; 130 interrupted (re-run the same command to resume)."""


class UsageError(NerfsculptError):
    """Bad command-line input; the message says what to do instead."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors that point to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the docstring layout (usage examples) of each command.

    No "(default: ...)" is added where the help already states it, for flags (on when given, off
    otherwise: a default of True beside '--no-x' reads backwards) or for a default of None.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.nargs == 0 or action.default is None:
            return text
        return super()._get_help_string(action)


def _usage(doc: str | None) -> str:
    """A command's docstring as its --help description: reST literals (``x``) shown as 'x'."""
    return inspect.cleandoc(doc or "").replace("``", "'")


# ------------------------------------------------------------------------------------------------
# convert


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert an EG3D snapshot pickle into safetensors (EG3D key names) + config.json.

    Loading the result needs only nerfsculpt; the pickle is read without running any of its code.

        nerfsculpt convert ffhq512-128.pkl checkpoints/ffhq512-128
        nerfsculpt convert network-snapshot-000400.pkl checkpoints/run400 --overwrite
        nerfsculpt convert ffhq512-128.pkl checkpoints/ffhq512-128 --dry-run

    Writes OUT_DIR/{G,G_ema,D}.safetensors and OUT_DIR/config.json (atomically: complete or not at
    all). Use the directory anywhere a generator is expected: ``nerfsculpt sample --generator OUT_DIR``.
    """
    from pathlib import Path

    from nerfsculpt.generator.builtin import generator_fingerprint
    from nerfsculpt.generator.checkpoint import convert, load_network

    src, out = Path(args.input), Path(args.out_dir)
    if not src.is_file():
        raise UsageError(f"input {src} is not a file; pass an EG3D snapshot .pkl (e.g. ffhq512-128.pkl)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise UsageError(f"{out} already exists and is not empty; pass --overwrite or choose another OUT_DIR")
    if args.dry_run:
        net = load_network(src)
        generator = net["G_ema"] if net["G_ema"] is not None else net["G"]
        print(json.dumps({
            "input": str(src), "out_dir": str(out), "overwrite": args.overwrite,
            "networks": [name for name in ("G", "G_ema", "D") if net[name] is not None],
            "generator_fingerprint": generator_fingerprint(generator) if generator is not None else None,
            "generator": generator.config.to_dict() if generator is not None else None,
            "notes": net["meta"].get("notes", []),
        }, indent=2))
        return 0
    convert(src, out, overwrite=args.overwrite)
    net = load_network(out)  # read back: the directory loads with nerfsculpt alone
    generator = net["G_ema"] if net["G_ema"] is not None else net["G"]
    fingerprint = generator_fingerprint(generator) if generator is not None else None
    logger.info("wrote %s (safetensors + config.json); generator fingerprint %s", out, fingerprint)
    print(out)
    return 0


def _add_convert(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("convert", parents=[common], help="EG3D .pkl -> safetensors + config.json",
                              description=_usage(cmd_convert.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("input", metavar="IN.pkl", help="EG3D snapshot pickle (e.g. ffhq512-128.pkl)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory to create (must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.add_argument("--dry-run", action="store_true", help="read and check IN.pkl, print what would be written")
    p.set_defaults(handler=cmd_convert)


# ------------------------------------------------------------------------------------------------
# sample


def cmd_sample(args: argparse.Namespace) -> int:
    """Write a sample bank: per-seed sigma / reward slab / mesh / depth maps / renders, plus a manifest.

        nerfsculpt sample --seeds 0-7 --out bank/             # the built-in synthetic generator
        nerfsculpt sample --generator checkpoints/ffhq512-128 --seeds 20000-20099 --out bank/
        nerfsculpt sample --generator ffhq512-128.pkl --seeds 100000-100999 --psi 0.25 --out anchors/
        nerfsculpt sample --generator ffhq512-128.pkl --seeds 0-9 --what slab,depth --out bank/ --dry-run
        torchrun --nproc_per_node=4 -m nerfsculpt sample --generator ffhq512-128.pkl \\
            --seeds 20000-29999 --out bank/

    The default generator, synthetic, is a small EG3D fitted to procedural heads with known defects
    (nerfsculpt.synthetic). tiny-random is smaller still, with random weights (noise, not faces):

        nerfsculpt sample --generator tiny-random --seeds 0-3 --out tiny_bank/ --resolution 64 \\
            --slab-resolution 64 --depth-resolution 32 --render-resolution 64 --mesh-level 0

    Seed s is z = numpy.random.RandomState(s).randn(1, z_dim) (EG3D's convention), mapped with the
    canonical camera as conditioning and truncated with --psi. Re-running the same command skips
    finished seeds and redoes unfinished ones; adding seeds or --what items to an existing bank is
    allowed, other settings are refused (a bank never mixes generators or parameters). Under
    torchrun the unfinished seeds are sharded across processes; each is written exactly once.
    Layout and file formats: nerfsculpt.geometry.bank. Read a bank with
    ``nerfsculpt.geometry.bank.open_bank(path)``.
    """
    from nerfsculpt.geometry.bank import BankConfig, parse_what
    from nerfsculpt.latents import parse_seeds

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as e:
        raise UsageError(f"--seeds: {e}") from e
    try:
        what = parse_what(args.what)
        config = BankConfig(
            psi=args.psi, truncation_cutoff=args.truncation_cutoff, noise_mode=args.noise_mode, focal=args.focal,
            resolution=args.resolution, slab_resolution=args.slab_resolution, mesh_level=args.mesh_level,
            mesh_border=args.mesh_border, depth_resolution=args.depth_resolution, n_points=args.n_points,
            render_resolution=args.render_resolution, grid=args.grid, slab_grid=args.slab_grid,
        )
        config.check_what(what)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.chunk_points < 1:
        raise UsageError(f"--chunk-points must be >= 1, got {args.chunk_points}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(args.device, local_rank, world_size)
    if args.dry_run:
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(_sample_plan(args, config, seeds, what, device, world_size), indent=2))
        return 0

    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.geometry.bank import open_bank, write_bank

    rank = _init_distributed(device, world_size)
    try:
        G, info = resolve_generator(args.generator, device, network=args.network)
        report = write_bank(args.out, G, info, config, seeds, what, chunk_points=args.chunk_points,
                            progress=not args.no_progress)
        if rank == 0:
            complete = len(open_bank(args.out).seeds(what))
            logger.info("bank %s: %d of %d requested seeds were already finished, %d written; "
                        "%d seeds of the bank are finished for %s", args.out, report.already_finished,
                        report.requested, report.written, complete, ",".join(what))
        if report.empty_meshes:
            logger.warning("%d seed(s) have no surface at --mesh-level %g (no mesh.glb; e.g. seed %d); lower "
                           "--mesh-level if that is unexpected", len(report.empty_meshes), config.mesh_level,
                           report.empty_meshes[0])
    finally:
        if world_size > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _sample_plan(args: argparse.Namespace, config: Any, seeds: list[int], what: tuple[str, ...], device: Any,
                 world_size: int) -> dict[str, Any]:
    """The resolved configuration of a sample run, and what it would write (nothing is written)."""
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.geometry.bank import build_manifest, merge_manifest, plan_bank

    G, info = resolve_generator(args.generator, "cpu", network=args.network)
    manifest, _ = merge_manifest(args.out, build_manifest(G, info, config, what, seeds))
    todo = plan_bank(args.out, seeds, what)
    manifest = {**manifest, "seeds": f"{len(manifest['seeds'])} seeds"}
    return {
        "out": args.out, "device": str(device), "world_size": world_size, "chunk_points": args.chunk_points,
        "what": list(what), "seeds": args.seeds, "n_seeds": len(seeds), "n_to_write": len(todo),
        "manifest": manifest,
    }


def _cutoff(text: str) -> int | None:
    """``--truncation-cutoff``: 'all' -> None (every ws), else a positive integer."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None


def _resolve_device(text: str, local_rank: int, world_size: int) -> Any:
    import torch

    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--device {text!r} is not a device; use cpu, cuda or cuda:N") from e
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UsageError(f"--device {text!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {text}: CUDA is not available here; pass --device cpu")
    if world_size > 1:
        if device.index not in (None, local_rank):
            logger.warning("--device %s ignored under torchrun: rank uses cuda:%d (LOCAL_RANK)", text, local_rank)
        return torch.device("cuda", local_rank)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


def _init_distributed(device: Any, world_size: int) -> int:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA); returns this process's rank."""
    if world_size <= 1:
        return 0
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank()


def _add_sample(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("sample", parents=[common], help="write a per-seed geometry sample bank",
                              description=_usage(cmd_sample.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("--generator", default="synthetic", metavar="PATH|NAME",
                   help="EG3D .pkl, a directory from 'nerfsculpt convert', or a built-in name: synthetic (fitted "
                        "to procedural heads with known defects) or tiny-random (random weights)")
    p.add_argument("--seeds", required=True, default=argparse.SUPPRESS, metavar="LIST",
                   help="seeds and inclusive ranges, e.g. 20000-20099 or 1,5,7-9")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, metavar="DIR",
                   help="bank directory (created, or resumed)")
    p.add_argument("--what", default=DEFAULT_WHAT, metavar="LIST",
                   help="comma-separated artefacts: sigma, slab, mesh, depth, points, renders, or 'all' "
                        "(sigma is 32 MiB per seed at --resolution 256)")
    p.add_argument("--network", default="G_ema", choices=("G_ema", "G"),
                   help="which generator of the checkpoint; the paper samples G_ema (§0.1)")
    g = p.add_argument_group("sampling (docs/method/reference_method.md §0.2-0.3, §1.1)")
    g.add_argument("--psi", type=float, default=1.0,
                   help="truncation psi: 1.0 for the ranked seeds, 0.25 for the HQ anchors 100000-100999")
    g.add_argument("--truncation-cutoff", type=_cutoff, default="all",
                   metavar="N|all",
                   help="number of leading ws truncated, or 'all' (G.num_ws: 14 for EG3D FFHQ's 256 backbone)")
    g.add_argument("--noise-mode", default="const", choices=("const", "random", "none"),
                   help="backbone noise; 'const' in every geometry extraction of the paper")
    g.add_argument("--focal", type=float, default=FOCAL_PAPER,
                   help="normalised focal of the canonical conditioning camera and all views "
                        "(the paper's FOV_to_intrinsics(18.837))")
    g = p.add_argument_group("extraction (paper defaults; lower them only for quick trials)")
    g.add_argument("--resolution", type=int, default=256, help="sigma grid samples per axis (sigma, mesh)")
    g.add_argument("--slab-resolution", type=int, default=256,
                   help="grid the reward slab is cut from (256 -> slab 128x141x129, §1.2)")
    g.add_argument("--grid", default="exact", choices=("exact", "eg3d"),
                   help="points of the full sigma grid (sigma, mesh, renders): exact, or EG3D's create_samples")
    g.add_argument("--slab-grid", default="eg3d", choices=("eg3d", "exact"),
                   help="points of the reward slab: eg3d = EG3D's create_samples, those of the reference's data "
                        "and its released reward model (§1.2; up to ~0.9 voxel off the exact grid in x, y)")
    g.add_argument("--mesh-level", type=float, default=10.0, help="iso-level of the mesh in raw sigma (§7.9)")
    g.add_argument("--mesh-border", default="eg3d", choices=("eg3d", "legacy_sigma10", "none"),
                   help="faces of the cube cleared before marching cubes (geometry.mesh.BORDER_PRESETS)")
    g.add_argument("--depth-resolution", type=int, default=128,
                   help="side of the depth maps from the three dmap cameras, yaw +1/0/-1 rad (§2.1)")
    g.add_argument("--n-points", type=int, default=2048, help="points per point cloud (§2.3)")
    g.add_argument("--render-resolution", type=int, default=256,
                   help="side of the shaded renders (front, three-quarter, profile)")
    g = p.add_argument_group("run")
    g.add_argument("--device", default="auto",
                   help="cpu, cuda or cuda:N; auto = cuda if available, else cpu (torchrun: cuda:LOCAL_RANK)")
    g.add_argument("--chunk-points", type=int, default=1 << 20,
                   help="points per generator call on the sigma grid (lower it if memory runs out)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--dry-run", action="store_true",
                   help="print the resolved configuration and what would be written, write nothing")
    p.set_defaults(handler=cmd_sample)


# ------------------------------------------------------------------------------------------------
# info


def cmd_info(args: argparse.Namespace) -> int:
    """Summarise a checkpoint, a built-in generator or a sample bank; --json prints everything.

        nerfsculpt info ffhq512-128.pkl
        nerfsculpt info checkpoints/ffhq512-128
        nerfsculpt info tiny-random --json
        nerfsculpt info bank/
    """
    from pathlib import Path

    from nerfsculpt.generator.builtin import BUILTIN_GENERATORS, generator_fingerprint, resolve_generator

    path = Path(args.target)
    if path.is_dir() and (path / "manifest.json").exists():
        from nerfsculpt.geometry.bank import open_bank

        bank = open_bank(path)
        finished = bank.seeds()
        out = {"kind": "bank", "path": str(path), "what": bank.manifest["what"],
               "n_seeds": len(bank.manifest["seeds"]), "n_finished": len(finished), "manifest": bank.manifest}
    elif args.target in BUILTIN_GENERATORS or not path.exists():
        G, info = resolve_generator(args.target, "cpu", network=args.network)
        out = {**info.to_dict(), "num_ws": G.num_ws, "n_parameters": sum(p.numel() for p in G.parameters())}
    else:
        from nerfsculpt.generator.checkpoint import load_network

        net = load_network(path)
        generators = {name: net[name] for name in ("G_ema", "G") if net[name] is not None}
        first = next(iter(generators.values()), None)
        out = {
            "kind": "converted" if path.is_dir() or path.suffix == ".json" else "eg3d-pickle",
            "path": str(path.resolve()),
            "networks": [name for name in ("G", "G_ema", "D") if net[name] is not None],
            "fingerprints": {name: generator_fingerprint(G) for name, G in generators.items()},
            "num_ws": first.num_ws if first is not None else None,
            "config": first.config.to_dict() if first is not None else None,
            "meta": net["meta"],
        }
    print(json.dumps(out, indent=2, default=str) if args.json else _info_summary(out, args.target))
    return 0


def _info_summary(out: dict[str, Any], target: str) -> str:
    """A few lines of what ``cmd_info`` found; the whole record is ``--json``."""
    if out["kind"] == "bank":
        lines = [f"sample bank {out['path']}: {out['n_finished']} of {out['n_seeds']} seeds finished",
                 f"  artefacts: {', '.join(out['what'])}"]
    else:
        config = out["config"] or {}
        rendering = config.get("rendering_kwargs") or {}
        networks = out.get("networks") or [out.get("network")]
        lines = [f"{out['kind']} generator {out.get('path') or out.get('spec')}: {', '.join(networks)}"]
        if out.get("description"):
            lines.append(f"  {out['description']}")
        if config:
            lines.append(f"  {config['img_resolution']} px images, {config.get('neural_rendering_resolution', '?')} px "
                         f"neural rendering, {config.get('plane_resolution', '?')}^2 tri-planes, z {config['z_dim']}, "
                         f"w {config['w_dim']} x {out['num_ws']} layers, box {rendering.get('box_warp', '?')}")
        if "n_parameters" in out:
            lines.append(f"  {out['n_parameters']:,} parameters, fingerprint {out['fingerprint'][:16]}")
        for name, fingerprint in (out.get("fingerprints") or {}).items():
            lines.append(f"  {name} fingerprint {fingerprint[:16]}")
    lines.append(f"the whole record: nerfsculpt info {target} --json")
    return "\n".join(lines)


def _add_info(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("info", parents=[common], help="print a checkpoint's / bank's configuration",
                              description=_usage(cmd_info.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("target", metavar="PATH_OR_NAME", help="EG3D .pkl, converted directory, built-in name or bank")
    p.add_argument("--json", action="store_true", help="print the whole record (configuration, manifest) as JSON")
    p.add_argument("--network", default="G_ema", choices=("G_ema", "G"), help="generator of a built-in to describe")
    p.set_defaults(handler=cmd_info)


# ------------------------------------------------------------------------------------------------
# synthetic (a command group: add its subcommands in _add_synthetic)


def cmd_synthetic_dataset(args: argparse.Namespace) -> int:
    """Render defect-free procedural heads at FFHQ-like poses into an EG3D dataset zip (the "real images").

        nerfsculpt synthetic dataset --n 2000 --out synth.zip
        nerfsculpt synthetic dataset --n 2000 --out synth64.zip --resolution 64 --seed 1
        nerfsculpt synthetic dataset --n 2000 --out synth.zip --dry-run

    Each image is its own head identity (nerfsculpt.synthetic.heads, no defects) seen from its own
    camera, rendered with EG3D's renderer at the generator's image resolution (img_resolution). The
    zip is EG3D's format (dataset_tool.py: stored PNGs %05d/img%08d.png + dataset.json with 25-number
    labels), plus synthetic_config.json; it appears only when complete. Read it with
    ``nerfsculpt.synthetic.dataset.read_eg3d_dataset(path)``. Time: about 0.15-0.25 s per 128^2 image
    on 2 CPU cores with the synthetic generator's 32 + 32 samples per ray (5-8 min for 2,000).
    """
    from nerfsculpt.synthetic.dataset import DatasetError, PoseDistribution, SyntheticDatasetConfig

    try:
        poses = PoseDistribution(yaw_std=args.yaw_std, pitch_std=args.pitch_std, yaw_limit=args.yaw_limit,
                                 pitch_limit=args.pitch_limit, focal=args.focal)
        rendering = {"depth_resolution": args.depth_resolution,
                     "depth_resolution_importance": args.depth_resolution_importance}
        config = SyntheticDatasetConfig(args.n, args.resolution, args.seed, poses, rendering)
    except DatasetError as e:
        raise UsageError(str(e)) from e
    if not args.out.lower().endswith(".zip"):
        raise UsageError(f"--out {args.out}: the dataset is a zip file; pass a path ending in .zip")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} already exists; pass --overwrite or choose another --out")
    if args.ray_chunk < 1:
        raise UsageError(f"--ray-chunk must be >= 1, got {args.ray_chunk}")
    if args.dry_run:
        print(json.dumps({"out": args.out, "overwrite": args.overwrite, "ray_chunk": args.ray_chunk,
                          "config": config.to_dict()}, indent=2))
        return 0

    from nerfsculpt.synthetic.dataset import write_dataset

    try:
        path = write_dataset(args.out, config.n, config.resolution, config.seed, poses=config.poses,
                             rendering_kwargs=config.rendering_kwargs, ray_chunk=args.ray_chunk,
                             overwrite=args.overwrite, progress=not args.no_progress)
    except DatasetError as e:
        raise UsageError(str(e)) from e
    print(path)
    return 0


def _add_synthetic_dataset(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("dataset", parents=[common], help="renders of procedural heads as an EG3D dataset zip",
                              description=_usage(cmd_synthetic_dataset.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("--n", type=int, required=True, default=argparse.SUPPRESS, help="number of images")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, metavar="ZIP", help="dataset zip to write")
    p.add_argument("--resolution", type=int, default=128,
                   help="image side, a power of two: the generator's img_resolution (output of the super-resolution)")
    p.add_argument("--seed", type=int, default=0, help="determines every pose and head")
    g = p.add_argument_group("cameras (synthetic.dataset.PoseDistribution; truncated normals, radians)")
    g.add_argument("--yaw-std", type=float, default=0.3, help="yaw standard deviation")
    g.add_argument("--pitch-std", type=float, default=0.15, help="pitch standard deviation")
    g.add_argument("--yaw-limit", type=float, default=0.8, help="|yaw| <= this")
    g.add_argument("--pitch-limit", type=float, default=0.45, help="|pitch| <= this")
    g.add_argument("--focal", type=float, default=FOCAL_FFHQ_DATASET,
                   help="normalised focal of the labels (FFHQ's 2985.29 / 700)")
    g = p.add_argument_group("rendering (EG3D rendering_kwargs; the rest are the synthetic generator's)")
    g.add_argument("--depth-resolution", type=int, default=32, help="coarse (stratified) samples per ray")
    g.add_argument("--depth-resolution-importance", type=int, default=32, help="fine (importance) samples per ray")
    g.add_argument("--ray-chunk", type=int, default=8192,
                   help="rays rendered at once (bounds memory; does not change the images)")
    g = p.add_argument_group("run")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--dry-run", action="store_true", help="print the resolved configuration, write nothing")
    p.set_defaults(handler=cmd_synthetic_dataset, command="synthetic dataset")


def cmd_synthetic_fit(args: argparse.Namespace) -> int:
    """Fit the built-in synthetic generator to the procedural heads (regression, resumable).

        nerfsculpt synthetic fit --out runs/synthetic-fit --minutes 57
        nerfsculpt synthetic fit --out /tmp/smoke --steps 3 --batch 2 --image-every 2 --minutes 0 --no-progress

    Rerunning with the same --out resumes from its last checkpoint. The result is written to
    OUT/final (config.json + G_ema.safetensors, loadable with --generator OUT/final); the losses go
    to OUT/fit_log.jsonl. The shipped weights came from the first command (docs/synthetic_fit.log).
    """
    from nerfsculpt.synthetic.fit_config import FitConfig

    minutes = None if args.minutes == 0 else args.minutes
    config = FitConfig(steps=args.steps, minutes=minutes, batch=args.batch, lr=args.lr,
                       image_every=args.image_every, image_batch=args.image_batch, seed=args.seed,
                       defect_weight=args.defect_weight, colour_weight=args.colour_weight,
                       colour_shell=args.colour_shell,
                       checkpoint_every=args.checkpoint_every, log_every=args.log_every)
    try:
        config.validate()
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.dry_run:
        print(json.dumps({"out": args.out, "device": args.device, "fit_config": vars(config)}, indent=2))
        return 0
    from nerfsculpt.synthetic.fit import fit

    fit(args.out, config, device=_resolve_device(args.device, 0, 1), progress=not args.no_progress)
    print(os.path.join(args.out, "final"))
    return 0


def _add_synthetic_fit(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.synthetic.fit_config import FitConfig

    d = FitConfig()
    p = subparsers.add_parser("fit", parents=[common], help="fit the built-in synthetic generator to the heads",
                              description=_usage(cmd_synthetic_fit.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, metavar="DIR",
                   help="run directory (checkpoints, log, final weights); resumed if it has a checkpoint")
    p.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock budget, 0 = none")
    p.add_argument("--steps", type=int, default=d.steps, help="upper bound on optimisation steps")
    p.add_argument("--batch", type=int, default=d.batch, help="latents per step (sigma and colour losses)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (cosine decay over the budget)")
    p.add_argument("--image-every", type=int, default=d.image_every, help="image losses every N steps, 0 = never")
    p.add_argument("--image-batch", type=int, default=d.image_batch, help="latents per image step")
    p.add_argument("--defect-weight", type=float, default=d.defect_weight,
                   help="extra sigma-loss weight where a defect changes the target (up to 1 + this), 0 = plain mean")
    p.add_argument("--colour-weight", type=float, default=d.colour_weight, help="weight of the colour loss")
    p.add_argument("--colour-shell", type=float, default=d.colour_shell,
                   help="colour loss also at every point this close (world units) to the target surface, "
                        "0 = surface points only")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")
    p.add_argument("--seed", type=int, default=d.seed, help="initial weights and every step's draws")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration, do nothing")
    p.set_defaults(handler=cmd_synthetic_fit, command="synthetic fit")


def cmd_synthetic_evaluate(args: argparse.Namespace) -> int:
    """Measure the quality bar of a generator fitted to the procedural heads, on held-out seeds.

        nerfsculpt synthetic evaluate --generator synthetic --out quality.json
        nerfsculpt synthetic evaluate --generator runs/synthetic-fit/final --seeds 900000-900049

    Spearman agreement of the oracle on the generator's sigma with the oracle on the procedural head
    of the same z and with the injected severities, the oracle over truncation psi in
    {0, 0.25, 0.5, 0.7, 1.0}, the spread of quality across seeds, and whether the RGB renders are
    recognisable faces: PSNR against the procedural head and, per seed, eyes and lips that stand out
    from the cheeks by at least half as much as the procedural head's (nerfsculpt.synthetic.evaluate;
    --no-rgb skips the renders).
    """
    from nerfsculpt.latents import parse_seeds

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as e:
        raise UsageError(f"--seeds: {e}") from e
    if len(seeds) < 3:
        raise UsageError("--seeds: need at least 3 seeds for rank correlations")
    if args.resolution < 96:
        raise UsageError(f"--resolution {args.resolution}: the oracle is calibrated at 96-128 samples per axis")
    if args.dry_run:
        print(json.dumps({"generator": args.generator, "n_seeds": len(seeds), "rgb": not args.no_rgb, "out": args.out},
                         indent=2))
        return 0
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.synthetic.evaluate import evaluate_generator
    from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig

    G, info = resolve_generator(args.generator, _resolve_device(args.device, 0, 1))
    oracle = GeometryOracle(OracleConfig(resolution=args.resolution))
    result = {"generator": info.to_dict(),
              **evaluate_generator(G.eval(), seeds, oracle, progress=not args.no_progress, rgb=not args.no_rgb)}
    result["generator"].pop("config", None)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        from nerfsculpt.atomic import write_atomic

        write_atomic(args.out, text.encode())
    print(text, end="")
    return 0


def _add_synthetic_evaluate(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("evaluate", parents=[common], help="quality bar of a generator fitted to the heads",
                              description=_usage(cmd_synthetic_evaluate.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("--generator", default="synthetic", metavar="PATH|NAME", help="generator to measure")
    p.add_argument("--seeds", default="900000-900199", metavar="LIST",
                   help="held-out seeds (z = RandomState(seed).randn(1, z_dim); the fit draws torch latents)")
    p.add_argument("--resolution", type=int, default=128, help="oracle grid, >= 96 (calibrated at 96-128)")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the result to this file")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda if available)")
    p.add_argument("--no-rgb", action="store_true", help="skip the RGB measurements (geometry only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration, do nothing")
    p.set_defaults(handler=cmd_synthetic_evaluate, command="synthetic evaluate")


def cmd_synthetic_preferences(args: argparse.Namespace) -> int:
    """Simulate a preference study: questions over a generator's seeds answered by simulated annotators.

        nerfsculpt synthetic preferences --db prefs.sqlite                        # 600 questions, synthetic
        nerfsculpt synthetic preferences --db prefs.sqlite --annotators 3 --temperature 0.3 --items 2-4
        nerfsculpt synthetic preferences --db prefs.sqlite --generator runs/fit/final --seeds 0-1999

    Each item is judged by the geometry oracle on the generator's own sigma (what a reward model must
    learn to see); every annotator ranks every question (Bradley-Terry noise of --temperature in
    oracle units, optional "can't decide" rate). The study is stored like a human one (best/worst,
    full rankings for 3+ items) and trains a reward with 'nerfsculpt reward train --db ...'.
    """
    from nerfsculpt.latents import parse_seeds
    from nerfsculpt.preferences.schedule import parse_item_range

    try:
        seeds = parse_seeds(args.seeds)
        items = parse_item_range(args.items)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.annotators < 1 or args.questions < 1:
        raise UsageError("--annotators and --questions must be >= 1")
    if args.dry_run:
        print(json.dumps({k: v for k, v in vars(args).items() if k != "handler"}, indent=2, default=str))
        return 0
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.preferences.store import PreferenceStore
    from nerfsculpt.synthetic.annotators import AnnotatorPanel, SimulatedAnnotator
    from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig
    from nerfsculpt.synthetic.preferences import simulate_study

    G, info = resolve_generator(args.generator, _resolve_device(args.device, 0, 1))
    panel = AnnotatorPanel([SimulatedAnnotator(f"sim{k}", temperature=args.temperature,
                                               cant_decide_rate=args.cant_decide, seed=args.seed + k)
                            for k in range(args.annotators)])
    with PreferenceStore(args.db) as store:
        summary = simulate_study(store, args.study, G, info, seeds, args.questions, panel,
                                 GeometryOracle(OracleConfig(resolution=args.resolution)), items=items,
                                 psi=args.psi, seed=args.seed, progress=not args.no_progress)
    print(f"study {args.study!r} of {args.db}: {summary['questions']} questions over {summary['seeds']} seeds, "
          f"{summary['answers']} simulated answers ({summary['cant_decide']} can't decide)")
    return 0


def _add_synthetic_preferences(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("preferences", parents=[common], help="a study answered by simulated annotators",
                              description=_usage(cmd_synthetic_preferences.__doc__), formatter_class=_HelpFormatter)
    p.add_argument("--db", required=True, metavar="SQLITE", help="preference database (created if missing)")
    p.add_argument("--study", default="simulated", help="name of the new study")
    p.add_argument("--generator", default="synthetic", metavar="PATH|NAME", help="generator whose seeds are judged")
    p.add_argument("--seeds", default="0-599", metavar="LIST", help="seeds the questions draw from")
    p.add_argument("--questions", type=int, default=600, help="number of questions")
    p.add_argument("--items", default="2", metavar="K|LO-HI", help="items per question (2-6)")
    p.add_argument("--annotators", type=int, default=1, help="simulated annotators (each answers every question)")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="Bradley-Terry noise in oracle units (0 = the oracle's exact order)")
    p.add_argument("--cant-decide", type=float, default=0.0, metavar="RATE", help="probability of 'can't decide'")
    p.add_argument("--psi", type=float, default=1.0, help="truncation psi of the items")
    p.add_argument("--resolution", type=int, default=96, help="oracle grid (calibrated at 96-128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question design and the annotators")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration, do nothing")
    p.set_defaults(handler=cmd_synthetic_preferences, command="synthetic preferences")


def command_group(subparsers: Any, common: argparse.ArgumentParser, name: str, help: str, description: str) -> Any:
    """A command with subcommands (``nerfsculpt NAME <subcommand>``); NAME alone prints its help.

    Returns the sub-parsers object to add the subcommands to.
    """
    p = subparsers.add_parser(name, parents=[common], help=help, description=description,
                              formatter_class=_HelpFormatter)
    group = p.add_subparsers(title=f"{name} commands", dest=f"{name}_command", metavar=f"<{name} command>")

    def usage(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(handler=usage)
    return group


def _add_synthetic(subparsers: Any, common: argparse.ArgumentParser) -> None:
    group = command_group(subparsers, common, "synthetic",
                          "the built-in benchmark: heads with known defects, the oracle, simulated annotators",
                          "The synthetic benchmark: procedural heads with known geometric defects, rendered with\n"
                          "EG3D's renderer, the built-in generator fitted to them, and the geometry oracle that\n"
                          "scores any sigma field (the ground truth a learnt reward is checked against).\n\n"
                          "    nerfsculpt synthetic dataset --n 2000 --out synth.zip     # real images, EG3D format\n"
                          "    nerfsculpt synthetic evaluate --out quality.json          # the generator's bar\n"
                          "    nerfsculpt synthetic fit --out runs/synthetic-fit --minutes 57\n"
                          "    nerfsculpt synthetic preferences --db prefs.sqlite        # simulated annotators")
    _add_synthetic_dataset(group, common)
    _add_synthetic_fit(group, common)
    _add_synthetic_evaluate(group, common)
    _add_synthetic_preferences(group, common)


# ------------------------------------------------------------------------------------------------
# main


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging, and tracebacks on errors")
    parser = _Parser(
        prog="nerfsculpt", description=DESCRIPTION, formatter_class=_HelpFormatter,
        epilog="Run 'nerfsculpt <command> --help' for a command's options and examples.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    _add_convert(subparsers, common)
    _add_sample(subparsers, common)
    _add_info(subparsers, common)
    _add_synthetic(subparsers, common)
    from nerfsculpt.cli_preferences import add_label_commands, add_prefs_commands, add_study_commands

    add_prefs_commands(subparsers, common)
    add_label_commands(subparsers, common)
    add_study_commands(subparsers, common)
    from nerfsculpt.cli_reward import add_reward_commands

    add_reward_commands(subparsers, common)
    from nerfsculpt.cli_finetune import add_finetune_command

    add_finetune_command(subparsers, common)
    return parser


def _version() -> str:
    from nerfsculpt import __version__

    return __version__


def _configure_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("nerfsculpt").setLevel(logging.DEBUG if verbose else level)  # others' debug stays off


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nerfsculpt`` console script. Returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error argparse has already reported
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    level = logger.level
    _configure_logging(args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("nerfsculpt: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:
        if not _is_user_error(e):
            raise
        if args.verbose:
            traceback.print_exc()
        print(f"nerfsculpt {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        logger.setLevel(level)  # an in-process caller (a test, a notebook) keeps its own level


def _is_user_error(error: Exception) -> bool:
    """Errors caused by the input, reported in one message (nerfsculpt.errors.NerfsculptError)."""
    from nerfsculpt.errors import NerfsculptError

    return isinstance(error, NerfsculptError)
