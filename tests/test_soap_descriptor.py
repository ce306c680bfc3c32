"""SOAP descriptor: analytic cluster derivatives and the periodic-image route."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import add_adsorbate, fcc111
from ase.cluster import Icosahedron

from pesflow.errors import InputError
from pesflow.models.soap import SoapDescriptor


def numerical(desc: SoapDescriptor, atoms, h=1e-5):
    out = np.zeros((len(atoms), len(atoms), 3, desc.n_features))
    for a in range(len(atoms)):
        for c in range(3):
            moved = atoms.copy()
            moved.positions[a, c] += h
            plus = desc.create(moved)
            moved.positions[a, c] -= 2 * h
            out[:, a, c] = (plus - desc.create(moved)) / (2 * h)
    return out


def test_cluster_derivatives_include_the_centre_atom():
    atoms = Icosahedron("Ag", 2)
    atoms.numbers[::4] = 16
    atoms.rattle(0.1, seed=0)
    desc = SoapDescriptor(["Ag", "S"])
    x, dx = desc.derivatives(atoms)
    assert x.shape == (13, desc.n_features) and dx.shape == (13, 13, 3, desc.n_features)
    np.testing.assert_allclose(dx, numerical(desc, atoms), atol=1e-5 * np.abs(dx).max())


def test_periodic_image_route_matches_dscribe_periodic():
    slab = fcc111("Ag", size=(2, 2, 2), vacuum=6.0)
    add_adsorbate(slab, "S", 2.0, "fcc")
    slab.rattle(0.05, seed=1)
    images = SoapDescriptor(["Ag", "S"], periodic_derivatives="images")
    x, dx = images.derivatives(slab)
    np.testing.assert_allclose(x, images.create(slab), atol=1e-10)
    np.testing.assert_allclose(dx, numerical(images, slab), atol=1e-5 * np.abs(dx).max())
    free = [8]
    _, dx_free = images.derivatives(slab, include=free)
    np.testing.assert_allclose(dx_free[:, 8], dx[:, 8], atol=1e-12)
    assert not dx_free[:, :8].any()


def test_unknown_species_is_reported():
    with pytest.raises(InputError, match="species"):
        SoapDescriptor(["Ag"]).create(Icosahedron("Cu", 2))
