"""``pesflow run RUN.yaml --site SITE.yaml --out RUN_DIR``: an active-learning search."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SITE = Path(__file__).resolve().parents[2] / "site-configs" / "local-htex.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a global structure search (Δ-learning, REX/GOFEE/BH/RSS) from RUN.yaml",
        description="Validate RUN.yaml and the site config, then run the search in --out. "
        "Stop it with Ctrl-C at any moment and continue with `pesflow resume RUN_DIR`.",
    )
    parser.add_argument("config", help="run config YAML (see examples/runs/)")
    parser.add_argument("--site", default=str(DEFAULT_SITE),
                        help="site config YAML (default: site-configs/local-htex.yaml)")
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing run directory (its results are deleted)")
    parser.add_argument("--deterministic", action="store_true",
                        help="tell results in submission order: the same seed gives the same "
                        "search on any executor (slower: workers wait at each batch's end)")
    parser.add_argument("--no-overlap", dest="overlap", action="store_false",
                        help="never run surrogate tasks while oracle tasks run (sequential, "
                        "as AGOX; for benchmarks)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pesflow.config import load_run_config
    from pesflow.executors import load_site
    from pesflow.store.lock import RunDirLock
    from pesflow.store.rundir import clear_run_dir, new_run_dir
    from pesflow.workflows.progress import run_with_progress
    from pesflow.workflows.search import run_search

    config = load_run_config(args.config)
    site = load_site(args.site)
    config.check()
    run_dir = new_run_dir(args.out, force=args.force)
    if args.force and run_dir.path.is_dir() and any(run_dir.path.iterdir()):
        with RunDirLock(run_dir.path):  # refuses while another coordinator drives it
            clear_run_dir(run_dir)
    return run_with_progress(
        lambda progress: run_search(config, site, run_dir.path, args.deterministic, progress,
                                    overlap=args.overlap),
        run_dir.path, quiet=args.quiet,
    )
