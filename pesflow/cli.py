"""The ``pesflow`` command line.

Each subcommand lives in ``pesflow/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning an exit status. Heavy imports happen
inside those callables so that ``pesflow --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pesflow import __version__
from pesflow.errors import InputError, SearchStalled

#: Subcommand modules, in the order ``pesflow --help`` lists them.
COMMANDS = ("run", "resume", "status", "pes", "dft", "models", "site", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The ``pesflow`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="pesflow",
        description="Active Δ-learning global structure optimization and symmetry-restricted "
        "2D PES slices, on a laptop or a SLURM cluster (Parsl).",
    )
    parser.add_argument("--version", action="version", version=f"pesflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pesflow.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``pesflow`` with ``argv``; returns the exit status (2: bad input, 1: stalled)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        print(f"pesflow {args.command}: error: {error}", file=sys.stderr)
        return 2
    except SearchStalled as error:
        print(f"pesflow {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
