"""``nerfsculpt convert``, ``sample`` and ``info``: checkpoints in, geometry sample banks out."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from nerfsculpt.cli.common import (
    HelpFormatter,
    UsageError,
    add_command,
    add_config_options,
    add_run_options,
    config_from_args,
    parse_cutoff,
    resolve_device,
    torchrun_session,
    usage,
    world,
)

logger = logging.getLogger("nerfsculpt")


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
                              description=usage(cmd_convert.__doc__), formatter_class=HelpFormatter)
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
        config = config_from_args(BankConfig, args)
        config.check_what(what)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.chunk_points < 1:
        raise UsageError(f"--chunk-points must be >= 1, got {args.chunk_points}")
    rank, local_rank, world_size = world()
    if args.dry_run:
        if rank == 0:
            device = resolve_device(args.device, local_rank, world_size)
            print(json.dumps(_sample_plan(args, config, seeds, what, device, world_size), indent=2))
        return 0

    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.geometry.bank import open_bank, write_bank

    with torchrun_session(args.device) as session:
        G, info = resolve_generator(args.generator, session.device, network=args.network)
        report = write_bank(args.out, G, info, config, seeds, what, chunk_points=args.chunk_points,
                            progress=not args.no_progress)
        if session.rank == 0:
            complete = len(open_bank(args.out).seeds(what))
            logger.info("bank %s: %d of %d requested seeds were already finished, %d written; "
                        "%d seeds of the bank are finished for %s", args.out, report.already_finished,
                        report.requested, report.written, complete, ",".join(what))
        if report.empty_meshes:
            logger.warning("%d seed(s) have no surface at --mesh-level %g (no mesh.glb; e.g. seed %d); lower "
                           "--mesh-level if that is unexpected", len(report.empty_meshes), config.mesh_level,
                           report.empty_meshes[0])
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


def _add_sample(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.geometry.bank import DEFAULT_WHAT, BankConfig

    p = add_command(subparsers, common, "sample", cmd_sample, help="write a per-seed geometry sample bank")
    p.add_argument("--generator", default="synthetic", metavar="PATH|NAME",
                   help="EG3D .pkl, a directory from 'nerfsculpt convert', or a built-in name: synthetic (fitted "
                        "to procedural heads with known defects) or tiny-random (random weights)")
    p.add_argument("--seeds", required=True, default=argparse.SUPPRESS, metavar="LIST",
                   help="seeds and inclusive ranges, e.g. 20000-20099 or 1,5,7-9")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, metavar="DIR",
                   help="bank directory (created, or resumed)")
    p.add_argument("--what", default=",".join(DEFAULT_WHAT), metavar="LIST",
                   help="comma-separated artefacts: sigma, slab, mesh, depth, points, renders, or 'all' "
                        "(sigma is 32 MiB per seed at --resolution 256)")
    p.add_argument("--network", default="G_ema", choices=("G_ema", "G"),
                   help="which generator of the checkpoint; the paper samples G_ema (§0.1)")
    sampling = ("psi", "truncation_cutoff", "noise_mode", "focal")
    add_config_options(p.add_argument_group("sampling (docs/method/reference_method.md §0.2-0.3, §1.1)"), BankConfig,
                       only=sampling, types_={"truncation_cutoff": parse_cutoff},
                       metavars={"truncation_cutoff": "N|all"},
                       helps={"truncation_cutoff": "Number of leading ws truncated, or 'all' (G.num_ws: 14 for EG3D "
                                                   "FFHQ's 256 backbone) (default: all)"})
    add_config_options(p.add_argument_group("extraction (paper defaults; lower them only for quick trials)"),
                       BankConfig, exclude=sampling)
    g = p.add_argument_group("run")
    g.add_argument("--chunk-points", type=int, default=1 << 20,
                   help="points per generator call on the sigma grid (lower it if memory runs out)")
    add_run_options(g, dry_run=True,
                    dry_run_help="print the resolved configuration and what would be written, write nothing")


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
                              description=usage(cmd_info.__doc__), formatter_class=HelpFormatter)
    p.add_argument("target", metavar="PATH_OR_NAME", help="EG3D .pkl, converted directory, built-in name or bank")
    p.add_argument("--json", action="store_true", help="print the whole record (configuration, manifest) as JSON")
    p.add_argument("--network", default="G_ema", choices=("G_ema", "G"), help="generator of a built-in to describe")
    p.set_defaults(handler=cmd_info)


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register convert, sample and info."""
    _add_convert(subparsers, common)
    _add_sample(subparsers, common)
    _add_info(subparsers, common)
