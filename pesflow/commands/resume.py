"""``pesflow resume RUN_DIR``: continue a stopped or killed search."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resume", help="continue a search that was stopped or killed",
        description="Continue the run in RUN_DIR from its last checkpoint: tasks in flight "
        "are submitted again, oracle results that finished since are read back, not "
        "recomputed.",
    )
    parser.add_argument("run_dir", help="run directory made by `pesflow run`")
    parser.add_argument("--site", help="site config YAML (default: the one the run last used)")
    parser.add_argument("--oracle-calls", type=int, help="raise the oracle-call budget to N")
    parser.add_argument("--wall-time", help="raise the wall-time budget (e.g. 3600, 90m, 2h)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pesflow.config import parse_duration
    from pesflow.errors import InputError
    from pesflow.executors import load_site
    from pesflow.store.rundir import RunDir
    from pesflow.workflows.progress import run_with_progress
    from pesflow.workflows.search import resume_search

    RunDir(args.run_dir).require_run()
    if args.oracle_calls is not None and args.oracle_calls < 1:
        raise InputError(f"--oracle-calls must be at least 1, got {args.oracle_calls}")
    wall = None
    if args.wall_time is not None:
        try:
            wall = parse_duration(args.wall_time)
        except ValueError as error:
            raise InputError(f"--wall-time: {error}") from None
        if wall <= 0:
            raise InputError(f"--wall-time must be positive, got {args.wall_time}")
    site = load_site(args.site) if args.site else None
    return run_with_progress(
        lambda progress: resume_search(args.run_dir, site, progress, args.oracle_calls, wall),
        RunDir(args.run_dir).path, quiet=args.quiet,
    )
