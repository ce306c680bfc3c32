"""How close is a prior to EMT on the surface stand-in (Au4 on Ag(111)-√7)?

Relaxes the same random Au4 placements (slab fixed; FIRE, fmax 0.05 eV/Å, ≤ 500 steps)
in EMT itself and in each prior, and scores every minimum with EMT. A prior whose minima
lie a few tenths of an eV above EMT's is "close but not right", what the campaign's
Morse prior is meant to be (benchmarks/campaign/surface-standin.yaml).

    .venv/bin/python benchmarks/campaign/surface_prior_check.py repulsive \
        "morse:rho0=4,epsilon=0.4,r0=2.8" "morse:rho0=6,epsilon=0.4,r0=2.9"
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.calculators.emt import EMT

from pesflow.models.priors import make_prior
from pesflow.structures.generators import random_structure
from pesflow.structures.identity import relax_locally
from pesflow.structures.problem import emt_surface


def emt_energies_of_minima(starts, calculator_of, n_fixed: int) -> np.ndarray:
    """EMT energies of ``starts`` relaxed in ``calculator_of()`` with the slab fixed."""
    energies = []
    for start in starts:
        scored, _, _ = relax_locally(start, calculator_of(), 0.05, 500, n_fixed, "FIRE")
        scored.calc = EMT()
        energies.append(scored.get_potential_energy())
    return np.array(energies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("priors", nargs="+", help="prior specs, as in a run config")
    parser.add_argument("--starts", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    problem = emt_surface(adsorbates="Au4")
    n_fixed = len(problem.template)
    rng = np.random.default_rng(args.seed)
    starts = [random_structure(problem, rng) for _ in range(args.starts)]
    reference = emt_energies_of_minima(starts, EMT, n_fixed)
    print(f"{'EMT itself':40s} minima {reference.min():.3f} … {reference.max():.3f} eV")
    for spec in args.priors:
        minima = emt_energies_of_minima(starts, lambda spec=spec: make_prior(spec), n_fixed)
        gap = minima - reference
        print(f"{spec:40s} minima {minima.min():.3f} … {minima.max():.3f} eV; above EMT's "
              f"from the same start: {gap.min():+.2f} … {gap.max():+.2f} eV "
              f"(median {np.median(gap):+.2f})")


if __name__ == "__main__":
    main()
