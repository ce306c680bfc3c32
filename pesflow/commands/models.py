"""``pesflow models``: list the uMLIPs and stand-ins and whether each is usable offline."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list models (uMLIPs, stand-ins) and whether each works offline"
    )
    parser.add_argument(
        "--check", metavar="NAME", help="check that NAME (e.g. mace:/path/model) can be loaded"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from pesflow.models.registry import MODELS, check_model, get_calculator

    console = Console(soft_wrap=True)
    if args.check:
        check_model(args.check)
        get_calculator(args.check)
        console.print(f"{args.check}: loads")
        return 0
    table = Table(title="pesflow models")
    for column in ("name", "model", "offline"):
        table.add_column(column)
    for info in MODELS.values():
        table.add_row(info.name, info.description, info.offline_status())
    console.print(table)
    return 0
