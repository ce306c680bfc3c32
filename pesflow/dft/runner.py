"""Prepare, launch and read GPAW single points (one scratch directory per task)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
from ase import Atoms

from pesflow.dft.result import OracleResult
from pesflow.dft.settings import GPAWSettings, get_settings


def task_hash(atoms: Atoms, level: dict, tag: str = "") -> str:
    """Hash of a single point's inputs: structure, level of theory and an optional tag.

    Positions are rounded to 1e-8 Å so that a structure read back from extxyz hashes the
    same. ``tag`` tells apart evaluations that must not share a result (e.g. the task that
    asked for them).
    """
    payload = {
        "numbers": atoms.numbers.tolist(),
        "positions": [[round(float(x), 8) for x in row] for row in atoms.positions],
        "cell": [[round(float(x), 8) for x in row] for row in atoms.cell.array],
        "pbc": atoms.pbc.tolist(),
        "settings": level,
    }
    if tag:
        payload["tag"] = tag
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def write_task_input(task: Path, atoms: Atoms, settings_json: str) -> None:
    """``input.extxyz`` (atomically, no calculator or constraints) and ``settings.json``."""
    from ase.io import write  # lazily: `pesflow status` imports this module

    task.mkdir(parents=True, exist_ok=True)
    if not (task / "input.extxyz").exists():
        clean = atoms.copy()
        clean.calc = None
        clean.constraints = []
        (task / "settings.json").write_text(settings_json)
        tmp = task / ".input.extxyz.tmp"
        write(tmp, clean, format="extxyz")
        os.replace(tmp, task / "input.extxyz")


def prepare_task(
    atoms: Atoms, settings: str | dict | GPAWSettings, root: str | Path, tag: str = ""
) -> Path:
    """Write a single point's inputs into ``root/<hash of inputs>/`` and return that dir.

    The same structure, settings and tag always give the same (absolute) directory, so a
    finished result is found again instead of recomputed.
    """
    settings = get_settings(settings)
    level = settings.model_dump(exclude={"timeout"})
    task = Path(root).resolve() / task_hash(atoms, level, tag)
    write_task_input(task, atoms, settings.model_dump_json(indent=1))
    return task


def failure_reason(text: str) -> str:
    """The most telling line of an MPI job's stderr: the last exception, else the last
    line that is not an MPI banner rule."""
    lines = [line.strip() for line in text.splitlines() if line.strip(" -=*")]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["no output"])[-1]


def _gpaw_executable() -> str:
    here = Path(sys.executable).parent / "gpaw"
    return str(here) if here.exists() else (shutil.which("gpaw") or "gpaw")


def mpi_launch(ranks: int = 1, launcher: str = "mpiexec",
               extra_args: Sequence[str] = ()) -> list[str]:
    """The launcher part of an MPI command line: start ``ranks`` ranks of what follows.

    ``launcher`` is ``"mpiexec"`` (Open MPI; as root it needs ``--allow-run-as-root``, and
    ``--oversubscribe`` where a scheduler gave fewer slots than ranks) or ``"srun"``.
    ``mpiexec`` gets ``--bind-to none``: each ``mpiexec`` binds its ranks from the first
    core on, so jobs started side by side on one node (dft workers, reference
    relaxations) would all share core 0.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    if launcher == "srun":
        return ["srun", "-n", str(ranks), *extra_args]
    if launcher != "mpiexec":
        raise ValueError(f"unknown MPI launcher {launcher!r}: use 'mpiexec' or 'srun'")
    flags = ["--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        flags.insert(0, "--allow-run-as-root")
    return ["mpiexec", *flags, "-n", str(ranks), *extra_args]


def mpi_command(
    task_dir: str | Path,
    ranks: int = 1,
    launcher: str = "mpiexec",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv that runs the single point in ``task_dir`` on ``ranks`` MPI ranks
    (:func:`mpi_launch`)."""
    entry = [_gpaw_executable(), "python", "-m", "pesflow.dft.singlepoint", str(task_dir)]
    return [*mpi_launch(ranks, launcher, extra_args), *entry]


def _session(sid: int) -> list[psutil.Process]:
    """Processes of this machine in session ``sid`` (an MPI job started with its own)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def stop_job(process: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop an MPI job started in a session of its own, and every process it started here.

    Parameters
    ----------
    process
        ``mpiexec``/``srun``, started with ``start_new_session=True``.
    grace
        Seconds the launcher and the ranks get to end after SIGTERM before SIGKILL.

    Notes
    -----
    SIGTERM first: ``mpiexec`` and ``srun`` pass it on to every rank (``srun`` on every
    node) and end the job. Killing the launcher's process group is not enough: Open MPI
    puts each rank in a process group of its own, so a hung rank would outlive
    ``mpiexec``. The ranks stay in the launcher's session, which is how the rest is found.
    """
    ranks = [p for p in _session(process.pid) if p.pid != process.pid]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    alive = _still_running(ranks, grace)
    for proc in alive:  # psutil checks the start time: never a recycled PID
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _still_running(alive, grace)


def _still_running(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` s for ``procs`` to end; those still running. A zombie has
    ended (orphaned ranks are reaped by init, whenever it gets to them)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _dies_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that the launcher gets SIGTERM if the process that started it dies.

    A worker killed mid-task (OOM killer, a lost Parsl worker) would otherwise leave its
    MPI job running unwatched, beside the retry in the same task directory, and a hung
    one forever. ``setpriv`` (util-linux >= 2.33) sets the parent-death signal and execs
    the launcher; without it the job is launched as before.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *argv] if setpriv else argv


def read_result(task_dir: str | Path) -> OracleResult:
    """The result written by the entry point, or a ``missing`` result if there is none."""
    path = Path(task_dir) / "result.json"
    if not path.exists():
        return OracleResult("missing", message=f"no result in {task_dir}", task_dir=str(task_dir))
    return OracleResult.from_dict(json.loads(path.read_text()))


def run_single_point(
    atoms: Atoms,
    settings: str | dict | GPAWSettings = "fast",
    ranks: int = 1,
    root: str | Path = "dft-tasks",
    timeout: float | None = None,
    launcher: str = "mpiexec",
    extra_args: Sequence[str] = (),
    tag: str = "",
) -> OracleResult:
    """Run one GPAW single point in a subprocess and return its structured outcome.

    A finished ``ok`` result in the task directory is returned as is. A crash, a
    non-converged SCF or a timeout becomes an :class:`OracleResult` with that status;
    this function does not raise for them.
    """
    settings = get_settings(settings)
    task = prepare_task(atoms, settings, root, tag)
    done = read_result(task)
    if done.ok:
        return done
    (task / "result.json").unlink(missing_ok=True)
    timeout = timeout if timeout is not None else settings.timeout
    argv = _dies_with_parent(mpi_command(task, ranks, launcher, extra_args))
    start = time.perf_counter()
    with open(task / "stdout.txt", "w") as out, open(task / "stderr.txt", "w") as err:
        process = subprocess.Popen(argv, cwd=task, stdout=out, stderr=err, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_job(process)
            return OracleResult(
                "timeout", message=f"killed after {timeout:g} s", task_dir=str(task),
                wall_time=time.perf_counter() - start,
            )
    result = read_result(task)
    if result.status == "missing":
        reason = failure_reason((task / "stderr.txt").read_text(errors="replace")[-4000:])
        result = OracleResult(
            "crashed", message=f"exit status {returncode}: {reason}", task_dir=str(task),
            wall_time=time.perf_counter() - start,
        )
    return result
