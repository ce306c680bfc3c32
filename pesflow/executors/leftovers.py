"""Processes a killed coordinator left behind on this machine.

When a coordinator dies by SIGKILL, its HTEx interchanges, worker pools and the MPI jobs
they started keep running (they are not its children any more). A resumed run must not
share the run directory with them, so :func:`stop_leftovers` finds them by what ties
them to the run directory and kills them: processes whose command line or open files
(the workers' logs, and the stdout/stderr a pool's spawned children inherit) lie in
``RUN_DIR/parsl``, and MPI/GPAW processes working in ``RUN_DIR/oracle``.
Only this machine is searched; SLURM blocks of the old session end at their walltime or
with ``scancel``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

_MPI_WORDS = ("gpaw", "mpiexec", "mpirun", "orted", "prterun", "prted", "pesflow.dft")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def leftover_processes(run_dir: str | Path) -> list[psutil.Process]:
    """Processes of an earlier session of ``run_dir`` still alive on this machine."""
    run = Path(run_dir).resolve()
    parsl_dir, oracle_dir = str(run / "parsl"), str(run / "oracle")
    me = psutil.Process()
    mine = {me.pid} | {p.pid for p in me.parents()} | {p.pid for p in me.children(True)}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if proc.pid in mine:
            continue
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            cwd = proc.info["cwd"] or ""
            hit = parsl_dir in cmdline
            if not hit and _inside(cwd, oracle_dir):
                hit = any(word in cmdline for word in _MPI_WORDS)
            if not hit:  # a worker pool's spawned children name no Parsl path
                hit = any(_inside(f.path, parsl_dir) for f in proc.open_files())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if hit:
            found.append(proc)
    return found


def stop_leftovers(run_dir: str | Path, timeout: float = 10.0) -> list[int]:
    """Kill the leftovers of ``run_dir`` (SIGTERM, then SIGKILL); return their PIDs."""
    procs = leftover_processes(run_dir)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [p.pid for p in procs]
