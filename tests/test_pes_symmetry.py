"""Wyckoff analysis: DOF round trips over several space groups and settings, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import spglib
from ase.spacegroup import crystal
from pes_inputs import PARTIAL_CIF

from pesflow.errors import InputError
from pesflow.pes.symmetry import analyze, read_structure

CASES = {
    "Pnma": dict(symbols=["W", "N"], basis=[(0.1, 0.25, 0.3), (0.37, 0.25, 0.62)],
                 spacegroup=62, cellpar=[5.2, 3.1, 9.0, 90, 90, 90]),
    "P-6m2 (hexagonal)": dict(symbols=["Cu", "O", "S"],
                              basis=[(0, 0, 0.2), (0.17, -0.17, 0.3), (1 / 3, 2 / 3, 0.6)],
                              spacegroup=187, cellpar=[4, 4, 7, 90, 90, 120]),
    "P6_3mc (hexagonal)": dict(symbols=["Zn", "O"], basis=[(1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 0.38)],
                               spacegroup=186, cellpar=[3.25, 3.25, 5.2, 90, 90, 120]),
    # Spinel given in origin choice 2; spglib's standard setting is origin choice 1 (Hall 525).
    "Fd-3m origin choice 2": dict(symbols=["Mg", "Al", "O"],
                                  basis=[(1 / 8, 1 / 8, 1 / 8), (0.5, 0.5, 0.5),
                                         (0.26, 0.26, 0.26)],
                                  spacegroup=227, setting=2, cellpar=[8.08] * 3 + [90] * 3),
    # Rhombohedral primitive cell in, hexagonal triple cell out.
    "R-3m rhombohedral": dict(symbols=["Bi", "Te", "Te"],
                              basis=[(0, 0, 0.4), (0, 0, 0), (0, 0, 0.79)],
                              spacegroup=166, cellpar=[4.38, 4.38, 30.5, 90, 90, 120],
                              primitive_cell=True),
    "C2/c monoclinic": dict(symbols=["Si", "O"], basis=[(0.11, 0.23, 0.37), (0, 0.41, 0.25)],
                            spacegroup=15, cellpar=[7, 5, 6, 90, 105, 90]),
    "P-1 triclinic": dict(symbols=["Si", "O"], basis=[(0.1, 0.2, 0.3), (0.6, 0.55, 0.9)],
                          spacegroup=2, cellpar=[4, 5, 6, 70, 80, 100]),
}


@pytest.mark.parametrize("name", CASES)
def test_reference_dofs_rebuild_the_input(name):
    atoms = crystal(**CASES[name])
    analysis = analyze(atoms)
    reference = analysis.structure()
    # Map the input into the standardized setting (x_s = P x + p) and find every atom.
    mapped = atoms.get_scaled_positions() @ analysis.transformation_matrix.T + analysis.origin_shift
    frac = reference.get_scaled_positions(wrap=False)
    for x, z in zip(mapped, atoms.numbers, strict=True):
        delta = frac[reference.numbers == z] - x
        delta -= np.round(delta)
        assert np.abs(delta).max(axis=1).min() < 1e-8
    assert len(reference) % len(atoms) == 0
    assert analysis.dofs, "every case has free coordinates"


@pytest.mark.parametrize("name", CASES)
def test_moving_dofs_moves_orbits_and_keeps_the_space_group(name):
    analysis = analyze(crystal(**CASES[name]))
    q = analysis.reference + 0.013 * np.arange(1, len(analysis.dofs) + 1)
    moved = analysis.structure(q)
    cell = (np.array(moved.cell), moved.get_scaled_positions(), moved.numbers)
    assert spglib.get_symmetry_dataset(cell, symprec=1e-4).number == analysis.spacegroup
    # Every atom of an orbit with a free coordinate moved.
    before = analysis.structure().get_scaled_positions(wrap=False)
    shift = np.abs(moved.get_scaled_positions(wrap=False) - before).max(axis=1)
    for orbit in analysis.orbits:
        assert (shift[list(orbit.atoms)] > 1e-6).all() == bool(orbit.free_axes)


def test_origin_choice_and_hexagonal_settings_are_spglibs():
    spinel = analyze(crystal(**CASES["Fd-3m origin choice 2"]))
    assert spinel.hall_number == 525  # origin choice 1, not pyxtal's default 526
    assert [d.name for d in spinel.dofs] == ["O1.x"]
    bite = analyze(crystal(**CASES["R-3m rhombohedral"]))
    assert bite.hall_number == 458 and len(bite.atoms) == 15  # hexagonal axes


def test_labels_and_dof_names():
    analysis = analyze(crystal(**CASES["Pnma"]))
    assert analysis.label == "AB_oP8_62_c_c:N-W"
    assert analysis.dof_names == ["W1.x", "W1.z", "N1.x", "N1.z"]
    assert analysis.orbits[0].generator == "x, 1/4, z"


def test_unknown_and_fixed_dofs_are_clear_errors():
    analysis = analyze(crystal(**CASES["R-3m rhombohedral"]))
    with pytest.raises(InputError, match="fixed by symmetry"):
        analysis.dof_index("Te1.z")  # Te1 sits on 3a (0, 0, 0)
    with pytest.raises(InputError, match="fixed by symmetry"):
        analysis.dof_index("Bi1.x")  # 6c is (0, 0, z)
    with pytest.raises(InputError, match=r"unknown DOF 'Q1\.x'.*Bi1\.z"):
        analysis.dof_index("Q1.x")


def test_read_structure_refuses_bad_input(tmp_path):
    partial = tmp_path / "partial.cif"
    partial.write_text(PARTIAL_CIF)
    with pytest.raises(InputError, match="partially occupied"):
        read_structure(partial)
    garbage = tmp_path / "garbage.cif"
    garbage.write_text("this is not a crystal\n")
    with pytest.raises(InputError, match="cannot read structure file"):
        read_structure(garbage)
    with pytest.raises(InputError, match="does not exist"):
        read_structure(tmp_path / "missing.cif")
