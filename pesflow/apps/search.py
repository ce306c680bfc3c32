"""Parsl apps of the search coordinator: surrogate tasks and oracle tasks.

``surrogate_app`` (label ``surrogate``) runs a relaxation or a single point in the
surrogate of a published model version; ``oracle_app`` (label ``dft``) runs an oracle
task (a single point, or a few BFGS steps) whose every evaluation is a hash-named file
in the run dir (:mod:`pesflow.dft.oracle`); GPAW evaluations are MPI jobs launched from
the worker. Both return the result and the CPU seconds the task used.
``shared_oracle_app`` is ``oracle_app`` on the ``surrogate`` workers (site ``dft.shared``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from parsl import python_app

if TYPE_CHECKING:
    from pesflow.dft.oracle import MPILaunch, StandIn
    from pesflow.dft.settings import GPAWSettings
    from pesflow.models.loaded import SurrogateRef
    from pesflow.search.tasks import OracleResult, Result, Task


def run_surrogate_task(
    task: Task, ref: SurrogateRef, parsl_resource_specification: dict | None = None
) -> tuple[Result, dict[str, float]]:
    """Run a surrogate task in model version ``ref.version``; (result, CPU seconds)."""
    import time

    from pesflow.models.loaded import surrogate_calculator
    from pesflow.search.tasks import SurrogateRelaxTask, run_surrogate_energy, run_surrogate_relax

    start = time.thread_time()
    calculator = surrogate_calculator(
        ref, kappa=task.kappa, skip_fixed=bool(getattr(task, "fixed", 0))
    )
    run = run_surrogate_relax if isinstance(task, SurrogateRelaxTask) else run_surrogate_energy
    result = run(task, calculator, model_version=ref.version)
    return result, {"thread": time.thread_time() - start}


def run_oracle_task(
    task: Task,
    level: GPAWSettings | StandIn,
    root: str,
    tag: str,
    launch: MPILaunch,
    parsl_resource_specification: dict | None = None,
) -> tuple[OracleResult, dict[str, float]]:
    """Run an oracle task; each frame's ``info['oracle_hash']`` names its result file.

    CPU seconds: this thread's (``thread``; a stand-in computes here) and ranks × wall
    time of the MPI jobs computed now (``mpi``; GPAW). Evaluations read back cost nothing.
    """
    import time

    from pesflow.dft.oracle import OracleCalculator
    from pesflow.dft.settings import GPAWSettings
    from pesflow.search.tasks import run_oracle

    start = time.thread_time()
    calculator = OracleCalculator(level, root, tag, launch)
    result = run_oracle(task, calculator)
    ok = [digest for digest, _, r in calculator.records if r.ok]
    if task.keep == "last":
        ok = ok[-1:]
    for frame, digest in zip(result.frames, ok, strict=False):
        frame.info["oracle_hash"] = digest
    mpi = 0.0
    if isinstance(level, GPAWSettings):
        mpi = sum(launch.ranks * (r.wall_time or 0.0) for _, computed, r in calculator.records
                  if computed)
    return result, {"thread": time.thread_time() - start, "mpi": mpi}


_SPEC = ["parsl_resource_specification"]
surrogate_app = python_app(run_surrogate_task, executors=["surrogate"], ignore_for_cache=_SPEC)
oracle_app = python_app(run_oracle_task, executors=["dft"], ignore_for_cache=_SPEC)
shared_oracle_app = python_app(run_oracle_task, executors=["surrogate"], ignore_for_cache=_SPEC)
