"""CHGNet's batched energy path gives the energies of its ASE calculator."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from pesflow.pes.energies import EnergyModel, model_slug


def test_model_slug():
    assert model_slug("mace:/models/mace-mpa-0-medium.model") == "mace-mace-mpa-0-medium.model"
    assert model_slug("SevenNet-0") == "sevennet-0"


def test_chgnet_batched_equals_ase_calculator():
    pytest.importorskip("chgnet")
    from pesflow.models.registry import get_calculator

    calc = get_calculator("chgnet")
    model = EnergyModel(calc, "chgnet", batch_atoms=16)
    assert model.path == "chgnet-batched"
    rng = np.random.default_rng(0)
    structures = []
    for _ in range(3):
        atoms = bulk("NaCl", "rocksalt", 5.6).repeat((2, 1, 1))
        atoms.rattle(0.05, rng=rng)
        structures.append(atoms)
    batched = model(structures)
    direct = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calc
        direct.append(atoms.get_potential_energy() / len(atoms))
    np.testing.assert_allclose(batched, direct, atol=2e-5)
    assert EnergyModel(EMT()).path == "ase"
