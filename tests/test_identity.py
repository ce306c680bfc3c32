"""Structure identity: spectral graph descriptor, energy and basin criteria, found_at."""

from __future__ import annotations

import numpy as np
import pytest
from ase.cluster import Icosahedron
from scipy.spatial.transform import Rotation
from search_standins import E_GM, lj_oracle, single_blas_thread  # noqa: F401

from pesflow.search.relax import relax
from pesflow.structures.identity import Reference, found_at, same_graph, spectral_descriptor
from pesflow.structures.problem import ag2s_cluster, lj_cluster


def lj13_icosahedron():
    """The LJ13 global minimum (relaxed in the LJ oracle), as element Cu."""
    ico = Icosahedron("Cu", 2, latticeconstant=2 ** (1 / 6) * 2.5 * np.sqrt(2))
    ico.center(vacuum=10)
    result = relax(ico, lj_oracle(), fmax=1e-4, steps=1000)
    assert result.energy == pytest.approx(E_GM[13], abs=1e-5)
    return result.atoms


def other_lj13_minimum():
    """A different LJ13 local minimum: a random structure relaxed in LJ."""
    from pesflow.structures.generators import random_structure

    rng = np.random.default_rng(7)
    problem = lj_cluster(13)
    for _ in range(20):
        result = relax(random_structure(problem, rng), lj_oracle(), fmax=1e-4, steps=2000)
        if result.energy > E_GM[13] + 0.5:
            return result.atoms
    raise AssertionError("no second minimum found")


def rotated_permuted(atoms, seed):
    rng = np.random.default_rng(seed)
    new = atoms[rng.permutation(len(atoms))]
    center = new.get_center_of_mass()
    new.positions = Rotation.random(random_state=seed).apply(new.positions - center) + center
    new.positions += rng.normal(size=3)  # and translated
    return new


def test_spectral_descriptor_invariant_to_rotation_and_permutation():
    ico = lj13_icosahedron()
    ag2s = ag2s_cluster(2)
    from pesflow.structures.generators import random_structure

    cluster = random_structure(ag2s, np.random.default_rng(1))
    for atoms in (ico, cluster):
        for seed in range(5):
            copy = rotated_permuted(atoms, seed)
            assert not np.allclose(copy.positions, atoms.positions)
            assert same_graph(atoms, copy)
            d = spectral_descriptor(atoms) - spectral_descriptor(copy)
            assert np.abs(d).max() < 1e-9


def test_spectral_descriptor_tells_isomers_apart():
    ico = lj13_icosahedron()
    other = other_lj13_minimum()
    assert not same_graph(ico, other)
    # Σλ² = trace(A²) = Σ Z² + 2 × bonds: the icosahedron has 12 centre + 30 surface bonds
    # (the Cu stand-in's cutoff 3.43 Å lies between the LJ shells 2.81 Å and 3.97 Å)
    eigenvalues = spectral_descriptor(ico)
    assert ((eigenvalues**2).sum() - 13 * 29**2) / 2 == pytest.approx(42)
    # different element on the diagonal changes the descriptor
    swapped = ico.copy()
    swapped.symbols[0] = "Ag"
    assert not same_graph(ico, swapped)


def test_reference_criteria_and_found_at():
    ico = lj13_icosahedron()
    other = other_lj13_minimum()
    oracle = lj_oracle()
    # a surrogate-relaxed structure sits above the oracle minimum: a rattled icosahedron
    shaken = ico.copy()
    shaken.rattle(0.05, seed=1)
    e_shaken = float(lj_oracle().get_potential_energy(shaken))
    assert e_shaken > E_GM[13] + 0.05
    run = [
        {"call": 1, "energy": float(lj_oracle().get_potential_energy(other)), "atoms": other},
        {"call": 2, "energy": e_shaken, "atoms": shaken},
        {"call": 3, "energy": E_GM[13], "atoms": ico},
    ]
    basin = Reference("basin", energy=E_GM[13], threshold=1e-3, oracle=oracle)
    assert found_at(run, basin) == 2
    graph = Reference("graph", atoms=ico)
    assert found_at(run, graph) in (2, 3)  # a 0.05 Å rattle usually keeps the graph
    energy = Reference("energy", energy=E_GM[13], threshold=0.05)
    assert found_at(run, energy) == 3
    assert found_at(run[:1], basin) is None
    with pytest.raises(ValueError, match="oracle"):
        Reference("basin", energy=-1.0)
