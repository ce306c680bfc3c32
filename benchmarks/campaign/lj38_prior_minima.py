"""Is the truncated octahedron the LJ38 minimum of each Morse prior? (SPEC.md §3 asks.)

Builds the fcc truncated octahedron (ASE's ``Octahedron``, length 4, cutoff 1), relaxes
it in LJ and in each prior, and compares it with the lowest structure a prior-only REX
search found in that prior: per repeat, the evaluated structure with the
lowest prior energy, relaxed in the prior (L-BFGS, fmax 1e-3 eV/Å) and then in LJ.

    .venv/bin/python benchmarks/campaign/lj38_prior_minima.py \
        morse3=runs/standins/LJ38/REX/morse3-alone morse6=runs/standins/LJ38/REX/morse6-alone
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.cluster import Octahedron
from ase.io import read

from pesflow.models.registry import get_calculator
from pesflow.structures.identity import relax_locally

PRIORS = {"morse3": "morse:rho0=3", "morse6": "morse:rho0=6"}
FMAX, STEPS = 1e-3, 5000


def truncated_octahedron(nearest_neighbour: float = 2 ** (1 / 6) * 2.5) -> Atoms:
    """The 38-atom fcc truncated octahedron (LJ38's global minimum), from ASE."""
    return Octahedron("Kr", 4, cutoff=1, latticeconstant=nearest_neighbour * np.sqrt(2))


def energy_in(atoms: Atoms, spec: str, relax: bool) -> tuple[float, Atoms]:
    """``atoms``' energy in ``spec`` after a local relaxation there (or as they are)."""
    if relax:
        atoms, _, _ = relax_locally(atoms, get_calculator(spec), FMAX, STEPS)
        return float(atoms.get_potential_energy()), atoms
    work = atoms.copy()
    work.calc = get_calculator(spec)
    return float(work.get_potential_energy()), work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", help="PRIOR=CELL_DIR (prior-only REX repeats)")
    parser.add_argument("--out", default="benchmarks/campaign/lj38-prior-minima.json")
    args = parser.parse_args()

    octahedron = truncated_octahedron()
    e_lj, _ = energy_in(octahedron, "lj", relax=True)
    print(f"truncated octahedron relaxed in LJ: {e_lj:.6f} eV")
    result = {"truncated_octahedron_lj": e_lj, "priors": {}}
    for item in args.cells:
        name, cell = item.split("=", 1)
        spec = PRIORS[name]
        e_to, _ = energy_in(octahedron, spec, relax=True)
        found = []
        for repeat in sorted(Path(cell).glob("r*")):
            frames = read(repeat / "evaluated.extxyz", ":")
            prior_energies = [energy_in(f, spec, relax=False)[0] for f in frames]
            start = frames[int(np.argmin(prior_energies))]
            e_prior, relaxed = energy_in(start, spec, relax=True)
            e_lj_basin, _ = energy_in(relaxed, "lj", relax=True)
            found.append({"repeat": repeat.name, "prior_energy": e_prior, "lj_basin": e_lj_basin})
            print(f"{name} {repeat.name}: lowest found {e_prior:.4f} eV in the prior "
                  f"(truncated octahedron {e_to:.4f}), its LJ basin {e_lj_basin:.4f} eV")
        best = min(found, key=lambda row: row["prior_energy"])
        result["priors"][name] = {"spec": spec, "truncated_octahedron": e_to, "found": found,
                                  "lowest_found": best["prior_energy"],
                                  "octahedron_is_lower": e_to < best["prior_energy"] - 1e-6}
        print(f"{name}: truncated octahedron {e_to:.4f} eV, lowest found {best['prior_energy']:.4f}"
              f" eV ({'octahedron lower' if e_to < best['prior_energy'] else 'found lower'})")
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
