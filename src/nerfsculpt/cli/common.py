"""Plumbing shared by every command: the parser classes, options generated from config dataclasses,
device choice and the torchrun session.

Nothing here imports torch or numpy at import time (``nerfsculpt --help`` stays instant); the
config dataclasses the options come from live in torch-free modules for the same reason.

A command is built from its config, so that a default is set in exactly one place::

    p = subparsers.add_parser("finetune", ...)
    add_config_options(p, FinetuneConfig, help_suffix=...)       # --kimg, --batch, ... from the fields
    ...
    config = config_from_args(FinetuneConfig, args)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import logging
import os
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from nerfsculpt.errors import NerfsculptError

logger = logging.getLogger("nerfsculpt")


class UsageError(NerfsculptError):
    """Bad command-line input; the message says what to do instead."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors that point to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the docstring layout (usage examples) of each command.

    No "(default: ...)" is added where the help already states it, for flags (on when given, off
    otherwise: a default of True beside '--no-x' reads backwards) or for a default of None.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.nargs == 0 or action.default is None:
            return text
        return super()._get_help_string(action)


def usage(doc: str | None) -> str:
    """A command's docstring as its --help description: reST literals (``x``) shown as 'x'."""
    return inspect.cleandoc(doc or "").replace("``", "'")


def add_command(subparsers: Any, common: argparse.ArgumentParser, name: str, handler: Callable[..., int],
                help: str, command: str | None = None) -> argparse.ArgumentParser:
    """A (sub)command whose --help shows ``handler``'s docstring; ``command`` names it in error messages."""
    p = subparsers.add_parser(name, parents=[common], help=help, description=usage(handler.__doc__),
                              formatter_class=HelpFormatter)
    p.set_defaults(handler=handler, command=command or name)
    return p


