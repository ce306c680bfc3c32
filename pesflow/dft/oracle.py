"""The oracle as an ASE calculator whose every evaluation is a file in the run dir.

Each single point lives in ``root/<hash>/`` (hash of structure, level of theory and a
tag naming the task that asked for it) and ends with ``result.json``, written
atomically. An evaluation whose ``result.json`` is already ``ok`` is read back, not
recomputed: that is how a resumed run picks up work that finished after its last
checkpoint. Every evaluation actually computed appends one JSON line to
``root/performed.log`` (hash, status, wall time, pid), the oracle's own count of its work.

Two levels of theory: GPAW (:class:`~pesflow.dft.settings.GPAWSettings`, run under MPI
by :func:`~pesflow.dft.runner.run_single_point`) and a stand-in ASE calculator from the
model registry (:class:`StandIn`), evaluated in this process.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from pesflow.dft.result import OracleResult
from pesflow.dft.runner import read_result, run_single_point, task_hash, write_task_input
from pesflow.dft.settings import GPAWSettings
from pesflow.store.atomic import atomic_write_json

PERFORMED_LOG = "performed.log"


@dataclass(frozen=True)
class StandIn:
    """A registry calculator (``lj``, ``emt``, ``morse:rho0=3``) standing in for DFT.

    ``delay`` seconds are added per evaluation: asleep, or burning one core if ``busy``.
    """

    model: str
    delay: float = 0.0
    busy: bool = False

    def level(self) -> dict:
        return {"standin": self.model}  # delay does not change the result

    def level_of_theory(self) -> str:
        return f"stand-in {self.model}"


@dataclass(frozen=True)
class MPILaunch:
    """How GPAW single points are launched (from the site's ``dft`` section)."""

    ranks: int = 1
    launcher: str = "mpiexec"
    mpi_args: tuple[str, ...] = ()
    timeout: float | None = None

    @classmethod
    def of(cls, dft: Any, timeout: float | None = None) -> MPILaunch:
        """The launch a site's ``dft`` section (ranks, launcher, mpi_args) describes."""
        return cls(ranks=dft.ranks, launcher=dft.launcher, mpi_args=tuple(dft.mpi_args),
                   timeout=timeout)


class OracleError(RuntimeError):
    """An oracle single point that gave no energy (``status`` says why)."""

    def __init__(self, result: OracleResult) -> None:
        super().__init__(f"{result.status}: {result.message}")
        self.result = result


_local = threading.local()


def _standin_calculator(model: str) -> Calculator:
    """One stand-in calculator per thread and model (thread-safe, built once)."""
    cache = _local.__dict__.setdefault("standins", {})
    if model not in cache:
        from pesflow.models.registry import get_calculator

        cache[model] = get_calculator(model)
    return cache[model]


def _spend(seconds: float, busy: bool) -> None:
    if not busy:
        time.sleep(seconds)
        return
    end = time.process_time() + seconds  # CPU seconds, so a shared core still burns them
    x = 0.0
    while time.process_time() < end:
        for _ in range(10_000):
            x += 1e-9


def _log_performed(root: Path, digest: str, result: OracleResult) -> None:
    line = json.dumps({
        "hash": digest, "status": result.status, "wall_time": result.wall_time,
        "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
    })
    fd = os.open(root / PERFORMED_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one write: lines never interleave
    finally:
        os.close(fd)


def evaluate(
    atoms: Atoms,
    level: GPAWSettings | StandIn,
    root: str | Path,
    tag: str = "",
    launch: MPILaunch = MPILaunch(),
) -> tuple[OracleResult, str, bool]:
    """One oracle single point of ``atoms`` in ``root/<hash>/``.

    Returns
    -------
    result, hash, computed
        The outcome (never raised), the task directory's name, and whether it was
        computed now (``False``: an ``ok`` result was already there).
    """
    root = Path(root).resolve()
    if isinstance(level, GPAWSettings):
        digest = task_hash(atoms, level.model_dump(exclude={"timeout"}), tag)
        done = read_result(root / digest)
        if done.ok:
            return done, digest, False
        result = run_single_point(
            atoms, level, ranks=launch.ranks, root=root, launcher=launch.launcher,
            extra_args=list(launch.mpi_args), tag=tag,
            timeout=launch.timeout if launch.timeout is not None else level.timeout,
        )
    else:
        digest = task_hash(atoms, level.level(), tag)
        task = root / digest
        done = read_result(task)
        if done.ok:
            return done, digest, False
        write_task_input(task, atoms, json.dumps(asdict(level)))
        result = _standin_point(atoms, level, task)
    _log_performed(root, digest, result)
    return result, digest, True


def _standin_point(atoms: Atoms, level: StandIn, task: Path) -> OracleResult:
    start = time.perf_counter()
    probe = atoms.copy()
    probe.constraints = []
    probe.calc = _standin_calculator(level.model)
    try:
        energy = float(probe.get_potential_energy())
        forces = np.array(probe.get_forces())
        if level.delay:
            _spend(level.delay, level.busy)
        result = OracleResult("ok", energy, forces)
        if not np.isfinite(energy):
            result = OracleResult("crashed", message="stand-in gave no finite energy")
    except Exception as error:  # a stand-in failing is an oracle failure, not a crash of ours
        result = OracleResult("crashed", message=f"{type(error).__name__}: {error}")
        _local.__dict__.get("standins", {}).pop(level.model, None)  # may be half set up
    result.wall_time = time.perf_counter() - start
    result.task_dir = str(task)
    result.info = {"level_of_theory": level.level_of_theory(), "ranks": 1}
    atomic_write_json(task / "result.json", result.to_dict())
    return result


class OracleCalculator(Calculator):
    """ASE calculator over :func:`evaluate`: energy and forces from files in ``root``.

    A failed single point raises :class:`OracleError`. ``records`` lists, in call order,
    ``(hash, computed, result)`` of every evaluation, so callers can say which file
    each frame came from and how much was computed.
    """

    implemented_properties = ("energy", "forces")

    def __init__(
        self,
        level: GPAWSettings | StandIn,
        root: str | Path,
        tag: str = "",
        launch: MPILaunch = MPILaunch(),
    ) -> None:
        super().__init__()
        self.level, self.root, self.tag, self.launch = level, Path(root), tag, launch
        self.records: list[tuple[str, bool, OracleResult]] = []

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        result, digest, computed = evaluate(self.atoms, self.level, self.root, self.tag,
                                            self.launch)
        self.records.append((digest, computed, result))
        if not result.ok:
            raise OracleError(result)
        self.results = {"energy": float(result.energy), "forces": np.asarray(result.forces)}
