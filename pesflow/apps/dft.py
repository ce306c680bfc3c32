"""GPAW single points as a Parsl bash app (executor label ``dft``).

The caller prepares the task directory (:func:`pesflow.dft.prepare_task`); the app only
launches ``mpiexec``/``srun`` on it, and :func:`dft_result` reads what the MPI job wrote.
A worker of the ``dft`` label therefore holds no GPAW state: it spends its time waiting
for its MPI job.

>>> task = prepare_task(atoms, "fast", root)                          # doctest: +SKIP
>>> future = submit_dft(task, site.dft, site.resource_specification())  # doctest: +SKIP
>>> dft_result(future, task).energy                                    # doctest: +SKIP
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from parsl import bash_app
from parsl.app.errors import AppTimeout, BashExitFailure

from pesflow.dft import OracleResult, mpi_command, read_result
from pesflow.dft.runner import failure_reason
from pesflow.executors.site import DFTSettings

#: Exit status of coreutils ``timeout`` when it had to stop the command.
TIMEOUT_STATUS = 124


def dft_command(
    task_dir: str,
    ranks: int,
    launcher: str = "mpiexec",
    mpi_args: Sequence[str] = (),
    timeout: float | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    parsl_resource_specification: dict | None = None,
) -> str:
    """The shell command that runs the GPAW single point prepared in ``task_dir``.

    ``timeout`` (s) wraps the launcher in coreutils ``timeout``, which ends the MPI job
    with exit status 124.
    """
    argv = mpi_command(task_dir, ranks, launcher, list(mpi_args))
    if timeout:
        argv = ["timeout", "--kill-after=10", f"{timeout:g}", *argv]
    return f"cd {shlex.quote(str(task_dir))} && {shlex.join(argv)}"


_IGNORED = ["parsl_resource_specification", "stdout", "stderr"]
dft_app = bash_app(dft_command, executors=["dft"], ignore_for_cache=_IGNORED)
#: ``dft_app`` on the surrogate workers (site ``dft.shared``)
shared_dft_app = bash_app(dft_command, executors=["surrogate"], ignore_for_cache=_IGNORED)


def submit_dft(
    task_dir: str | Path,
    settings: DFTSettings,
    resource_specification: dict | None = None,
    timeout: float | None = None,
) -> Future:
    """Launch the prepared single point in ``task_dir`` on the ``dft`` executor (the
    ``surrogate`` one with ``shared: true``).

    MPI's stdout and stderr go to ``task_dir/mpi.out`` and ``task_dir/mpi.err`` (GPAW's
    own log is ``gpaw.txt``). ``settings`` is the site's ``dft`` section (ranks,
    launcher, extra MPI arguments). A finished ``ok`` task is recomputed if submitted
    again: check ``read_result(task_dir).ok`` first.
    """
    task = Path(task_dir).resolve()
    if read_result(task).status not in ("ok", "missing"):
        (task / "result.json").unlink()  # a stale failure must not be read back as this run's
    app = shared_dft_app if settings.shared else dft_app
    # Keywords only: a bash app turns every defaulted parameter into a keyword argument.
    return app(
        str(task),
        ranks=settings.ranks,
        launcher=settings.launcher,
        mpi_args=list(settings.mpi_args),
        timeout=timeout,
        stdout=str(task / "mpi.out"),
        stderr=str(task / "mpi.err"),
        parsl_resource_specification=resource_specification or None,
    )


def dft_result(future: Future, task_dir: str | Path) -> OracleResult:
    """Wait for a :func:`submit_dft` future and return the task's :class:`OracleResult`.

    A failed launch is not raised: a non-zero exit without ``result.json`` becomes a
    ``crashed`` result (``timeout`` for exit status 124 or a Parsl walltime), with the
    last line of ``mpi.err`` as the reason.
    """
    task = Path(task_dir).resolve()
    try:
        future.result()
        code: int | None = 0
    except BashExitFailure as error:
        code = error.exitcode
    except AppTimeout:
        code = TIMEOUT_STATUS
    result = read_result(task)
    if result.status != "missing":
        return result
    if code == TIMEOUT_STATUS:
        return OracleResult("timeout", message="MPI job ran past its timeout", task_dir=str(task))
    err = task / "mpi.err"
    reason = failure_reason(err.read_text(errors="replace") if err.exists() else "")
    return OracleResult("crashed", message=f"exit status {code}: {reason}", task_dir=str(task))
