"""Cheap stand-ins shared by the search tests (SPEC.md §3, §6)."""

from __future__ import annotations

import pytest
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential

SIGMA = 2.5
#: Cambridge Cluster Database minima (ε = 1 eV).
E_GM = {7: -16.505384, 13: -44.326801, 38: -173.928427}


def lj_oracle() -> LennardJones:
    """LJ with σ = 2.5 Å, ε = 1 eV, r_c = 20σ (effectively unshifted)."""
    return LennardJones(sigma=SIGMA, epsilon=1.0, rc=20 * SIGMA)


def morse_prior(rho0: float = 6.0) -> MorsePotential:
    """Morse prior with its minimum at the LJ pair minimum 2^(1/6)σ (ASE's cutoffs)."""
    return MorsePotential(epsilon=1.0, rho0=rho0, r0=2 ** (1 / 6) * SIGMA)


@pytest.fixture(autouse=True)
def single_blas_thread():
    """Small matrices: threaded BLAS only adds contention on a shared 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
