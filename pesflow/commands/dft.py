"""``pesflow dft STRUCTURE``: one GPAW single point from the command line."""

from __future__ import annotations

import argparse
import json

#: Closer than this (Å) two atoms overlap: no bond is this short (H2: 0.74 Å).
MIN_DISTANCE = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dft", help="run one GPAW single point (energy and forces) under MPI"
    )
    parser.add_argument("structure", help="structure file (extxyz, CIF, POSCAR, ...)")
    parser.add_argument("--settings", default="fast", help="preset: fast (LCAO dzp) or paper (PW)")
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks (default 1)")
    parser.add_argument("--kpts", type=int, nargs=3, metavar="K", help="k-point grid")
    parser.add_argument("--mode", choices=["lcao", "pw"], help="override the preset's mode")
    parser.add_argument("--basis", help="override the LCAO basis (dzp, szp, sz, sz(dzp))")
    parser.add_argument("--ecut", type=float, help="plane-wave cutoff in eV")
    parser.add_argument("--maxiter", type=int, help="SCF iteration cap")
    parser.add_argument("--timeout", type=float, help="wall-time limit in seconds")
    parser.add_argument("--launcher", choices=["mpiexec", "srun"], default="mpiexec")
    parser.add_argument("--out", default="dft-tasks", help="scratch root (default ./dft-tasks)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pesflow.dft import get_settings, run_single_point
    from pesflow.errors import InputError
    from pesflow.structures.io import read_structure

    if args.ranks < 1:
        raise InputError(f"--ranks must be at least 1, got {args.ranks}")
    atoms = read_structure(args.structure)
    settings = get_settings(
        args.settings, kpts=tuple(args.kpts) if args.kpts else None, mode=args.mode,
        basis=args.basis, ecut=args.ecut, maxiter=args.maxiter, timeout=args.timeout,
    )
    _check_structure(atoms, settings, args.structure)
    result = run_single_point(
        atoms, settings, ranks=args.ranks, root=args.out, launcher=args.launcher
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    elif result.ok:
        print(f"{settings.level_of_theory()}; {len(atoms)} atoms; {args.ranks} rank(s)")
        print(f"energy {result.energy:.6f} eV  max force "
              f"{(result.forces**2).sum(axis=1).max() ** 0.5:.4f} eV/Å  "
              f"wall {result.wall_time:.1f} s  ({result.task_dir})")
    else:
        print(f"single point {result.status}: {result.message} ({result.task_dir})")
    return 0 if result.ok else 1


def _check_structure(atoms, settings, path: str) -> None:
    """Refuse, before any MPI job starts, what GPAW would fail on after it has started."""
    import numpy as np

    from pesflow.dft.settings import missing_data
    from pesflow.errors import InputError

    try:
        missing = missing_data(settings, atoms.get_chemical_symbols())
    except ImportError:  # no GPAW in this Python: the MPI job says so itself
        missing = []
    if missing:
        raise InputError(
            f"{path}: GPAW has no {', '.join(missing)} on this machine; choose another --basis "
            "(the gpaw-data package has dzp) or element, or set GPAW_SETUP_PATH"
        )
    if len(atoms) > 1:
        d = atoms.get_all_distances(mic=atoms.pbc.any())
        d[np.diag_indices(len(atoms))] = np.inf
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] < MIN_DISTANCE:
            raise InputError(
                f"{path}: atoms {min(i, j)} and {max(i, j)} are {d[i, j]:.2f} Å apart (less than "
                f"{MIN_DISTANCE} Å): overlapping atoms; fix the structure"
            )
