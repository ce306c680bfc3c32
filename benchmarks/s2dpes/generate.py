"""Structures generated and scored (distance cost, Eq. 1) per second, JAX float64.

Test cells: P-1 (triclinic: the worst case for periodic images) with 5, 20 and 50
general-position orbits, i.e. 10, 40 and 100 atoms, 12 Å^3 per atom. A slice over
two DOFs of the first orbit is generated and scored in memory-bounded chunks
(StructureSolver.grid_cost); the first call (JIT compilation) is timed apart.

    .venv/bin/python benchmarks/s2dpes/generate.py [--points 10000] [--repeats 3]
        [--memory-mb 256] [--out benchmarks/s2dpes/generate.json]

JAX runs on its default device (a GPU when jax sees one); the JSON names it.
Writes generate.json (or --out); plot.py draws the PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def triclinic(natoms: int, seed: int = 0):
    from ase.spacegroup import crystal

    rng = np.random.default_rng(seed)
    orbits = natoms // 2
    a = (12.0 * natoms / 0.85) ** (1 / 3)  # 0.85: volume factor of the 70/80/100° cell below
    symbols = ["Si", "O"] * (orbits // 2) + ["Si"] * (orbits % 2)
    return crystal(symbols, basis=rng.random((orbits, 3)), spacegroup=2,
                   cellpar=[a, a * 1.05, a * 0.95, 70, 80, 100])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--out", type=Path, default=HERE / "generate.json")
    args = parser.parse_args()

    from pesflow.pes.radii import dmin_matrix
    from pesflow.pes.solver import StructureSolver, jax_x64, make_grid
    from pesflow.pes.symmetry import analyze

    jax = jax_x64()
    side = round(float(np.sqrt(args.points)))
    rows = []
    for natoms in (10, 40, 100):
        analysis = analyze(triclinic(natoms))
        assert len(analysis.atoms) == natoms
        dmin, _ = dmin_matrix(analysis.atoms.get_chemical_symbols())
        solver = StructureSolver(analysis, dmin, memory_bytes=args.memory_mb * 2**20)
        grid = make_grid(analysis, analysis.dof_names[:2], steps=side)
        start = time.perf_counter()
        solver.grid_cost(grid)
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            cost, _ = solver.grid_cost(grid)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        frac = analysis.frac_positions(grid.values())  # generation alone (numpy)
        generate = time.perf_counter() - start
        assert frac.shape == (grid.size, natoms, 3)
        median = float(np.median(times))
        rows.append({
            "natoms": natoms, "points": grid.size, "chunk_size": solver.chunk_size,
            "first_call_s": round(first, 3), "median_s": round(median, 4),
            "structures_per_s": round(grid.size / median, 1),
            "generation_only_per_s": round(grid.size / generate, 1),
            "cost_positive_fraction": float(np.mean(cost > 0)),
        })
        print(rows[-1], flush=True)
    device = jax.devices()[0]
    result = {
        "benchmark": "s2DPES structures generated and scored per second (JAX, float64)",
        "device": str(device), "device_kind": device.device_kind, "jax": jax.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "memory_bound_mb": args.memory_mb, "repeats": args.repeats, "results": rows,
        "command": "benchmarks/s2dpes/generate.py --points "
                   f"{args.points} --repeats {args.repeats} --memory-mb {args.memory_mb}",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
