"""Problems and the paper's test systems."""

from __future__ import annotations

import numpy as np
import pytest

from pesflow.errors import InputError
from pesflow.structures import (
    Confinement,
    ag2s_cluster,
    ag100_sqrt17,
    ag111_sqrt7,
    emt_surface,
    lj_cluster,
)


def test_ag2s_cluster_has_the_paper_cells() -> None:
    problem = ag2s_cluster(4)
    assert problem.symbols.count("Ag") == 8 and problem.symbols.count("S") == 4
    assert np.allclose(problem.template.cell.lengths(), 20.0)
    assert np.allclose(problem.confinement.cell, np.eye(3) * 15.0)
    assert np.allclose(problem.confinement.corner, 2.5)
    assert not problem.is_periodic and problem.species == ["Ag", "S"]
    with pytest.raises(InputError):
        ag2s_cluster(0)


@pytest.mark.parametrize(
    "build, n_cell, angle, n_ads, fmax",
    [(ag111_sqrt7, 7, 19.1, 6, 0.05), (ag100_sqrt17, 17, 14.0, 20, 0.025)],
)
def test_reconstruction_cells(build, n_cell, angle, n_ads, fmax) -> None:
    problem = build()
    slab = problem.template
    a = 4.157
    # A (√n×√n) cell: n surface atoms per layer, 4 layers, vectors √n longer than the 1×1 cell.
    assert len(slab) == 4 * n_cell
    nn = a / np.sqrt(2)
    assert np.allclose(slab.cell.lengths()[:2], np.sqrt(n_cell) * nn)
    # Rotation of the first vector against the 1×1 surface vector along x.
    assert np.degrees(np.arctan2(slab.cell[0, 1], slab.cell[0, 0])) == pytest.approx(
        angle, abs=0.1
    )
    assert len(problem.symbols) == n_ads and problem.fmax == fmax
    assert problem.is_periodic and list(slab.pbc) == [True, True, False]
    # Confinement: the surface cell in xy, 4 Å high starting at the top layer.
    z_top = slab.positions[:, 2].max()
    assert problem.confinement.corner[2] == pytest.approx(z_top)
    assert problem.confinement.cell[2, 2] == pytest.approx(4.0)
    # Neighbouring Ag in the slab at the fcc nearest-neighbour distance (no overlaps).
    distances = slab.get_all_distances(mic=True)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() == pytest.approx(nn, rel=1e-6)
    atoms = problem.assemble(problem.confinement.sample(n_ads, np.random.default_rng(0)))
    assert len(atoms) == len(slab) + n_ads
    assert atoms.constraints[0].get_indices().tolist() == list(range(len(slab)))


def test_confinement_contains_and_samples() -> None:
    conf = Confinement(np.diag([2.0, 3.0, 4.0]), [1.0, 1.0, 1.0])
    points = conf.sample(500, np.random.default_rng(1))
    assert conf.contains(points).all()
    assert not conf.contains(np.array([[0.5, 2, 2], [2, 4.5, 2], [2, 2, 5.5]])).any()
    periodic = Confinement(np.diag([2.0, 3.0, 4.0]), [0, 0, 0], periodic=(True, True, False))
    assert periodic.contains(np.array([[-5.0, 9.0, 2.0]])).all()


def test_standins() -> None:
    lj = lj_cluster(38)
    assert len(lj.symbols) == 38 and lj.confinement.cell[0, 0] > 10
    surface = emt_surface()
    assert surface.symbols == ["Au"] * 3 and surface.kpts is None
    with pytest.raises(InputError):
        lj_cluster(1)
