"""Surrogate relaxation: one function used by the Parsl apps and the serial runner."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.optimize import BFGS

from pesflow.errors import ModelOutOfResources, out_of_resources
from pesflow.structures.problem import Confinement

log = logging.getLogger(__name__)


class ConfinementConstraint:
    """Keep the given atoms inside a :class:`Confinement` during optimization.

    Positions are clipped into the box (fractional coordinates in [0, 1]) and force
    components pushing a clipped atom further out are removed, so BFGS does not keep
    stepping into the wall.
    """

    def __init__(self, indices: np.ndarray, confinement: Confinement) -> None:
        self.indices = np.asarray(indices, dtype=int)
        self.confinement = confinement
        self._open = ~np.array(confinement.periodic)

    def todict(self) -> dict:
        return {"name": type(self).__name__, "kwargs": {"indices": self.indices.tolist()}}

    def adjust_positions(self, atoms: Atoms, new: np.ndarray) -> None:
        frac = self.confinement.fractional(new[self.indices])
        frac[:, self._open] = np.clip(frac[:, self._open], 0.0, 1.0)
        new[self.indices] = self.confinement.corner + frac @ self.confinement.cell

    def adjust_forces(self, atoms: Atoms, forces: np.ndarray) -> None:
        frac = self.confinement.fractional(atoms.positions[self.indices])
        # Force in fractional directions: f_frac = cell @ F (gradient w.r.t. fractional coords).
        f_frac = forces[self.indices] @ self.confinement.cell.T
        low = (frac <= 1e-9) & (f_frac < 0) & self._open
        high = (frac >= 1 - 1e-9) & (f_frac > 0) & self._open
        f_frac[low | high] = 0.0
        forces[self.indices] = np.linalg.solve(self.confinement.cell, f_frac.T).T

    def index_shuffle(self, atoms: Atoms, ind: list[int]) -> None:  # pragma: no cover - ASE hook
        raise NotImplementedError


@dataclass
class RelaxResult:
    """Outcome of one surrogate relaxation.

    ``atoms`` carries a SinglePointCalculator with the final energy and forces.
    ``error`` is set (and ``atoms`` is the last sane structure) when the relaxation
    had to stop because the model returned non-finite numbers.
    """

    atoms: Atoms
    energy: float
    fmax: float
    steps: int
    converged: bool
    error: str | None = None


def relax(
    atoms: Atoms,
    calculator: Calculator,
    fmax: float = 0.05,
    steps: int = 500,
    fixed: int | np.ndarray | None = None,
    confinement: Confinement | None = None,
    maxstep: float = 0.2,
    energy_floor: float | None = -100.0,
) -> RelaxResult:
    """Relax ``atoms`` with ASE's BFGS in ``calculator``.

    Parameters
    ----------
    atoms
        Starting structure (not modified).
    calculator
        Any ASE calculator (a prior, a Δ-corrected model, its LCB).
    fmax, steps
        Convergence threshold (eV/Å) and step cap.
    fixed
        Number of leading template atoms, or their indices, to keep fixed.
    confinement
        Keep the non-fixed atoms inside it.
    maxstep
        BFGS step cap (Å).
    energy_floor
        Stop when the energy falls below this many eV per atom (a model collapsing at
        close contact or extrapolating wildly); ``None`` disables the check.

    Returns
    -------
    RelaxResult
        Non-finite numbers, an energy below the floor or an exception inside the
        calculator or optimizer end the relaxation with ``error`` set (and a logged
        reason); callers drop such candidates.

    Raises
    ------
    ModelOutOfResources
        The model ran out of memory or lost its device (a full GPU): that says nothing
        about the candidate, so it is not dropped as one that failed.
    """
    work = atoms.copy()
    work.constraints = []
    n = len(work)
    fixed_idx = np.arange(fixed) if isinstance(fixed, int | np.integer) else np.asarray(
        [] if fixed is None else fixed, dtype=int
    )
    free = np.setdiff1d(np.arange(n), fixed_idx)
    constraints: list = []
    if len(fixed_idx):
        constraints.append(FixAtoms(indices=fixed_idx))
    if confinement is not None:
        constraints.append(ConfinementConstraint(free, confinement))
    work.set_constraint(constraints)
    work.calc = calculator

    optimizer = BFGS(work, maxstep=maxstep, logfile=None)
    error = None
    last_good = work.copy()
    n_steps = 0
    floor = None if energy_floor is None else energy_floor * max(n, 1)
    try:
        for _ in optimizer.irun(fmax=fmax, steps=steps):
            energy = work.get_potential_energy()
            forces = work.get_forces()
            if not (np.isfinite(energy) and np.isfinite(forces).all()):
                error = "model returned non-finite energy or forces"
                break
            if not np.isfinite(work.positions).all():
                error = "optimizer produced non-finite positions"
                break
            if floor is not None and energy < floor:
                error = f"energy {energy:.4g} eV below the floor of {energy_floor} eV/atom"
                break
            last_good = work.copy()
            last_good.calc = SinglePointCalculator(last_good, energy=energy, forces=forces)
            n_steps = optimizer.nsteps
    except Exception as exc:  # any model failure drops the candidate, never the search
        if out_of_resources(exc):
            raise ModelOutOfResources(f"{type(exc).__name__}: {exc}") from exc
        error = f"{type(exc).__name__}: {exc}"
    if error:
        log.warning("relaxation stopped after %d steps: %s", n_steps, error)
    forces = last_good.get_forces() if last_good.calc is not None else np.full((n, 3), np.nan)
    energy = last_good.get_potential_energy() if last_good.calc is not None else float("nan")
    max_force = float(np.sqrt((forces**2).sum(axis=1)).max()) if n else 0.0
    return RelaxResult(
        atoms=last_good,
        energy=float(energy),
        fmax=max_force,
        steps=n_steps,
        converged=error is None and max_force < fmax,
        error=error,
    )
