"""``pesflow demo``: CHGNet relaxation + GPAW single point of [Ag2S]_2 through Parsl."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SITE = Path(__file__).resolve().parents[2] / "site-configs" / "local-htex.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="relax [Ag2S]_2 with CHGNet and evaluate it with GPAW, through Parsl"
    )
    parser.add_argument("--site", default=str(DEFAULT_SITE), help="site config YAML")
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--ranks", type=int, help="MPI ranks of the GPAW job")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pesflow.errors import InputError
    from pesflow.workflows.demo import run_demo

    if args.ranks is not None and args.ranks < 1:
        raise InputError(f"--ranks must be at least 1, got {args.ranks}")
    console = Console(soft_wrap=True)
    console.print(f"[Ag2S]_2: CHGNet relaxation, then GPAW single point (site {args.site})")
    result = run_demo(args.site, args.out, ranks=args.ranks)
    console.print(
        f"CHGNet 0.3.0   E = {result.chgnet_energy:12.4f} eV  ({result.chgnet_steps} BFGS steps, "
        f"fmax {result.chgnet_fmax:.3f} eV/Å)  wall {result.chgnet_wall:6.1f} s"
    )
    if result.dft.ok:
        console.print(
            f"GPAW           E = {result.dft.energy:12.4f} eV  ({result.level_of_theory}, "
            f"{result.dft.info.get('ranks')} ranks)  wall {result.dft_wall:6.1f} s"
        )
    else:
        console.print(f"GPAW single point {result.dft.status}: {result.dft.message}")
    console.print(
        f"total wall {result.total_wall:.1f} s; energies use different references (CHGNet: "
        f"MP-compatible totals, GPAW: relative to isolated atoms); results in {args.out}"
    )
    return 0 if result.dft.ok else 1
