"""Generators: bond rules never violated, rattle bounds, K-means walker selection."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from search_standins import single_blas_thread  # noqa: F401

from pesflow.structures.generators import (
    BondRule,
    GenerationError,
    bond_violations,
    kmeans_sample,
    random_structure,
    rattle,
)
from pesflow.structures.problem import ag2s_cluster, emt_surface, lj_cluster

PROBLEMS = {
    "lj13": lambda: lj_cluster(13),
    "ag2s4": lambda: ag2s_cluster(4),
    "au3_on_ag111": lambda: emt_surface("Au3"),
}


@pytest.mark.parametrize("rule", [BondRule.paper(), BondRule.agox()], ids=["paper", "agox"])
@pytest.mark.parametrize("name", PROBLEMS)
def test_random_structures_obey_bond_rules(name, rule):
    problem = PROBLEMS[name]()
    rng = np.random.default_rng(1)
    for _ in range(15):
        atoms = random_structure(problem, rng, rule)
        placed = np.arange(problem.n_template, len(atoms))
        assert bond_violations(atoms, rule, placed) == []
        assert problem.confinement.contains(atoms.positions[placed]).all()
        # template untouched and still fixed
        assert np.allclose(atoms.positions[: problem.n_template], problem.template.positions)
        assert atoms.get_chemical_symbols()[problem.n_template :] == problem.symbols


def test_bond_check_sees_periodic_images():
    """An adatom near the cell edge is close to a template atom's periodic image."""
    problem = emt_surface("Au")
    slab = problem.template
    top = slab.positions[:, 2].argmax()
    # right above the top atom's image one cell vector away, 0.5 Å up: far in plain
    # Cartesian terms, too close through the periodic boundary
    position = slab.positions[top] + slab.cell[0] + [0.0, 0.0, 0.5]
    atoms = problem.assemble(position[None, :])
    rule = BondRule.paper()
    assert any("<" in v for v in bond_violations(atoms, rule, [len(slab)]))  # too close
    flat = atoms.copy()
    flat.pbc = False  # without periodic images nothing is too close
    assert not any("<" in v for v in bond_violations(flat, rule, [len(slab)]))


@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("amplitude", [0.3, 3.0])
def test_rattle_keeps_rules_and_amplitude(name, amplitude):
    problem = PROBLEMS[name]()
    rule = BondRule.paper()
    rng = np.random.default_rng(2)
    moved_any = False
    for _ in range(10):
        start = random_structure(problem, rng, rule)
        new = rattle(problem, start, amplitude, rng, rule)
        placed = np.arange(problem.n_template, len(new))
        assert bond_violations(new, rule, placed) == []
        assert problem.confinement.contains(new.positions[placed]).all()
        step = np.linalg.norm(new.positions - start.positions, axis=1)
        assert step.max() <= amplitude + 1e-12
        assert np.all(step[: problem.n_template] == 0)
        moved_any |= bool(step.max() > 0)
    assert moved_any


def test_rattle_of_relaxed_structure_is_never_less_connected():
    """A relaxed LJ13 breaks the paper's neighbour bound (bonds 2.81 Å > 0.9 × 2.64 Å):
    rattle widens the bound to the input's, and never makes it worse."""
    from ase.cluster import Icosahedron

    problem = lj_cluster(13)
    ico = Icosahedron("Cu", 2, latticeconstant=2 ** (1 / 6) * 2.5 * np.sqrt(2))
    ico.positions += problem.confinement.corner + problem.confinement.cell.diagonal() / 2
    ico.positions -= ico.get_center_of_mass()
    ico.positions += problem.confinement.corner + problem.confinement.cell.diagonal() / 2
    rule = BondRule.paper()
    assert bond_violations(ico, rule)  # the premise: the input breaks the neighbour bound
    ratio = ico.get_all_distances() / (2 * 1.32)
    np.fill_diagonal(ratio, np.inf)
    widened = BondRule(rule.min_factor, ratio.min(axis=1).max() + 1e-9)
    rng = np.random.default_rng(3)
    for amplitude in (0.1, 1.0, 3.0):
        new = rattle(problem, ico, amplitude, rng, rule)
        assert bond_violations(new, widened) == []
        assert not np.allclose(new.positions, ico.positions)


def test_rattle_fraction_moves_a_subset():
    problem = lj_cluster(13)
    rng = np.random.default_rng(4)
    start = random_structure(problem, rng)
    counts = [
        int((np.linalg.norm(rattle(problem, start, 1.0, rng, fraction=0.25).positions
                            - start.positions, axis=1) > 0).sum())
        for _ in range(40)
    ]
    assert min(counts) >= 1 and max(counts) < 13
    assert 1.5 < np.mean(counts) < 5.5  # 25% of 13 = 3.25 selected (a few may stay put)


def test_impossible_confinement_gives_clear_error():
    problem = lj_cluster(13)
    tiny = type(problem.confinement)(np.eye(3) * 0.5, problem.confinement.corner)
    problem.confinement = tiny
    with pytest.raises(GenerationError, match="could not place 13 atoms"):
        random_structure(problem, np.random.default_rng(0), max_restarts=3, max_batches=3)


def test_kmeans_sample_takes_lowest_energy_per_cluster():
    """Two clearly different shapes, three energies each: one walker per shape, the best."""
    rng = np.random.default_rng(5)
    line = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [5.0, 0, 0]])
    triangle = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.25, 2.165, 0]])
    pool, energies = [], []
    for k, e in enumerate([-1.0, -1.5, -1.2]):
        for shape, shift in ((line, 0.0), (triangle, -0.05)):
            a = shape.copy()
            a.rattle(0.01, seed=k)
            pool.append(a)
            energies.append(e + shift)
    chosen = kmeans_sample(pool, energies, 2, rng)
    assert sorted(chosen) == [2, 3]  # line at -1.5 (index 2), triangle at -1.55 (index 3)
    assert chosen[0] == 3  # lowest energy first
    # the energy window drops structures far above the best
    energies_far = [*energies[:-1], 100.0]
    assert 5 not in kmeans_sample(pool, energies_far, 5, rng)


@pytest.mark.parametrize("name", PROBLEMS)
def test_grow_placement_obeys_agox_rule(name):
    problem = PROBLEMS[name]()
    rule = BondRule.agox()
    rng = np.random.default_rng(6)
    for _ in range(10):
        atoms = random_structure(problem, rng, rule, placement="grow")
        placed = np.arange(problem.n_template, len(atoms))
        assert bond_violations(atoms, rule, placed) == []
        assert problem.confinement.contains(atoms.positions[placed]).all()
    with pytest.raises(ValueError, match="placement"):
        random_structure(problem, rng, rule, placement="sideways")
