"""``nerfsculpt synthetic ...``: the built-in benchmark (procedural heads, the fitted generator, the
oracle, simulated annotators)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from nerfsculpt.cli.common import (
    HelpFormatter,
    UsageError,
    add_command,
    add_config_options,
    add_run_options,
    command_group,
    config_from_args,
    resolve_device,
    usage,
)


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
    from nerfsculpt.eg3d_dataset import DatasetError, PoseDistribution
    from nerfsculpt.synthetic.config import SyntheticDatasetConfig

    try:
        poses = config_from_args(PoseDistribution, args)
        rendering = {"depth_resolution": args.depth_resolution,
                     "depth_resolution_importance": args.depth_resolution_importance}
        config = config_from_args(SyntheticDatasetConfig, args, poses=poses, rendering_kwargs=rendering)
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
    from nerfsculpt.eg3d_dataset import PoseDistribution
    from nerfsculpt.synthetic.config import SyntheticDatasetConfig
    from nerfsculpt.synthetic.generator import SYNTHETIC_RENDERING_KWARGS

    p = add_command(subparsers, common, "dataset", cmd_synthetic_dataset, command="synthetic dataset",
                    help="renders of procedural heads as an EG3D dataset zip")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, metavar="ZIP", help="dataset zip to write")
    add_config_options(p, SyntheticDatasetConfig, exclude=("poses", "rendering_kwargs"))
    add_config_options(p.add_argument_group("cameras (eg3d_dataset.PoseDistribution; truncated normals, radians)"),
                       PoseDistribution)
    g = p.add_argument_group("rendering (EG3D rendering_kwargs; the rest are the synthetic generator's)")
    for key, text in (("depth_resolution", "coarse (stratified) samples per ray"),
                      ("depth_resolution_importance", "fine (importance) samples per ray")):
        g.add_argument("--" + key.replace("_", "-"), type=int, default=SYNTHETIC_RENDERING_KWARGS[key], help=text)
    g.add_argument("--ray-chunk", type=int, default=8192,
                   help="rays rendered at once (bounds memory; does not change the images)")
    g = p.add_argument_group("run")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_run_options(g, device=False, dry_run=True, dry_run_help="print the resolved configuration, write nothing")


def cmd_synthetic_fit(args: argparse.Namespace) -> int:
    """Fit the built-in synthetic generator to the procedural heads (regression, resumable).

        nerfsculpt synthetic fit --out runs/synthetic-fit --minutes 57
        nerfsculpt synthetic fit --out /tmp/smoke --steps 3 --batch 2 --image-every 2 --minutes 0 --no-progress

    Rerunning with the same --out resumes from its last checkpoint. The result is written to
    OUT/final (config.json + G_ema.safetensors, loadable with --generator OUT/final); the losses go
    to OUT/fit_log.jsonl. The shipped weights came from the first command (docs/synthetic_fit.log).
    """
    from nerfsculpt.synthetic.config import FitConfig

    config = config_from_args(FitConfig, args)
    try:
        config.validate()
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.dry_run:
        print(json.dumps({"out": args.out, "device": args.device, "fit_config": vars(config)}, indent=2))
        return 0
    from nerfsculpt.synthetic.fit import fit

    fit(args.out, config, device=resolve_device(args.device), progress=not args.no_progress)
    print(os.path.join(args.out, "final"))
    return 0


def _add_synthetic_fit(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.synthetic.config import FitConfig

    p = add_command(subparsers, common, "fit", cmd_synthetic_fit, command="synthetic fit",
                    help="fit the built-in synthetic generator to the heads")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, metavar="DIR",
                   help="run directory (checkpoints, log, final weights); resumed if it has a checkpoint")
    add_run_options(p, dry_run=True)
    add_config_options(p.add_argument_group("the fit (defaults: the shipped run)"), FitConfig,
                       types_={"minutes": _minutes}, helps={"minutes": "Wall-clock budget in minutes; the run stops "
                                                                        "(and saves) when it is used up; 0 = none"})


def _minutes(text: str) -> float | None:
    """``--minutes``: 0 = no limit (None in the config)."""
    return float(text) or None


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

    G, info = resolve_generator(args.generator, resolve_device(args.device))
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
                              description=usage(cmd_synthetic_evaluate.__doc__), formatter_class=HelpFormatter)
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
    from nerfsculpt.preferences.schedule import parse_item_range
    from nerfsculpt.synthetic.config import SimulatedStudyConfig

    config = config_from_args(SimulatedStudyConfig, args)
    try:
        parse_item_range(config.items)
        config.validate()
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.dry_run:
        plan = {"db": args.db, "study": args.study, "generator": args.generator, "device": args.device,
                "config": {**dataclasses.asdict(config), "seeds": f"{len(config.seeds)} seeds"}}
        print(json.dumps(plan, indent=2))
        return 0
    from nerfsculpt.synthetic.preferences import simulate_preferences

    summary = simulate_preferences(args.db, config, args.generator, args.study, device=resolve_device(args.device),
                                   progress=not args.no_progress)
    print(f"study {args.study!r} of {args.db}: {summary['questions']} questions over {summary['seeds']} seeds, "
          f"{summary['answers']} simulated answers ({summary['cant_decide']} can't decide)")
    return 0


def _add_synthetic_preferences(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.synthetic.config import SimulatedStudyConfig

    p = add_command(subparsers, common, "preferences", cmd_synthetic_preferences, command="synthetic preferences",
                    help="a study answered by simulated annotators")
    p.add_argument("--db", required=True, metavar="SQLITE", help="preference database (created if missing)")
    p.add_argument("--study", default="simulated", help="name of the new study")
    p.add_argument("--generator", default="synthetic", metavar="PATH|NAME", help="generator whose seeds are judged")
    add_config_options(p, SimulatedStudyConfig, metavars={"items": "K|LO-HI", "cant_decide": "RATE"})
    add_run_options(p, dry_run=True)


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register the synthetic command group."""
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
