"""Two 1-rank GPAW single points side by side: Open MPI's default core binding against
``--bind-to none`` (what ``pesflow.dft.runner.mpi_launch`` passes since session 12).

Each ``mpiexec`` binds its ranks from core 0 on, so two jobs started at once by two dft
workers (or two reference relaxations) shared core 0. The structure is the Ag8S4
reference of the real suite (GPAW ``fast``, 15 Å cell), as in the campaign::

    .venv/bin/python benchmarks/dft/side_by_side.py --rounds 2 \
        --out benchmarks/dft/side-by-side.json

Per round: one point alone, two at once with the default binding, two at once with
``--bind-to none`` (each point a fresh task directory, nothing cached). Run it on a quiet
machine: the figures are wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ase.io import read

from pesflow.dft.runner import mpi_command, prepare_task, read_result

UNBIND = ("--bind-to", "none")

REFERENCE = Path(__file__).resolve().parents[1] / "campaign" / "ag2s" / "references"


def _reference_structure():
    return read(REFERENCE / "Ag8S4" / "reference.extxyz")


def _points(atoms, root: Path, tag: str, bound: bool, n: int) -> list[dict]:
    """``n`` single points started at once (``bound``: without ``--bind-to none``)."""
    tasks = [prepare_task(atoms, "fast", root, f"{tag}-{i}") for i in range(n)]
    rows: list[dict] = [{} for _ in tasks]

    def run(i: int, task: Path) -> None:
        argv = mpi_command(task)
        if bound:  # the launch as it was before session 12
            at = argv.index(UNBIND[0])
            argv = argv[:at] + argv[at + len(UNBIND):]
        start = time.perf_counter()
        subprocess.run(argv, cwd=task, check=True, capture_output=True)
        result = read_result(task)
        rows[i] = {"wall_s": time.perf_counter() - start, "status": result.status,
                   "energy": result.energy}

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    atoms = _reference_structure()
    results: dict[str, list] = {"alone": [], "two_bound": [], "two_unbound": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            results["alone"] += _points(atoms, Path(tmp), f"alone{r}", False, 1)
            results["two_bound"] += _points(atoms, Path(tmp), f"bound{r}", True, 2)
            results["two_unbound"] += _points(atoms, Path(tmp), f"free{r}", False, 2)
    medians = {k: statistics.median(row["wall_s"] for row in v) for k, v in results.items()}
    data = {
        "what": "wall time of one GPAW fast point of Ag8S4 (15 Å cell, 1 rank): alone, "
                "two at once with Open MPI's default binding, two at once with --bind-to none",
        "command": f"benchmarks/dft/side_by_side.py --rounds {args.rounds}",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "launch": "pesflow.dft.runner.mpi_command, 1 rank; bound: without --bind-to none",
        "points": results, "median_wall_s": medians,
        "ratio_bound_to_unbound": medians["two_bound"] / medians["two_unbound"],
    }
    args.out.write_text(json.dumps(data, indent=1))
    print(json.dumps({"median_wall_s": medians,
                      "ratio_bound_to_unbound": data["ratio_bound_to_unbound"]}, indent=1))


if __name__ == "__main__":
    main()
