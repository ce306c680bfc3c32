"""Repulsive prior (AGOX form) and sums of priors."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.data import covalent_radii

from pesflow.errors import InputError
from pesflow.models.priors import make_prior
from pesflow.models.repulsive import RepulsivePrior


def test_dimer_energy_matches_formula():
    d = 2.0
    atoms = Atoms("AgS", [[0, 0, 0], [0, 0, d]])
    r_min = 0.7 * (covalent_radii[47] + covalent_radii[16])
    assert RepulsivePrior().get_potential_energy(atoms) == pytest.approx((d + 1 - r_min) ** -12)


def test_forces_and_stress_are_derivatives():
    from ase.build import bulk

    atoms = bulk("Ag", "fcc", a=3.8, cubic=True).repeat((2, 1, 1))
    atoms.numbers[[1, 6]] = 16
    atoms.rattle(0.15, seed=0)
    calc = RepulsivePrior()
    forces = calc.get_forces(atoms)
    h = 1e-5
    for a, c in [(0, 0), (3, 1), (7, 2)]:
        e = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[a, c] += sign * h
            e.append(calc.get_potential_energy(moved))
        assert forces[a, c] == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-5, abs=1e-8)
    # Stress: derivative with respect to a homogeneous strain, divided by the volume.
    stress = calc.get_stress(atoms)
    e = []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * h * np.diag([1, 0, 0])),
                          scale_atoms=True)
        e.append(calc.get_potential_energy(strained))
    assert stress[0] == pytest.approx((e[0] - e[1]) / (2 * h) / atoms.get_volume(), rel=1e-4)


def test_periodic_images_are_included():
    # One atom in a small periodic cell interacts only with its own images.
    atoms = Atoms("Ag", [[0, 0, 0]], cell=[2.5, 10, 10], pbc=[True, False, False])
    r_min = 0.7 * 2 * covalent_radii[47]
    expected = 0.5 * 2 * (2.5 + 1 - r_min) ** -12  # two images at ±2.5 Å, halved
    assert RepulsivePrior().get_potential_energy(atoms) == pytest.approx(expected)


def test_sum_prior_adds_calculators():
    atoms = Atoms("Cu3", [[0, 0, 0], [2.0, 0, 0], [0, 2.1, 0]])
    total = make_prior([EMT(), RepulsivePrior()])
    assert total.get_potential_energy(atoms) == pytest.approx(
        EMT().get_potential_energy(atoms) + RepulsivePrior().get_potential_energy(atoms))
    np.testing.assert_allclose(
        total.get_forces(atoms), EMT().get_forces(atoms) + RepulsivePrior().get_forces(atoms))
    spec = make_prior("emt+repulsive:ratio=0.6")
    assert spec.get_potential_energy(atoms) == pytest.approx(
        EMT().get_potential_energy(atoms) + RepulsivePrior(0.6).get_potential_energy(atoms))
    assert make_prior("none") is None


def test_bad_prior_specs():
    with pytest.raises(InputError, match="ratio"):
        make_prior("repulsive:radius=2")
    with pytest.raises(InputError, match="ratio > 0"):
        RepulsivePrior(ratio=-1)


def test_the_wall_pushes_apart_at_every_distance():
    """The bare (r + 1 − r_min)^−12 has a pole and falls again closer in; the prior must not."""
    from ase import Atoms

    from pesflow.models.repulsive import RepulsivePrior

    energies, forces = [], []
    for r in np.linspace(0.05, 2.9, 300):
        atoms = Atoms("AgS", positions=[[0, 0, 0], [r, 0, 0]])
        atoms.calc = RepulsivePrior()
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces()[1, 0])
    assert np.all(np.diff(energies) < 0)  # energy falls as the pair separates
    assert np.all(np.array(forces) > 0)  # the S atom is always pushed away
    assert np.all(np.isfinite(energies))
