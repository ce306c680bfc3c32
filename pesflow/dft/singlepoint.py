"""MPI entry point of a GPAW single point.

Run as ``mpiexec -n N gpaw python -m pesflow.dft.singlepoint TASK_DIR`` (GPAW 26 refuses a
plain ``python`` under mpiexec). Reads ``TASK_DIR/input.extxyz`` and ``settings.json``,
writes GPAW's log to ``gpaw.txt`` and the outcome to ``result.json`` (rank 0, atomically).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from ase.io import read


def main(task_dir: str) -> int:
    from gpaw import GPAW
    from gpaw.mpi import world

    from pesflow.dft.result import OracleResult
    from pesflow.dft.settings import GPAWSettings
    from pesflow.store.atomic import atomic_write_json

    task = Path(task_dir)
    start = time.perf_counter()
    settings = GPAWSettings(**json.loads((task / "settings.json").read_text()))
    atoms = read(task / "input.extxyz")
    atoms.constraints = []
    atoms.calc = GPAW(**settings.gpaw_parameters(), txt=str(task / "gpaw.txt"))
    try:
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        result = OracleResult("ok", float(energy), np.asarray(forces))
    except Exception as error:  # GPAW signals SCF failure by exception; anything else is a crash
        convergence = "converge" in type(error).__name__.lower() or "converge" in str(error).lower()
        status = "scf_not_converged" if convergence else "crashed"
        message = f"{type(error).__name__}: {error}"
        if convergence and not str(error).strip():  # GPAW 26 raises it without a message
            message += f"SCF not converged in {settings.maxiter} iterations (maxiter)"
        if status == "crashed" and world.rank == 0:
            traceback.print_exc()
        result = OracleResult(status, message=message)
    result.wall_time = time.perf_counter() - start
    result.task_dir = str(task)
    result.info = {"ranks": world.size, "level_of_theory": settings.level_of_theory()}
    if world.rank == 0:
        atomic_write_json(task / "result.json", result.to_dict())
    return 0 if result.ok else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
