"""The nerfsculpt command line: ``nerfsculpt <command> [options]``; ``nerfsculpt <command> --help``.

One module per command group (``cli/generator.py``: convert, sample, info; ``cli/synthetic.py``;
``cli/preferences.py``: prefs, label, study; ``cli/reward.py``; ``cli/finetune.py``;
``cli/evaluate.py``), the shared
plumbing in ``cli/common.py``. Each command parses its options, makes one library call and prints.
Neither importing this package nor building the parser imports torch or numpy, so
``nerfsculpt --help`` is instant; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from nerfsculpt.cli import demo, evaluate, finetune, generator, preferences, reward, synthetic
from nerfsculpt.cli.common import HelpFormatter, Parser, UsageError
from nerfsculpt.errors import NerfsculptError

__all__ = ["DESCRIPTION", "UsageError", "build_parser", "main"]

logger = logging.getLogger("nerfsculpt")

DESCRIPTION = """\
Improve the 3D geometry (the density field sigma) of EG3D-family generators from human preferences.

The method, one command per stage (the built-in 'synthetic' generator is the default everywhere):
  sample -> label -> reward train -> finetune -> evaluate (-> study: people's A/B verdict)
  'nerfsculpt demo' runs the method on the built-in generator in minutes.

Exit codes: 0 success; 2 bad usage or input (one line saying what to do; --verbose adds the
traceback); 1 an unexpected failure, or a verdict that failed ('finetune compare'); 130 interrupted
(re-run the same command to resume)."""


# ------------------------------------------------------------------------------------------------
# main


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging, and tracebacks on errors")
    parser = Parser(
        prog="nerfsculpt", description=DESCRIPTION, formatter_class=HelpFormatter,
        epilog="Run 'nerfsculpt <command> --help' for a command's options and examples.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    generator.add_commands(subparsers, common)
    synthetic.add_commands(subparsers, common)
    preferences.add_commands(subparsers, common)
    reward.add_commands(subparsers, common)
    finetune.add_commands(subparsers, common)
    evaluate.add_commands(subparsers, common)
    demo.add_commands(subparsers, common)
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
        if not isinstance(e, NerfsculptError):
            raise
        if args.verbose:
            traceback.print_exc()
        print(f"nerfsculpt {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        logger.setLevel(level)  # an in-process caller (a test, a notebook) keeps its own level
