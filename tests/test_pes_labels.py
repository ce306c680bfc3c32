"""Structures from protostructure labels, and the symmetric relaxation."""

from __future__ import annotations

import numpy as np
import pytest
import spglib
from ase.calculators.emt import EMT

from pesflow.errors import InputError
from pesflow.pes.labels import build_from_label, parse_label, relax_symmetric
from pesflow.pes.symmetry import analyze

PAPER = {
    "A3B2_oP20_62_3c_2c:N-W": (62, "N12W8"),
    "AB3C_tP40_135_f_3g_h:Al-N-Ti": (135, "Al8N24Ti8"),
    "A4B2C_hP14_187_g_in_gh:Cu-O-S": (187, "Cu2O8S4"),  # as the paper prints it
    "AB4C2_hP14_187_g_in_gh:Cu-O-S": (187, "Cu2O8S4"),  # pymatgen's convention
}


@pytest.mark.parametrize("label", PAPER)
def test_paper_labels_build(label):
    atoms = build_from_label(label, rng=np.random.default_rng(1))
    sg, formula = PAPER[label]
    assert atoms.get_chemical_formula() == formula
    analysis = analyze(atoms)
    assert analysis.spacegroup == sg
    assert analysis.label.split("_")[1:3] == label.split("_")[1:3]


def test_given_dofs_are_used():
    atoms = build_from_label("A3B2_oP20_62_3c_2c:N-W", cellpar=[11, 3, 11, 90, 90, 90],
                             dofs={"W1.x": 0.1, "W1.z": 0.2, "W2.x": 0.3, "W2.z": 0.6,
                                   "N1.x": 0.05, "N1.z": 0.45, "N2.x": 0.4, "N2.z": 0.9,
                                   "N3.x": 0.7, "N3.z": 0.15})
    w = atoms.get_scaled_positions()[atoms.numbers == 74]
    assert any(np.allclose(p, [0.1, 0.25, 0.2]) for p in w)
    np.testing.assert_allclose(atoms.cell.cellpar(), [11, 3, 11, 90, 90, 90])


def test_label_errors():
    with pytest.raises(InputError, match="cannot read protostructure label"):
        parse_label("W2N3")
    with pytest.raises(InputError, match="does not match the Wyckoff multiplicities"):
        parse_label("AB_oP20_62_3c_2c:N-W")
    with pytest.raises(InputError, match="no Wyckoff position"):
        parse_label("A3B2_oP20_62_3z_2c:N-W")
    with pytest.raises(InputError, match="fixed by symmetry"):
        build_from_label("A3B2_oP20_62_3c_2c:N-W", dofs={"W1.y": 0.3},
                         rng=np.random.default_rng(0))


def test_relax_keeps_the_space_group():
    atoms = build_from_label("AB_oP8_62_c_c:Au-Cu", cellpar=[6.5, 4.2, 7.5, 90, 90, 90],
                             rng=np.random.default_rng(3))
    relaxed = relax_symmetric(atoms, EMT(), fmax=0.05, steps=20)
    cell = (np.array(relaxed.cell), relaxed.get_scaled_positions(), relaxed.numbers)
    assert spglib.get_symmetry_dataset(cell, symprec=1e-3).number == 62
    start = atoms.copy()
    start.calc = EMT()
    assert relaxed.info["energy_per_atom"] < start.get_potential_energy() / len(start)


def test_repulsive_wall_forces_and_stress_are_gradients():
    from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
    from ase.spacegroup import crystal

    from pesflow.pes.labels import RepulsiveWall
    from pesflow.pes.radii import dmin_matrix

    atoms = crystal(["Cu", "Au"], basis=[(0.1, 0.25, 0.3), (0.35, 0.25, 0.7)], spacegroup=62,
                    cellpar=[4.5, 3.2, 5.5, 90, 90, 90])
    atoms.rattle(0.2, seed=1)
    dmin, _ = dmin_matrix(atoms.get_chemical_symbols(), scale=1.0)
    atoms.calc = RepulsiveWall(dmin)
    assert atoms.get_potential_energy() > 0
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5),
                               atol=1e-6)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-6),
                               atol=1e-6)
    far = atoms.copy()
    far.set_cell(far.cell * 3, scale_atoms=True)
    far.calc = RepulsiveWall(dmin)
    assert far.get_potential_energy() == 0.0