def command_group(subparsers: Any, common: argparse.ArgumentParser, name: str, help: str, description: str) -> Any:
    """A command with subcommands (``nerfsculpt NAME <subcommand>``); NAME alone prints its help.

    Returns the sub-parsers object to add the subcommands to.
    """
    p = subparsers.add_parser(name, parents=[common], help=help, description=description,
                              formatter_class=HelpFormatter)
    group = p.add_subparsers(title=f"{name} commands", dest=f"{name}_command", metavar=f"<{name} command>")

    def print_usage(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(handler=print_usage)
    return group


# ------------------------------------------------------------------------------------------------
# Options generated from config dataclasses


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (and of its dataclass bases), whitespace collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, following in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = " ".join(following.value.value.split()).replace("``", "'")
    return docs


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_int_list(text: str) -> tuple[int, ...]:
    """'0-3,7' -> (0, 1, 2, 3, 7); 'none' or '' -> () (a ``tuple[int, ...]`` field from the command line)."""
    from nerfsculpt.latents import parse_seeds

    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(parse_seeds(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _list_of(item: Any) -> Callable[[str], tuple[Any, ...]]:
    """A parser of comma-separated values of ``item`` (a type, or a ``Literal`` of choices); 'none' -> ()."""
    choices = typing.get_args(item) if typing.get_origin(item) is typing.Literal else None

    def parse(text: str) -> tuple[Any, ...]:
        if text.strip().lower() in ("", "none"):
            return ()
        values = [v.strip() for v in text.split(",")]
        if choices is not None:
            wrong = [v for v in values if v not in choices]
            if wrong:
                raise argparse.ArgumentTypeError(f"{', '.join(wrong)}: choose from {', '.join(choices)}")
            return tuple(values)
        try:
            return tuple(item(v) for v in values)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__} values, got {text!r}") from None

    return parse


def parse_cutoff(text: str) -> int | None:
    """``--truncation-cutoff``: 'all' -> None (every ws), else a positive integer."""
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return value


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 8 and all(isinstance(v, int) for v in value):
        contiguous = list(value) == list(range(value[0], value[0] + len(value)))
        return f"{value[0]}-{value[-1]}" if contiguous else f"{len(value)} values"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if all(isinstance(v, int) for v in value) else " ".join(map(str, value))
    return str(value)


def add_config_options(parser: Any, cls: type, *, only: Sequence[str] | None = None, exclude: Sequence[str] = (),
                       types_: dict[str, Callable[[str], Any]] | None = None,
                       metavars: dict[str, str] | None = None, flags: dict[str, str] | None = None,
                       aliases: dict[str, str] | None = None,
                       helps: dict[str, str] | None = None, unset: bool | Sequence[str] = False) -> list[str]:
    """Add one option per field of the dataclass ``cls``; returns the field names added.

    The flag is the field's name with dashes (``--max-epochs``), the help its docstring, the default
    its default, the type its annotation: ``bool`` -> a switch (``--x`` when the default is False,
    ``--no-x`` when True), ``Literal[...]`` -> choices, ``tuple[int, ...]`` -> a list like '0-3,7'
    ('none' = empty), ``tuple[float, ...]`` or ``tuple[Literal[...], ...]`` -> comma-separated values,
    ``tuple[str, ...]`` -> a repeatable option, ``tuple[float, float]`` -> two numbers, ``X | None`` -> X;
    a field without a default is a required option.
    ``types_`` overrides a field's parser; ``flags`` names a field's flag otherwise (where the field's
    name reads badly on the command line); ``aliases`` maps a field to an old flag that still works
    and names the new one; ``helps`` replaces a field's docstring as help (when the docstring speaks
    of code, not flags).
    ``unset`` (True, or some field names): a field not given stays out of the namespace
    (``argparse.SUPPRESS``), so that a preset or the command can fill it; the help still shows the
    dataclass default unless ``helps`` states another. A ``tuple[str, ...]`` field is a repeatable
    option and always unset when not given.
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    types_, metavars, aliases, helps = types_ or {}, metavars or {}, aliases or {}, helps or {}
    flags = flags or {}
    names = []
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in exclude or not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind, args = typing.get_origin(hints[f.name]), typing.get_args(hints[f.name])
        if kind in (typing.Union, types.UnionType) and type(None) in args:
            hint = next(a for a in args if a is not type(None))
            kind, args = typing.get_origin(hint), typing.get_args(hint)
        else:
            hint = hints[f.name]
        text = helps.get(f.name) or docs.get(f.name) or f.name.replace("_", " ")
        if hint is bool and default and f.name not in helps and f.name not in flags:
            text = f"Turn off: {text[0].lower()}{text[1:]}"  # the docstring describes the setting when on
        kwargs: dict[str, Any] = {"dest": f.name}
        option_strings = [flags.get(f.name, _flag(f.name))]
        if hint is bool and default and f.name not in flags:
            option_strings = ["--no-" + f.name.replace("_", "-")]
        if hint is bool:
            kwargs.update(action="store_const", const=not default)
            shown = None
        else:
            if f.name in types_:
                kwargs["type"] = types_[f.name]
            elif kind is typing.Literal:
                kwargs["choices"] = args
            elif kind is tuple and args == (str, Ellipsis):
                kwargs.update(action="append")
            elif kind is tuple and args == (int, Ellipsis):
                kwargs.update(type=parse_int_list, metavar="LIST")
            elif kind is tuple and args[-1] is Ellipsis:
                kwargs.update(type=_list_of(args[0]), metavar="LIST")
            elif kind is tuple:
                kwargs.update(type=args[0], nargs=len(args), metavar=("X",) * len(args))
            elif hint in (int, float):
                kwargs.update(type=hint, metavar="N" if hint is int else "X")
            if f.name in metavars:
                kwargs["metavar"] = metavars[f.name]
            shown = None if default is None else _shown(default)
            if kind is tuple and args[-1] is Ellipsis and args[0] is not int:
                shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) or "none"
        leave_unset = unset is True or (unset is not False and f.name in unset) or kwargs.get("action") == "append"
        kwargs["default"] = argparse.SUPPRESS if leave_unset or required else default
        if required:
            kwargs["required"] = True
        text += "" if shown is None or "(default" in text or not shown else f" (default: {shown})"
        parser.add_argument(*option_strings, help=text.replace("%", "%%"), **kwargs)  # argparse formats help with %
        if f.name in aliases:
            nargs = 0 if hint is bool else kwargs.get("nargs")
            parser.add_argument(aliases[f.name], help=argparse.SUPPRESS, action=_renamed(option_strings[0], nargs),
                                **{k: v for k, v in kwargs.items() if k in ("dest", "type", "const")})
        names.append(f.name)
    return names


def _renamed(new_flag: str, nargs: Any) -> type[argparse.Action]:
    """An old flag that still works for one release and says its new name."""

    class Renamed(argparse.Action):
        def __init__(self, option_strings, dest, const=None, **kwargs):
            kwargs.setdefault("nargs", nargs)
            super().__init__(option_strings, dest, const=const, **kwargs)

        def __call__(self, parser, namespace, values, option_string=None):
            logger.warning("%s is now %s; the old name will be removed in the next release", option_string, new_flag)
            setattr(namespace, self.dest, self.const if self.nargs == 0 else values)

    return Renamed


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """``cls`` built from the fields present in ``args`` (and ``overrides``); absent fields keep their defaults."""
    return cls(**{**given_fields(cls, args), **overrides})


def given_fields(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` given explicitly on the command line (options added with ``unset=True``)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(args, f.name)}
    return {name: tuple(value) if isinstance(value, list) else value for name, value in given.items()}


# ------------------------------------------------------------------------------------------------
# Devices and torchrun


def add_run_options(parser: Any, *, device: bool = True, progress: bool = True, dry_run: bool = False,
                    dry_run_help: str = "print the resolved configuration, do nothing") -> None:
    """The options every long-running command has: --device, --no-progress, --dry-run."""
    if device:
        parser.add_argument("--device", default="auto",
                            help="cpu, cuda or cuda:N; auto = cuda if available, else cpu (torchrun: cuda:LOCAL_RANK)")
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if dry_run:
        parser.add_argument("--dry-run", action="store_true", help=dry_run_help)


def world() -> tuple[int, int, int]:
    """(RANK, LOCAL_RANK, WORLD_SIZE) as torchrun sets them; (0, 0, 1) outside torchrun."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")))


def resolve_device(text: str, local_rank: int = 0, world_size: int = 1) -> Any:
    """``--device`` as a torch.device: auto -> cuda if available; under torchrun, cuda:LOCAL_RANK."""
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


@dataclasses.dataclass(frozen=True)
class Session:
    """Where this process runs: its device, its rank and the number of processes."""

    device: Any
    """The torch.device of this process."""
    rank: int
    """This process's rank (0 outside torchrun)."""
    world_size: int
    """Number of processes (1 outside torchrun)."""


@contextmanager
def torchrun_session(device_text: str) -> Iterator[Session]:
    """Resolve ``--device`` and, under torchrun, join the process group (gloo on CPU, nccl on CUDA).

    The group is always destroyed on the way out, also after an error or Ctrl-C.
    """
    _, local_rank, world_size = world()
    device = resolve_device(device_text, local_rank, world_size)
    if world_size <= 1:
        yield Session(device, 0, 1)
        return
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield Session(device, dist.get_rank(), world_size)
    finally:
        dist.destroy_process_group()
