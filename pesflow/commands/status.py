"""``pesflow status RUN_DIR [--json]``: where a search stands (safe while it runs)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="oracle calls, best energy, walkers, model version, CPU time of a run"
    )
    parser.add_argument("run_dir", help="run directory made by `pesflow run`")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pesflow.workflows.progress import status_table
    from pesflow.workflows.search import load_status

    summary = load_status(args.run_dir)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        Console(soft_wrap=True).print(status_table(summary, title=str(args.run_dir)))
    return 0
