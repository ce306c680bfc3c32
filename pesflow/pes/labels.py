"""Structures from protostructure labels, relaxed with their symmetry kept.

A protostructure label (aviary / pymatgen, based on AFLOW prototype labels)::

    A3B2_oP20_62_3c_2c:N-W
    ^^^^ ^^^^ ^^ ^^^^^ ^^^
    |    |    |  |     elements, in the order of the Wyckoff blocks
    |    |    |  one block per element: Wyckoff letters with counts ("3c" = c, c, c)
    |    |    space group
    |    Pearson symbol (conventional cell)
    prototype formula

The prototype formula may follow pymatgen's convention (letters in element order,
``AB4C2_hP14_187_g_in_gh:Cu-O-S``) or list counts in another order, as the s2DPES
paper prints that structure (``A4B2C_...``): both are accepted when the counts
agree with the Wyckoff blocks; labels we write are pymatgen's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers, covalent_radii

from pesflow.errors import InputError
from pesflow.pes.symmetry import (
    AXES,
    Dof,
    Orbit,
    SymmetryAnalysis,
    _affine,
    _free_axes,
    default_hall_number,
    wyckoff_position,
)

LABEL = re.compile(
    r"^(?P<formula>(?:[A-Z]\d*)+)_(?P<pearson>[amothc][PSCIFRABC]\d+)_(?P<sg>\d+)_"
    r"(?P<wyckoffs>[A-Za-z0-9_]+):(?P<elements>[A-Z][a-z]?(?:-[A-Z][a-z]?)*)$"
)


@dataclass(frozen=True)
class Protostructure:
    """A parsed label: space group and, per element, its Wyckoff letters."""

    label: str
    spacegroup: int
    pearson: str
    elements: tuple[str, ...]
    letters: tuple[tuple[str, ...], ...]


def parse_label(label: str) -> Protostructure:
    """Parse and check a protostructure label; :class:`InputError` says what is wrong."""
    match = LABEL.match(label.strip())
    if not match:
        raise InputError(
            f"cannot read protostructure label {label!r}; expected e.g. "
            "A3B2_oP20_62_3c_2c:N-W (formula_pearson_spacegroup_wyckoffs:elements)"
        )
    sg = int(match["sg"])
    elements = tuple(match["elements"].split("-"))
    blocks = match["wyckoffs"].split("_")
    if len(blocks) != len(elements):
        raise InputError(f"label {label!r}: {len(blocks)} Wyckoff blocks for "
                         f"{len(elements)} elements")
    for element in elements:
        if element not in atomic_numbers:
            raise InputError(f"label {label!r}: unknown element {element!r}")
    letters = []
    for block in blocks:
        parts = re.findall(r"(\d*)([a-zA-Z])", block)
        if "".join(n + letter for n, letter in parts) != block:
            raise InputError(f"label {label!r}: cannot read Wyckoff block {block!r}")
        letters.append(tuple(letter for n, letter in parts for _ in range(int(n or 1))))
    proto = Protostructure(label, sg, match["pearson"], elements, tuple(letters))
    hall = default_hall_number(sg)
    mult = [sum(wyckoff_position(sg, x, hall).multiplicity for x in ls) for ls in letters]
    counts = [int(n or 1) for n in re.findall(r"[A-Z](\d*)", match["formula"])]
    gcd = math.gcd(*mult)
    if sorted(counts) != sorted(m // gcd for m in mult):
        raise InputError(
            f"label {label!r}: prototype formula {match['formula']} does not match the "
            f"Wyckoff multiplicities {dict(zip(elements, mult, strict=True))}"
        )
    return proto


def label_analysis(proto: Protostructure, cellpar: Sequence[float]) -> SymmetryAnalysis:
    """The affine DOF -> cell map of a protostructure (DOFs at 0) in a given cell."""
    from ase.geometry import cellpar_to_cell

    hall = default_hall_number(proto.spacegroup)
    symbols, offsets, orbits, dofs = [], [], [], []
    blocks = []
    for element, letters in zip(proto.elements, proto.letters, strict=True):
        for k, letter in enumerate(letters, start=1):
            wp = wyckoff_position(proto.spacegroup, letter, hall)
            rot, trans = _affine(wp)
            free = _free_axes(rot[0])
            start = len(symbols)
            symbols += [element] * len(rot)
            offsets.append(trans)
            label = f"{element}{k}"
            blocks.append((start, rot, free))
            orbits.append(Orbit(label, element, letter, wp.multiplicity, "", wp.ops[0].as_xyz_str(),
                                free, np.zeros(3), tuple(range(start, start + len(rot)))))
            dofs += [Dof(f"{label}.{AXES[a]}", label, a, 0.0) for a in free]
    n = len(symbols)
    basis = np.zeros((n, 3, len(dofs)))
    column = 0
    for start, rot, free in blocks:
        for axis in free:
            basis[start:start + len(rot), :, column] = rot[:, :, axis]
            column += 1
    atoms = Atoms(symbols, cell=cellpar_to_cell(cellpar), pbc=True)
    atoms.set_scaled_positions(np.concatenate(offsets))
    return SymmetryAnalysis(
        atoms=atoms, spacegroup=proto.spacegroup, international="", hall_number=hall,
        orbits=orbits, dofs=dofs, offset=np.concatenate(offsets), basis=basis, symprec=1e-3,
        label=proto.label, transformation_matrix=np.eye(3), origin_shift=np.zeros(3),
    )


def guess_cellpar(proto: Protostructure, volume_per_atom: float | None = None) -> list[float]:
    """Cell parameters for a first guess: crystal-system angles, equal axes, a packed volume.

    The volume is the covalent-radius sphere volume (ASE's Cordero table) over a packing
    fraction of 0.5, unless ``volume_per_atom`` (Å^3) is given. A cell relaxation follows.
    """
    sg = proto.spacegroup
    hall = default_hall_number(sg)
    counts = {e: sum(wyckoff_position(sg, x, hall).multiplicity for x in ls)
              for e, ls in zip(proto.elements, proto.letters, strict=True)}
    if volume_per_atom is None:
        spheres = sum(n * 4 / 3 * math.pi * covalent_radii[atomic_numbers[e]] ** 3
                      for e, n in counts.items())
        volume = spheres / 0.5
    else:
        volume = volume_per_atom * sum(counts.values())
    alpha = beta = gamma = 90.0
    if 143 <= sg <= 194:
        gamma = 120.0
    elif 3 <= sg <= 15:
        beta = 100.0
    elif sg <= 2:
        alpha, beta, gamma = 85.0, 95.0, 100.0
    from ase.geometry import cellpar_to_cell

    unit = abs(np.linalg.det(cellpar_to_cell([1, 1, 1, alpha, beta, gamma])))
    a = (volume / unit) ** (1 / 3)
    return [a, a, a, alpha, beta, gamma]


def build_from_label(
    label: str,
    cellpar: Sequence[float] | None = None,
    dofs: Mapping[str, float] | None = None,
    rng: np.random.Generator | None = None,
    trials: int = 512,
    scale: float = 0.6,
) -> Atoms:
    """A structure of a protostructure, from lattice parameters and DOF values.

    Parameters
    ----------
    label : protostructure label (either formula convention).
    cellpar : a, b, c, alpha, beta, gamma (Å, degrees); default :func:`guess_cellpar`.
    dofs : values of free Wyckoff coordinates by name (orbits numbered per element in the
        label's order, e.g. ``{"W1.x": 0.1, "W1.z": 0.3}``); the others are drawn at random.
    rng : seeded generator for the random DOFs (required if any DOF is left free).
    trials : random draws; the one with the lowest distance cost (paper Eq. 1 with the
        Wigner–Seitz radii times ``scale``), then the largest nearest distance, is kept.
    """
    from pesflow.pes.radii import dmin_matrix
    from pesflow.pes.solver import StructureSolver

    proto = parse_label(label)
    analysis = label_analysis(proto, cellpar or guess_cellpar(proto))
    names = analysis.dof_names
    given = dict(dofs or {})
    for name in given:
        analysis.dof_index(name)  # clear error for unknown or fixed DOFs
    free = [i for i, n in enumerate(names) if n not in given]
    q = np.zeros((1, len(names)))
    for name, value in given.items():
        q[0, names.index(name)] = value
    if free:
        if rng is None:
            raise InputError(f"DOFs {[names[i] for i in free]} have no values: give them or an rng")
        q = np.repeat(q, trials, axis=0)
        q[:, free] = rng.random((trials, len(free)))
        dmin, _ = dmin_matrix(analysis.atoms.get_chemical_symbols(), scale=scale)
        cost, nearest = StructureSolver(analysis, dmin).cost(q)
        best = np.lexsort((-nearest, cost))[0]
        q = q[best:best + 1]
    return analysis.structure(q[0])


def relax_symmetric(atoms: Atoms, calculator: Calculator, fmax: float = 0.02, steps: int = 300,
                    cell: bool = True, symprec: float = 1e-3, maxstep: float = 0.1) -> Atoms:
    """Relax positions (and the cell) with the space group kept (ASE ``FixSymmetry``).

    The symmetry cannot drop, but it can rise: a relaxation may end in a supergroup.

    Raises
    ------
    RuntimeError
        The relaxation broke down (a model returning non-finite energies or stresses,
        e.g. from a random start with atoms too close).
    """
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calculator
    atoms.set_constraint(FixSymmetry(atoms, symprec=symprec))
    target = FrechetCellFilter(atoms) if cell else atoms
    try:
        BFGS(target, logfile=None, maxstep=maxstep).run(fmax=fmax, steps=steps)
        energy = float(atoms.get_potential_energy()) / len(atoms)
    except (np.linalg.LinAlgError, ValueError, RuntimeError) as error:
        raise RuntimeError(f"symmetric relaxation broke down: {error}") from error
    if not np.isfinite(energy) or not np.isfinite(atoms.cell.array).all():
        raise RuntimeError("symmetric relaxation broke down: non-finite energy or cell")
    atoms.info["energy_per_atom"] = energy
    atoms.set_constraint()
    return atoms


class RepulsiveWall(Calculator):
    """A harmonic wall E = k/2 · Σ_pairs max(0, D_min − d)², with forces and stress.

    Added to a uMLIP during a relaxation from random DOFs (``SumCalculator``), it keeps
    atoms apart where the model has no short-range repulsion (CHGNet relaxed AlTiN3 to
    Al–Al 0.28 Å without it). It is zero once every pair is at least D_min apart.

    Parameters
    ----------
    dmin : numpy.ndarray
        D_min per atom pair, shape (N, N) (:func:`pesflow.pes.radii.dmin_matrix`).
    k : float
        Wall stiffness in eV/Å².
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, dmin: np.ndarray, k: float = 10.0) -> None:
        super().__init__()
        self.dmin = np.asarray(dmin, float)
        self.k = float(k)

    def calculate(self, atoms=None, properties=("energy",), system_changes=None) -> None:
        from ase.neighborlist import neighbor_list

        super().calculate(atoms, properties, system_changes)
        i, j, d, vec = neighbor_list("ijdD", self.atoms, float(self.dmin.max()))
        overlap = np.maximum(0.0, self.dmin[i, j] - d)
        keep = overlap > 0
        i, j, d, vec, overlap = i[keep], j[keep], d[keep], vec[keep], overlap[keep]
        energy = 0.25 * self.k * float(np.sum(overlap**2))  # ordered pairs: each twice
        push = (self.k * overlap / d)[:, None] * vec  # force on j from the pair (i, j)
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, j, push)
        np.add.at(forces, i, -push)
        forces *= 0.5
        stress = -0.5 * np.einsum("pa,pb->ab", vec, push) / self.atoms.get_volume()
        self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                        "stress": stress.flat[[0, 4, 8, 5, 2, 1]]}
