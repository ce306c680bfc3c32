"""``pesflow demo``: the main job, an active Δ-learning REX search with real GPAW.

Runs ``examples/runs/ag2s2-rex-demo.yaml`` ([Ag2S]_2, CHGNet + repulsive prior with a
Δ-model, GPAW LCAO dzp PBE oracle, 20 oracle calls) on ``site-configs/local-htex.yaml``
into a new directory ``runs/demo-YYYYmmdd-HHMMSS`` (an earlier demo is never overwritten),
then prints the best structure, its energy and where the trace plot is.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "examples" / "runs" / "ag2s2-rex-demo.yaml"
DEFAULT_SITE = ROOT / "site-configs" / "local-htex.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the main job: Δ-learning REX for [Ag2S]_2 with CHGNet and real GPAW",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="run config YAML")
    parser.add_argument("--site", default=str(DEFAULT_SITE), help="site config YAML")
    parser.add_argument("--out", help="run directory (default runs/demo-<date>-<time>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pesflow.config import load_run_config
    from pesflow.executors import load_site
    from pesflow.store.rundir import new_run_dir
    from pesflow.workflows.progress import run_with_progress
    from pesflow.workflows.search import run_search

    config = load_run_config(args.config)
    site = load_site(args.site)
    config.check()
    out = args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = new_run_dir(out)
    console = Console(soft_wrap=True)
    console.print(f"{config.name}: {config.algorithm.name} on {config.problem.system} "
                  f"{config.problem.options}, prior {config.prior} + Δ-model, oracle "
                  f"{config.oracle.gpaw_settings().level_of_theory()}, "
                  f"{config.budget.oracle_calls} oracle calls; site {site.name}; out {out}")
    start = time.perf_counter()
    status = run_with_progress(
        lambda progress: run_search(config, site, run_dir.path, on_progress=progress),
        run_dir.path,
    )
    if status == 0:
        from ase.io import read

        best = read(run_dir.best)
        console.print(f"best [Ag2S]_2 structure: {run_dir.best} ({best.get_chemical_formula()}),"
                      f" E = {best.get_potential_energy():.4f} eV (GPAW, relative to isolated "
                      f"atoms); trace plot {run_dir.trace}; total wall "
                      f"{time.perf_counter() - start:.0f} s")
    return status
