"""Work items engines ask for, their results, and the functions that do the work.

Engines return tasks from ``propose()`` and take results in ``tell()``. Tasks and
results are plain data (numbers, strings, an :class:`ase.Atoms`, a model version), so a
coordinator can ship them to workers; :func:`to_dict`/:func:`from_dict` turn them into
JSON/HDF5-friendly dicts (no pickle). The ``run_*`` functions are what a worker runs:
the serial runner calls them in-process, the Parsl apps wrap them.

Model versions: a surrogate task carries ``model_version``, the Δ-model version the
engine saw when it proposed the task (it includes all oracle data told to the engine up
to then). The serial runner uses exactly that version; an asynchronous coordinator may
use that version or a newer one, and the result says which it used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from pesflow.errors import ModelOutOfResources, out_of_resources
from pesflow.search.relax import relax
from pesflow.structures.problem import Confinement


def atoms_to_dict(atoms: Atoms) -> dict:
    """Plain-data form of a structure (and its single-point energy/forces, if any)."""
    data: dict[str, Any] = {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": atoms.pbc.tolist(),
    }
    calc = atoms.calc
    if calc is not None and "energy" in getattr(calc, "results", {}):
        data["energy"] = float(calc.results["energy"])
        if "forces" in calc.results:
            data["forces"] = np.asarray(calc.results["forces"]).tolist()
    return data


def atoms_from_dict(data: dict) -> Atoms:
    """Inverse of :func:`atoms_to_dict`."""
    atoms = Atoms(
        numbers=data["numbers"], positions=data["positions"], cell=data["cell"], pbc=data["pbc"]
    )
    if "energy" in data:
        forces = np.asarray(data["forces"]) if "forces" in data else None
        atoms.calc = SinglePointCalculator(atoms, energy=data["energy"], forces=forces)
    return atoms


def _confinement_to_dict(c: Confinement | None) -> dict | None:
    if c is None:
        return None
    return {"cell": c.cell.tolist(), "corner": c.corner.tolist(), "periodic": list(c.periodic)}


def _confinement_from_dict(d: dict | None) -> Confinement | None:
    return None if d is None else Confinement(d["cell"], d["corner"], tuple(d["periodic"]))


class _Plain:
    """dict conversion for the dataclasses below (Atoms and Confinement fields handled)."""

    kind: ClassVar[str]

    def todict(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Atoms):
                value = atoms_to_dict(value)
            elif isinstance(value, Confinement):
                value = _confinement_to_dict(value)
            elif f.name == "frames":
                value = [atoms_to_dict(a) for a in value]
            out[f.name] = value
        return out

    @classmethod
    def fromdict(cls, data: dict):
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            value = data.get(f.name)
            if f.name in ("atoms",) and value is not None:
                value = atoms_from_dict(value)
            elif f.name == "confinement":
                value = _confinement_from_dict(value)
            elif f.name == "frames":
                value = [atoms_from_dict(a) for a in value]
            if f.name in data:
                kwargs[f.name] = value
        return cls(**kwargs)


@dataclass
class SurrogateRelaxTask(_Plain):
    """Relax ``atoms`` in the surrogate (E_model, or its LCB when ``kappa`` > 0)."""

    kind: ClassVar[str] = "surrogate_relax"
    id: int
    atoms: Atoms
    model_version: int
    kappa: float = 0.0
    fmax: float = 0.05
    steps: int = 500
    fixed: int = 0
    confinement: Confinement | None = None


@dataclass
class SurrogateEnergyTask(_Plain):
    """Surrogate single point (REX's walker re-prediction after retraining)."""

    kind: ClassVar[str] = "surrogate_energy"
    id: int
    atoms: Atoms
    model_version: int
    kappa: float = 0.0


@dataclass
class OracleTask(_Plain):
    """Oracle ("DFT") evaluation of ``atoms``; with ``steps`` > 0, that many BFGS steps.

    Every energy-and-forces evaluation is one oracle call. ``keep`` says which evaluated
    frames come back: ``"all"`` (GOFEE: the candidate and its one-step relaxation) or
    ``"last"`` (the DFT-only baseline's relaxed structure).
    """

    kind: ClassVar[str] = "oracle"
    id: int
    atoms: Atoms
    steps: int = 0
    fmax: float = 0.05
    fixed: int = 0
    confinement: Confinement | None = None
    keep: str = "all"


@dataclass
class SurrogateRelaxResult(_Plain):
    """A structure relaxed in the surrogate (model ``model_version``), with its energy."""

    kind: ClassVar[str] = "surrogate_relax"
    task_id: int
    atoms: Atoms
    energy: float
    model_version: int
    sigma: float | None = None
    steps: int = 0
    converged: bool = False
    error: str | None = None


@dataclass
class SurrogateEnergyResult(_Plain):
    """A surrogate single point (model ``model_version``): energy and, for a Δ-model, σ."""

    kind: ClassVar[str] = "surrogate_energy"
    task_id: int
    energy: float
    model_version: int
    sigma: float | None = None
    error: str | None = None


@dataclass
class OracleResult(_Plain):
    """Oracle frames (Atoms with single-point energy and forces) and the calls they took."""

    kind: ClassVar[str] = "oracle"
    task_id: int
    frames: list[Atoms] = field(default_factory=list)
    n_calls: int = 0
    wall_time: float = 0.0
    error: str | None = None


Task = SurrogateRelaxTask | SurrogateEnergyTask | OracleTask
Result = SurrogateRelaxResult | SurrogateEnergyResult | OracleResult

_KINDS: dict[tuple[str, bool], type] = {
    ("surrogate_relax", False): SurrogateRelaxTask,
    ("surrogate_energy", False): SurrogateEnergyTask,
    ("oracle", False): OracleTask,
    ("surrogate_relax", True): SurrogateRelaxResult,
    ("surrogate_energy", True): SurrogateEnergyResult,
    ("oracle", True): OracleResult,
}


def to_dict(item: Task | Result) -> dict:
    """Plain dict of a task or result (``kind`` and, for results, ``task_id`` keys)."""
    return item.todict()


def from_dict(data: dict) -> Task | Result:
    """Rebuild a task or result from :func:`to_dict`'s output."""
    return _KINDS[(data["kind"], "task_id" in data)].fromdict(data)


def _sigma(calculator: Calculator) -> float | None:
    value = getattr(calculator, "results", {}).get("uncertainty")
    return None if value is None else float(value)


def run_surrogate_relax(
    task: SurrogateRelaxTask, calculator: Calculator, model_version: int | None = None
) -> SurrogateRelaxResult:
    """Relax a task's structure in ``calculator`` (the surrogate of ``model_version``)."""
    result = relax(
        task.atoms, calculator, fmax=task.fmax, steps=task.steps, fixed=task.fixed or None,
        confinement=task.confinement,
    )
    atoms = result.atoms.copy()
    atoms.constraints = []
    atoms.calc = result.atoms.calc
    energy, error = result.energy, result.error
    if error is None and not np.isfinite(energy):
        error = "no finite energy"
    return SurrogateRelaxResult(
        task_id=task.id,
        atoms=atoms,
        energy=float(energy),
        model_version=task.model_version if model_version is None else model_version,
        sigma=_sigma(calculator) if error is None else None,
        steps=result.steps,
        converged=result.converged,
        error=error,
    )


def run_surrogate_energy(
    task: SurrogateEnergyTask, calculator: Calculator, model_version: int | None = None
) -> SurrogateEnergyResult:
    """Surrogate single point of a task's structure (raises
    :class:`~pesflow.errors.ModelOutOfResources` as :func:`~pesflow.search.relax.relax`)."""
    atoms = task.atoms.copy()
    atoms.calc = calculator
    error = None
    try:
        energy = float(atoms.get_potential_energy())
        if not np.isfinite(energy):
            error = "no finite energy"
    except Exception as exc:  # a failing model must not end the search
        if out_of_resources(exc):  # ... but a full machine is not the structure's fault
            raise ModelOutOfResources(f"{type(exc).__name__}: {exc}") from exc
        energy, error = float("nan"), f"{type(exc).__name__}: {exc}"
    return SurrogateEnergyResult(
        task_id=task.id,
        energy=energy,
        model_version=task.model_version if model_version is None else model_version,
        sigma=_sigma(calculator) if error is None else None,
        error=error,
    )


def run_oracle(task: OracleTask, oracle: Calculator) -> OracleResult:
    """Evaluate a task's structure with the oracle (and take ``task.steps`` BFGS steps)."""
    start = time.perf_counter()
    frames: list[Atoms] = []

    def record(atoms: Atoms) -> None:
        frame = atoms.copy()
        frame.constraints = []
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        frames.append(frame)

    error = None
    try:
        if task.steps == 0:
            atoms = task.atoms.copy()
            atoms.calc = oracle
            record(atoms)
        else:
            from ase.optimize import BFGS

            from pesflow.search.relax import ConfinementConstraint

            atoms = task.atoms.copy()
            constraints: list = []
            if task.fixed:
                from ase.constraints import FixAtoms

                constraints.append(FixAtoms(indices=range(task.fixed)))
            if task.confinement is not None:
                constraints.append(
                    ConfinementConstraint(np.arange(task.fixed, len(atoms)), task.confinement)
                )
            atoms.set_constraint(constraints)
            atoms.calc = oracle
            optimizer = BFGS(atoms, maxstep=0.2, logfile=None)
            for _ in optimizer.irun(fmax=task.fmax, steps=task.steps):
                record(atoms)
    except Exception as exc:  # an oracle failure is reported, not raised
        error = f"{type(exc).__name__}: {exc}"
    n_calls = len(frames) + (error is not None)  # a failed evaluation still cost a call
    frames = [f for f in frames if np.isfinite(f.get_potential_energy())]
    if task.keep == "last":
        frames = frames[-1:]
    return OracleResult(
        task_id=task.id, frames=frames, n_calls=n_calls,
        wall_time=time.perf_counter() - start, error=error,
    )


__all__ = [
    "OracleResult",
    "OracleTask",
    "Result",
    "SurrogateEnergyResult",
    "SurrogateEnergyTask",
    "SurrogateRelaxResult",
    "SurrogateRelaxTask",
    "Task",
    "atoms_from_dict",
    "atoms_to_dict",
    "from_dict",
    "run_oracle",
    "run_surrogate_energy",
    "run_surrogate_relax",
]
