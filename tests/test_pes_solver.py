"""JAX structure solver and distance cost (paper Eq. 1) against brute force."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from ase.spacegroup import crystal

from pesflow.pes.radii import dmin_matrix, wigner_seitz_radius
from pesflow.pes.solver import StructureSolver, make_grid
from pesflow.pes.symmetry import analyze


def brute_force_cost(atoms, dmin):
    """Eq. 1 with 7^3 images of the unreduced cell."""
    frac, cell = atoms.get_scaled_positions(wrap=False), np.array(atoms.cell)
    best = np.full((len(atoms),) * 2, np.inf)
    for n in itertools.product(range(-3, 4), repeat=3):
        vec = (frac[None, :, :] - frac[:, None, :] + np.array(n)) @ cell
        dist = np.linalg.norm(vec, axis=-1)
        best = np.minimum(best, np.where(dist > 1e-12, dist, np.inf))
    lattice_min = np.diag(best).min()
    np.fill_diagonal(best, np.inf)
    pair = np.maximum(0, dmin - best)
    self_term = np.maximum(0, np.diag(dmin) - lattice_min)
    return 0.5 * (pair.sum() + self_term.sum()), best.min()


@pytest.fixture(scope="module")
def pnma():
    atoms = crystal(["W", "N"], basis=[(0.1, 0.25, 0.3), (0.37, 0.25, 0.62)], spacegroup=62,
                    cellpar=[5.2, 3.1, 9.0, 90, 90, 90])
    return analyze(atoms)


@pytest.mark.parametrize("cellpar", [[4, 5, 6, 90, 90, 90], [4, 5, 6, 40, 60, 80],
                                     [3, 7, 5, 110, 65, 120]])
def test_cost_matches_brute_force_in_skewed_cells(cellpar):
    analysis = analyze(crystal(["Si", "O"], basis=[(0.1, 0.2, 0.3), (0.6, 0.55, 0.9)],
                               spacegroup=2, cellpar=cellpar))
    dmin, _ = dmin_matrix(analysis.atoms.get_chemical_symbols(), scale=0.7)
    solver = StructureSolver(analysis, dmin)
    q = np.random.default_rng(0).random((12, len(analysis.dofs)))
    cost, nearest = solver.cost(q)
    for k in range(len(q)):
        expect, shortest = brute_force_cost(analysis.structure(q[k]), dmin)
        assert cost[k] == pytest.approx(expect, abs=1e-9)
        assert nearest[k] == pytest.approx(shortest, abs=1e-9)


def test_cost_zero_at_reference_and_positive_when_atoms_meet(pnma):
    dmin, _ = dmin_matrix(pnma.atoms.get_chemical_symbols())
    solver = StructureSolver(pnma, dmin)
    cost, nearest = solver.cost(pnma.reference[None, :])
    assert cost[0] == 0.0 and nearest[0] > 1.5
    # Push the W orbit onto the N orbit: W1 (x, z) -> N1 (x, z).
    q = pnma.reference.copy()
    q[[0, 1]] = q[[2, 3]] + [0.01, 0.0]
    cost, nearest = solver.cost(q[None, :])
    assert nearest[0] == pytest.approx(0.01 * 5.2, abs=1e-9)
    assert cost[0] > 0
    assert cost[0] == pytest.approx(brute_force_cost(pnma.structure(q), dmin)[0], abs=1e-9)


def test_self_image_term_for_a_short_lattice_vector():
    analysis = analyze(crystal(["W", "N"], basis=[(0.1, 0.25, 0.3), (0.37, 0.25, 0.62)],
                               spacegroup=62, cellpar=[5.2, 1.0, 9.0, 90, 90, 90]))
    dmin, _ = dmin_matrix(analysis.atoms.get_chemical_symbols(),
                          pair_overrides={"W-W": 2.0, "N-N": 0.5, "N-W": 0.5})
    solver = StructureSolver(analysis, dmin)
    assert solver.lattice_min == pytest.approx(1.0)
    # W-W D_min 2.0 vs 1.0 Å lattice vector: ½ · 4 W atoms · 1.0 Å.
    assert solver.self_cost == pytest.approx(2.0)


def test_grid_shape_and_ordering(pnma):
    grid = make_grid(pnma, ["W1.z", "N1.x"], ranges=[(0.2, 0.4), (0.0, 0.5)], steps=[5, 3])
    assert grid.shape == (5, 3) and grid.size == 15
    q = grid.values()
    # Flat k = i * n2 + j: the second DOF runs fastest.
    np.testing.assert_allclose(q[:, 1].reshape(5, 3), np.meshgrid(grid.axes[0], grid.axes[1],
                                                                  indexing="ij")[0])
    np.testing.assert_allclose(q[:, 2].reshape(5, 3)[0], [0.0, 0.25, 0.5])
    # Frozen DOFs keep their reference values.
    np.testing.assert_allclose(q[:, [0, 3]], np.repeat(pnma.reference[None, [0, 3]], 15, axis=0))
    dmin, _ = dmin_matrix(pnma.atoms.get_chemical_symbols())
    cost, nearest = StructureSolver(pnma, dmin).grid_cost(grid)
    assert cost.shape == nearest.shape == (5, 3)


def test_chunking_does_not_change_results(pnma):
    dmin, _ = dmin_matrix(pnma.atoms.get_chemical_symbols(), scale=0.6)
    grid = make_grid(pnma, ["W1.x", "W1.z"], steps=[13, 11])
    big = StructureSolver(pnma, dmin).grid_cost(grid)
    small = StructureSolver(pnma, dmin, memory_bytes=200 * 8 * 8 * 7)  # 7 points per chunk
    assert small.chunk_size == 7
    np.testing.assert_allclose(small.grid_cost(grid)[0], big[0], atol=1e-12)
    assert (big[0] > 0).any() and (big[0] == 0).any()


def test_wigner_seitz_radius_from_molar_volume():
    # Cu: 7.11 cm^3/mol -> 11.81 Å^3 per atom -> r = 1.41 Å.
    assert wigner_seitz_radius("Cu") == pytest.approx(1.413, abs=2e-3)
    _, table = dmin_matrix(["N", "W", "N"], scale=1.0, pair_overrides={"W-N": 1.647})
    assert table["N-W"] == 1.647
    assert table["N-N"] == pytest.approx(2 * wigner_seitz_radius("N"))


@pytest.mark.parametrize("given, expected", [(None, "false"), ("true", "true")])
def test_jax_leaves_gpu_memory_to_model_workers(given, expected):
    # Preallocation (75 % of a GPU) left 12 CHGNet workers out of memory on an H100; a
    # user's own setting wins. A fresh process: JAX reads it once, at its start.
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    if given is not None:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = given
    code = ("import os; from pesflow.pes.solver import jax_x64; jax = jax_x64(); "
            "jax.numpy.ones(2).sum(); print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    assert done.stdout.split()[-1] == expected
