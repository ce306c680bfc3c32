"""Structure identity: when has a search found a given structure? (SPEC.md §3)

- Clusters: the spectral graph descriptor, sorted eigenvalues of the bond graph with
  atomic numbers on the diagonal; the same structure means the same graph.
- Surfaces: the energy within a threshold of the best known energy.
- Stand-ins with known minima: the basin test, a local oracle relaxation of the evaluated
  structure reaching the known minimum energy (or graph identity with the minimum).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.data import covalent_radii

Criterion = Literal["graph", "energy", "basin"]


def spectral_descriptor(
    atoms: Atoms, bond_factor: float = 1.3, indices: Iterable[int] | None = None
) -> np.ndarray:
    """Sorted eigenvalues of the bond graph's adjacency matrix with Z_i on the diagonal.

    A_ij = 1 where 1e-3 < d_ij / (r_cov,i + r_cov,j) < ``bond_factor`` (minimum image in
    periodic directions). ``indices`` restricts the graph to a subset (e.g. adsorbates).
    """
    idx = np.arange(len(atoms)) if indices is None else np.asarray(list(indices), dtype=int)
    d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))[np.ix_(idx, idx)]
    z = atoms.numbers[idx]
    r = covalent_radii[z]
    ratio = d / (r[:, None] + r[None, :])
    adjacency = ((ratio > 1e-3) & (ratio < bond_factor)).astype(float)
    np.fill_diagonal(adjacency, z.astype(float))
    return np.linalg.eigvalsh(adjacency)


def same_graph(a: Atoms, b: Atoms, tolerance: float = 1e-7, bond_factor: float = 1.3) -> bool:
    """True when two structures have the same spectral graph descriptor."""
    if len(a) != len(b) or sorted(a.numbers) != sorted(b.numbers):
        return False
    da = spectral_descriptor(a, bond_factor)
    db = spectral_descriptor(b, bond_factor)
    return bool(np.abs(da - db).max() < tolerance)


def relax_locally(
    atoms: Atoms, calculator: Calculator, fmax: float, steps: int, fixed: int = 0,
    optimizer: str = "LBFGS",
) -> tuple[Atoms, bool, int]:
    """A copy of ``atoms`` relaxed in ``calculator`` with the first ``fixed`` atoms held
    (ASE ``optimizer``); returns it (calculator attached), whether it converged to
    ``fmax`` and the number of steps taken."""
    import ase.optimize
    from ase.constraints import FixAtoms

    work = atoms.copy()
    work.constraints = [FixAtoms(indices=range(fixed))] if fixed else []
    work.calc = calculator
    run = getattr(ase.optimize, optimizer)(work, logfile=None)
    converged = run.run(fmax=fmax, steps=steps)
    return work, bool(converged), int(run.nsteps)


def local_minimum_energy(
    atoms: Atoms, oracle: Calculator, fmax: float = 1e-3, steps: int = 2000, fixed: int = 0
) -> float:
    """Energy after a local relaxation in ``oracle`` (L-BFGS; not counted in any budget)."""
    relaxed, _, _ = relax_locally(atoms, oracle, fmax, steps, fixed)
    return float(relaxed.get_potential_energy())


@dataclass
class Reference:
    """A known solution and how to recognise it.

    Parameters
    ----------
    criterion
        ``"graph"`` (spectral graph match with ``atoms``), ``"energy"`` (oracle energy
        within ``threshold`` of ``energy``) or ``"basin"`` (a local ``oracle`` relaxation
        of the structure ends within ``threshold`` of ``energy``, or graph match when
        ``atoms`` is given).
    atoms, energy
        The reference structure and its oracle energy (either may be missing where the
        criterion does not need it).
    threshold
        Energy tolerance (eV): SPEC.md's 0.05 eV per cell for surfaces, 1e-3 for basins.
    oracle
        Calculator for the basin test.
    fixed
        Number of leading template atoms kept fixed in the basin relaxation.
    """

    criterion: Criterion
    atoms: Atoms | None = None
    energy: float | None = None
    threshold: float = 0.05
    oracle: Calculator | None = None
    fixed: int = 0
    bond_factor: float = 1.3
    graph_tolerance: float = 1e-7

    def __post_init__(self) -> None:
        if self.criterion == "graph" and self.atoms is None:
            raise ValueError("a graph reference needs the reference atoms")
        if self.criterion in ("energy", "basin") and self.energy is None:
            raise ValueError(f"an {self.criterion} reference needs the reference energy")
        if self.criterion == "basin" and self.oracle is None:
            raise ValueError("a basin reference needs the oracle calculator")

    def matches(self, atoms: Atoms, energy: float | None = None) -> bool:
        """Whether ``atoms`` (with oracle energy ``energy``) is this reference."""
        graph = self.atoms is not None and same_graph(
            atoms, self.atoms, self.graph_tolerance, self.bond_factor
        )
        if self.criterion == "graph":
            return graph
        if self.criterion == "energy":
            if energy is None:
                energy = atoms.get_potential_energy()
            return bool(energy <= self.energy + self.threshold)
        if graph:
            return True
        e_local = local_minimum_energy(atoms, self.oracle, fixed=self.fixed)
        return bool(abs(e_local - self.energy) <= self.threshold)


def found_at(
    evaluations: Iterable[Mapping[str, Any]], reference: Reference, key: str = "call"
) -> float | None:
    """The first oracle evaluation of a run that is the reference, or ``None``.

    Parameters
    ----------
    evaluations
        The run's oracle evaluations in order, each a mapping with ``"atoms"``,
        ``"energy"`` and the ``key`` (``"call"``: cumulative oracle calls; ``"cpu_time"``:
        cores × wall seconds), as :class:`pesflow.search.runner.SerialRunner` records them.
    """
    for record in evaluations:
        if reference.matches(record["atoms"], record.get("energy")):
            return record[key]
    return None
