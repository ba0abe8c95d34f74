"""``nerfsculpt evaluate``: the paper's analyses of a fine-tune, one report. Imports nothing heavy at import time."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from nerfsculpt.cli.common import (
    UsageError,
    add_command,
    add_config_options,
    add_run_options,
    config_from_args,
    resolve_device,
)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a fine-tuned generator against its original: the paper's §4 analyses in one report.

        nerfsculpt evaluate --before synthetic --after runs/tune/snapshots/0000100 --reward runs/reward/bundle \\
            --run runs/tune --control runs/control --out report/
        nerfsculpt evaluate rewards --before synthetic --after runs/tune/snapshots/0000100 \\
            --reward runs/reward/bundle --out report/ --seeds 200000-200019        # one analysis, 20 seeds
        nerfsculpt evaluate --before ffhq512-128.pkl --after runs/ffhq/snapshots/0001250 \\
            --reward runs/reward-paper --detector inception.pt --data FFHQ_512.zip --out report/

    Writes OUT/report.json (every number with its protocol), OUT/report.md, OUT/report.html (opens
    offline) and OUT/figures/*.png. Analyses (docs/evaluate.md): rewards (same-latent reward change,
    Fig. 7, with before/after clay renders), sweep (reward against psi, Table 5), consistency (ranks
    at psi 0.7 against 0.25, Table 9), slope (final against initial from --run and --control, §4.2),
    truncation (is it a slide to the average face? Table 4), embedding (silhouettes of the reward's
    embedding), attribution (Shapley values and integrated gradients over face regions), identity (LPIPS
    and face-embedding similarity at 9 views, with user-given weights), oracle and study (the built-in
    benchmark's ground truth per defect and a simulated A/B study, Table 3), fid (FID and KID with a
    user-given detector and dataset). An analysis whose input is missing is listed as not run, with
    the flag it needs. Defaults are the paper's counts; lower --seeds for a quick look.
    """
    from pathlib import Path

    from nerfsculpt.evaluate.config import EvaluateConfig

    config = config_from_args(EvaluateConfig, args)
    if args.out is None:
        raise UsageError("--out REPORT is required (the report directory)")
    try:
        config.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if (args.lpips_vgg is None) != (args.lpips_weights is None):
        raise UsageError("LPIPS needs both --lpips-vgg (VGG-16 weights) and --lpips-weights (LPIPS' vgg.pth)")
    for flag in ("reward", "detector", "features", "data", "regions", "lpips_vgg", "lpips_weights", "face_embedder",
                 "run", "control"):
        path = getattr(args, flag)
        if path is not None and not Path(path).exists():
            raise UsageError(f"--{flag.replace('_', '-')} {path}: no such file or directory")
    if args.before is None:  # the run's own starting point, else the built-in generator
        args.before = str(Path(args.run) / "pretrained") if args.run is not None else "synthetic"
    if args.dry_run:
        plan = {"analysis": args.analysis or "all", "before": args.before, "after": args.after,
                "reward": args.reward, "run": args.run, "control": args.control, "detector": args.detector,
                "regions": args.regions,
                "data": args.data, "out": args.out, "config": dataclasses.asdict(config)}
        plan["config"]["seeds"] = f"{len(config.seeds)} seeds"
        print(json.dumps(plan, indent=2))
        return 0
    from nerfsculpt.evaluate.report import evaluate_generators

    models = {"lpips": (args.lpips_vgg, args.lpips_weights) if args.lpips_vgg else None,
              "face_embedder": args.face_embedder, "features": args.features}
    report = evaluate_generators(args.before, args.after, args.reward, args.out, config, run=args.run,
                                 control=args.control, detector=args.detector, data=args.data, regions=args.regions,
                                 models=models,
                                 device=resolve_device(args.device), progress=not args.no_progress, only=args.analysis)
    for name, section in report["sections"].items():
        if section["status"] != "skipped":
            print(f"{name}: {section['status']}" + (f" ({section['reason']})" if "reason" in section else ""))
    print(f"report: {args.out}/report.html")
    return 0


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register evaluate."""
    from nerfsculpt.evaluate.config import ANALYSES, EvaluateConfig

    p = add_command(subparsers, common, "evaluate", cmd_evaluate,
                    help="the paper's analyses of a fine-tune, one report")
    p.add_argument("analysis", nargs="?", choices=ANALYSES, metavar="ANALYSIS",
                   help=f"run only this analysis: {', '.join(ANALYSES)} (default: all)")
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--before", default=None, metavar="PATH|NAME",
                    help="the original generator (default: RUN/pretrained with --run, else synthetic)")
    io.add_argument("--after", required=True, metavar="PATH|NAME",
                    help="the fine-tuned generator (e.g. RUN/snapshots/NNNNNNN or RUN/best)")
    io.add_argument("--reward", default=None, metavar="BUNDLE", help="reward bundle of the reward analyses")
    io.add_argument("--run", default=None, metavar="RUN", help="the fine-tuning run (the slope test)")
    io.add_argument("--control", default=None, metavar="RUN", help="its control run (--lambda-r 0)")
    io.add_argument("--detector", default=None, metavar="FILE",
                    help="feature extractor for FID/KID: StyleGAN's Inception as TorchScript (.pt), or .onnx")
    io.add_argument("--features", default=None, metavar="FILE",
                    help="a second feature space for FID/KID (e.g. DINOv2 as TorchScript or ONNX), called on uint8 "
                         "images [N, 3, H, W]; FID in one feature space alone can be gamed")
    io.add_argument("--data", default=None, metavar="ZIP", help="real images for FID/KID (EG3D dataset zip)")
    io.add_argument("--regions", default=None, metavar="JSON",
                    help="named face boxes for region attribution (docs/evaluate.md); the built-in generator "
                         "has its own")
    io.add_argument("--lpips-vgg", default=None, metavar="FILE", help="torchvision's VGG-16 weights (LPIPS backbone)")
    io.add_argument("--lpips-weights", default=None, metavar="FILE", help="LPIPS' vgg.pth (its linear layers)")
    io.add_argument("--face-embedder", default=None, metavar="FILE",
                    help="face-identity embedder (TorchScript or ONNX) taking 160 x 160 images in [-1, 1]")
    io.add_argument("--out", default=None, metavar="REPORT", help="report directory (required)")
    io.add_argument("--device", default="auto", help="cpu, cuda or cuda:N; auto = cuda if available, else cpu")
    add_run_options(io, device=False, dry_run=True)
    add_config_options(p.add_argument_group("protocol (docs/evaluate.md)"), EvaluateConfig)
