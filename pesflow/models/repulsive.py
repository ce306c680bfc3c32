"""Repulsive pair prior (AGOX form) as an ASE calculator, with analytic forces and stress.

    E = ½ Σ_{i≠j, r_ij < r_c} (r_ij + 1 − r_min,ij)^−12,   r_min,ij = ratio · (r_cov,i + r_cov,j)

with covalent radii from ``ase.data`` and periodic images included (ASE neighbour list).
Closer than r_min − 0.5 Å the wall goes on as a straight line (same value and slope), so
it pushes apart even atoms that start on top of each other.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from pesflow.errors import InputError

#: base = r + 1 − r_min (Å) below which the wall is continued linearly (4096 eV per pair there).
SWITCH = 0.5


class RepulsivePrior(Calculator):
    """Short-range wall that keeps atoms from collapsing onto each other.

    Parameters
    ----------
    ratio
        r_min,ij = ratio · (r_cov,i + r_cov,j) (AGOX: 0.7).
    cutoff
        Pairs farther apart than this (Å) do not interact (AGOX: 3 Å). The energy is not
        shifted, exactly as in AGOX: at 3 Å a pair of Ag atoms still carries ~3e-4 eV.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, ratio: float = 0.7, cutoff: float = 3.0, **kwargs) -> None:
        if ratio <= 0 or cutoff <= 0:
            raise InputError(
                "repulsive prior needs ratio > 0 and cutoff > 0, "
                f"got ratio={ratio}, cutoff={cutoff}"
            )
        super().__init__(**kwargs)
        self.ratio = float(ratio)
        self.cutoff = float(cutoff)

    def calculate(
        self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        i, j, d, vec = neighbor_list("ijdD", atoms, self.cutoff)
        radii = covalent_radii[atoms.numbers]
        r_min = self.ratio * (radii[i] + radii[j])
        base = d + 1.0 - r_min
        # Below base = SWITCH the wall continues as a straight line with the slope it has
        # there: the bare form has a pole at base = 0 and falls again beyond it, so atoms
        # started closer than r_min − 1 would be pulled onto each other.
        inner = base < SWITCH
        pair_energy = np.where(inner, SWITCH**-12 + 12 * SWITCH**-13 * (SWITCH - base),
                               np.abs(base) ** -12)
        slope = np.where(inner, -12 * SWITCH**-13, -12 * np.abs(base) ** -13)
        # Each pair appears twice (i, j) and (j, i): the ½ of the formula.
        energy = 0.5 * np.sum(pair_energy)
        de_dd = 0.5 * slope
        pair_force = (de_dd / d)[:, None] * vec  # ∂E/∂r_j from this term (vec = r_j − r_i)
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, i, pair_force)
        np.add.at(forces, j, -pair_force)
        self.results["energy"] = self.results["free_energy"] = float(energy)
        self.results["forces"] = forces
        if atoms.cell.rank == 3:
            virial = pair_force.T @ vec  # Σ (∂E/∂r_ij) ⊗ r_ij, both directions
            stress = virial / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]
        else:
            self.results["stress"] = np.zeros(6)
