"""``nerfsculpt demo``: the whole method on the built-in generator, in minutes on a CPU. Imports nothing heavy."""

from __future__ import annotations

import argparse
from typing import Any

from nerfsculpt.cli.common import add_command, add_run_options, resolve_device


def cmd_demo(args: argparse.Namespace) -> int:
    """The method, working: fine-tune the built-in generator with the shipped reward, against a control.

        nerfsculpt demo                       # about 6 minutes on 2 CPU cores
        nerfsculpt demo --quick               # about a minute, toy sizes (its numbers are not evidence)
        nerfsculpt demo --from-scratch        # also simulates the preferences and trains the reward
        nerfsculpt demo --out demo/           # where everything goes; run again to resume

    Steps: the reward (shipped, or trained with --from-scratch) -> fine-tuning with lambda_r 10 and
    the control (lambda_r 0), the oracle tracking held-out seeds -> the oracle's verdict on tuned
    against control -> 'nerfsculpt evaluate' of the tuned generator (reward deltas, slope, truncation
    baseline, region attribution, oracle per defect, a simulated user study). Prints a paper-style
    summary and the path of the HTML report; OUT/demo.json holds every number. Interrupted, it
    resumes where it stopped when run again with the same --out (docs/demo.md).
    """
    from nerfsculpt.demo import run_demo, summary_text

    summary = run_demo(args.out, quick=args.quick, from_scratch=args.from_scratch, device=resolve_device(args.device),
                       progress=not args.no_progress)
    print(summary_text(summary))
    return 0


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register demo."""
    p = add_command(subparsers, common, "demo", cmd_demo, help="the whole method on the built-in generator")
    p.add_argument("--out", default="nerfsculpt-demo", metavar="DIR", help="demo directory (resumed if it exists)")
    p.add_argument("--quick", action="store_true", help="toy sizes, about a minute (CI)")
    p.add_argument("--from-scratch", action="store_true",
                   help="simulate the preferences and train the reward instead of using the shipped one")
    add_run_options(p)
