"""Wyckoff degrees of freedom of a crystal structure.

spglib finds the space group, the Hall setting and the Wyckoff letter of every
atom of the standardized conventional cell; pyxtal supplies the coordinate
triplets of each Wyckoff position *in that Hall setting* (pyxtal's own default
setting differs from spglib's for groups with two origin choices, so the Hall
number is always passed). The structure is then an affine function of its free
Wyckoff parameters::

    frac[a] = offset[a] + basis[a] @ q

with ``q`` the vector of all DOF values. Atoms of one orbit may sit on any
branch of the orbit's coordinate list, so every atom of the orbit and every
lattice translation is tried when solving for the orbit's parameters.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from pesflow.errors import InputError

AXES = "xyz"
#: A DOF name: orbit label (element + running number) and axis, e.g. ``W1.x``.
DOF_PATTERN = re.compile(r"^([A-Z][a-z]?)(\d+)\.([xyz])$")


@dataclass(frozen=True)
class Orbit:
    """One Wyckoff orbit of the standardized cell.

    Attributes
    ----------
    label : str
        Element plus a running number per element, e.g. ``"N2"``.
    element : str
        Chemical symbol.
    letter : str
        Wyckoff letter.
    multiplicity : int
        Number of atoms of the orbit in the conventional cell.
    site_symmetry : str
        Oriented site-symmetry symbol (spglib).
    generator : str
        First coordinate triplet of the Wyckoff position, e.g. ``"x, 1/4, z"``.
    free_axes : tuple of int
        Which of the generator's parameters (0, 1, 2 for x, y, z) are free.
    params : numpy.ndarray
        Reference values of the generator's parameters, shape (3,).
    atoms : tuple of int
        Indices of the orbit's atoms in the standardized cell.
    """

    label: str
    element: str
    letter: str
    multiplicity: int
    site_symmetry: str
    generator: str
    free_axes: tuple[int, ...]
    params: np.ndarray = field(repr=False)
    atoms: tuple[int, ...] = field(repr=False)

    @property
    def wyckoff(self) -> str:
        """Multiplicity and letter, e.g. ``"4c"``."""
        return f"{self.multiplicity}{self.letter}"


@dataclass(frozen=True)
class Dof:
    """A free Wyckoff coordinate: ``name`` (``"W1.x"``), its orbit, axis and reference value."""

    name: str
    orbit: str
    axis: int
    value: float


@dataclass
class SymmetryAnalysis:
    """Result of :func:`analyze`: the standardized cell and its Wyckoff DOFs.

    Attributes
    ----------
    atoms : ase.Atoms
        Standardized, symmetrized conventional cell (reference structure).
    spacegroup : int
        Space-group number.
    international : str
        Hermann–Mauguin symbol.
    hall_number : int
        spglib Hall number of the setting used for the Wyckoff tables.
    orbits : list of Orbit
    dofs : list of Dof
        All free coordinates, in orbit order.
    offset : numpy.ndarray
        Fractional positions at q = 0, shape (N, 3).
    basis : numpy.ndarray
        d frac / d q, shape (N, 3, n_dof).
    symprec : float
        spglib tolerance used (Å).
    label : str
        Protostructure label (pymatgen convention).
    transformation_matrix, origin_shift : numpy.ndarray
        spglib's map from the input cell to the standardized cell.
    """

    atoms: Atoms
    spacegroup: int
    international: str
    hall_number: int
    orbits: list[Orbit]
    dofs: list[Dof]
    offset: np.ndarray
    basis: np.ndarray
    symprec: float
    label: str
    transformation_matrix: np.ndarray
    origin_shift: np.ndarray

    @property
    def reference(self) -> np.ndarray:
        """Reference values of all DOFs, shape (n_dof,)."""
        return np.array([d.value for d in self.dofs])

    @property
    def dof_names(self) -> list[str]:
        return [d.name for d in self.dofs]

    def dof_index(self, name: str) -> int:
        """Index of a DOF by name; :class:`InputError` naming the valid choices otherwise."""
        names = self.dof_names
        if name in names:
            return names.index(name)
        match = DOF_PATTERN.match(name)
        orbit = next((o for o in self.orbits if match and o.label == match[1] + match[2]), None)
        valid = ", ".join(names) or "none (every atom is fixed by symmetry)"
        if orbit is not None:
            raise InputError(
                f"DOF {name!r} is fixed by symmetry: orbit {orbit.label} sits on Wyckoff "
                f"{orbit.wyckoff} ({orbit.generator}) of space group {self.spacegroup}; "
                f"free DOFs are: {valid}"
            )
        raise InputError(
            f"unknown DOF {name!r}; DOFs are named <element><n>.<x|y|z> as "
            f"`pesflow pes STRUCTURE --list-dofs` prints them: {valid}"
        )

    def frac_positions(self, values: np.ndarray) -> np.ndarray:
        """Fractional positions for DOF values of shape (n_dof,) or (..., n_dof)."""
        return self.offset + np.einsum("nad,...d->...na", self.basis, np.asarray(values, float))

    def structure(self, values: np.ndarray | None = None) -> Atoms:
        """The full cell (every symmetry-equivalent atom moved) for DOF values."""
        atoms = self.atoms.copy()
        atoms.set_scaled_positions(
            self.frac_positions(self.reference if values is None else values)
        )
        return atoms

    def table(self) -> list[dict]:
        """One row per orbit (JSON-friendly), with its free DOFs."""
        rows = []
        for orbit in self.orbits:
            dofs = [d for d in self.dofs if d.orbit == orbit.label]
            rows.append({
                "orbit": orbit.label, "element": orbit.element, "wyckoff": orbit.wyckoff,
                "site_symmetry": orbit.site_symmetry, "generator": orbit.generator,
                "dofs": {d.name: d.value for d in dofs},
            })
        return rows


def read_structure(path: str | Path, index: int | str = -1) -> Atoms:
    """Read a crystal structure with ASE, with one clear error for unusable input.

    Parameters
    ----------
    path : str or Path
        Any format ASE reads (CIF, POSCAR, extxyz, ...).
    index : int or str
        Frame for multi-frame files (default: last).

    Raises
    ------
    InputError
        Missing or unreadable file, no periodic cell, or partial occupancies.
    """
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise InputError(f"structure file {str(path)!r} does not exist")
    try:
        atoms = ase.io.read(path, index=index)
    except Exception as error:  # ASE raises many types for garbage input
        raise InputError(
            f"cannot read structure file {str(path)!r} with ASE ({type(error).__name__}: "
            f"{error}); give a CIF, POSCAR, extxyz or another format ASE reads"
        ) from None
    if len(atoms) == 0:
        raise InputError(f"structure file {str(path)!r} holds no atoms")
    # ASE silently keeps one species per site of a disordered CIF: refuse it instead.
    occupancy = atoms.info.get("occupancy") or {}
    partial = {tag: occ for tag, occ in occupancy.items() if abs(sum(occ.values()) - 1) > 1e-6
               or len(occ) > 1}
    if partial:
        tag, occ = next(iter(partial.items()))
        raise InputError(
            f"structure file {str(path)!r} has partially occupied sites (e.g. site {tag}: "
            f"{occ}); s2DPES needs an ordered structure: order it first (e.g. pymatgen's "
            "OrderDisorderedStructureTransformation) and pass the ordered cell"
        )
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise InputError(
            f"structure file {str(path)!r} is not a 3D periodic crystal (pbc={atoms.pbc.tolist()})"
        )
    return atoms


def default_hall_number(spacegroup: int) -> int:
    """spglib's default Hall number (its standardization setting) for a space group."""
    import spglib

    if not 1 <= spacegroup <= 230:
        raise InputError(f"space group {spacegroup} is not in 1..230")
    for hall in range(1, 531):
        if spglib.get_spacegroup_type(hall).number == spacegroup:
            return hall
    raise AssertionError("unreachable")


def wyckoff_position(spacegroup: int, letter: str, hall_number: int):
    """pyxtal's Wyckoff position in the given Hall setting."""
    from pyxtal.symmetry import Wyckoff_position

    try:
        wp = Wyckoff_position.from_group_and_letter(spacegroup, letter, hn=hall_number)
    except (IndexError, KeyError, ValueError):
        wp = None
    if wp is None or wp.letter != letter:
        raise InputError(f"space group {spacegroup} has no Wyckoff position {letter!r}")
    return wp


def _affine(wp) -> tuple[np.ndarray, np.ndarray]:
    """Rotation parts (M, 3, 3) and translations (M, 3) of a Wyckoff position's triplets."""
    mats = np.array([op.affine_matrix for op in wp.ops])
    return mats[:, :3, :3], mats[:, :3, 3]


def _free_axes(rot0: np.ndarray) -> tuple[int, ...]:
    return tuple(int(k) for k in range(3) if np.any(np.abs(rot0[:, k]) > 1e-12))


def _fit_params(rot: np.ndarray, trans: np.ndarray, positions: np.ndarray,
                tol: float) -> np.ndarray:
    """Generator parameters p with rot[0] p + trans[0] ≡ one of ``positions`` (mod 1).

    Tries every atom of the orbit (every branch) and every nearby lattice translation.
    """
    free = list(_free_axes(rot[0]))
    shifts = np.array(list(itertools.product(range(-2, 3), repeat=3)), float)
    for pos in positions:
        targets = pos[None, :] + shifts - trans[0][None, :]  # (125, 3)
        params = np.zeros((len(shifts), 3))
        if free:
            sol, *_ = np.linalg.lstsq(rot[0][:, free], targets.T, rcond=None)
            params[:, free] = sol.T
        residual = np.abs(params @ rot[0].T - targets).max(axis=1)
        best = int(np.argmin(residual))
        if residual[best] < tol:
            p = params[best]
            p[free] = np.mod(p[free], 1.0)  # integer steps of a parameter are lattice translations
            p[np.isclose(p, 1.0)] = 0.0
            return p
    raise ValueError("no atom of the orbit matches the Wyckoff generator")


def analyze(atoms: Atoms, symprec: float = 1e-3, angle_tolerance: float = -1.0) -> SymmetryAnalysis:
    """Standardize a structure and list its Wyckoff orbits and free coordinates.

    Parameters
    ----------
    atoms : ase.Atoms
        Ordered, periodic crystal.
    symprec : float
        spglib distance tolerance in Å; raise it for noisy (e.g. relaxed) input.
    angle_tolerance : float
        spglib angle tolerance in degrees (-1: spglib's default).

    Returns
    -------
    SymmetryAnalysis
        The symmetrized conventional cell in spglib's standard setting, its orbits and DOFs.
    """
    import spglib

    cell = (np.array(atoms.cell), atoms.get_scaled_positions(), atoms.numbers)
    try:  # spglib returns None or raises, depending on its OLD_ERROR_HANDLING setting
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec,
                                              angle_tolerance=angle_tolerance)
    except Exception as error:
        dataset, message = None, str(error)
    else:
        message = spglib.get_error_message() if dataset is None else ""
    if dataset is None:
        detail = f" ({message})" if message and message != "no error" else ""
        raise InputError(f"spglib found no symmetry at symprec={symprec}{detail}; check the "
                         "cell (overlapping atoms?) or change --symprec")
    hall = int(dataset.hall_number)
    lattice, frac, numbers = dataset.std_lattice, dataset.std_positions, dataset.std_types
    # Letters and orbits of the standardized cell itself, in the same Hall setting.
    std = spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=symprec,
                                      angle_tolerance=angle_tolerance, hall_number=hall)
    if std is None or std.number != dataset.number:
        raise InputError("spglib could not re-analyse its standardized cell; try another --symprec")
    std_atoms = Atoms(numbers=numbers, cell=lattice, scaled_positions=frac, pbc=True)
    symbols = std_atoms.get_chemical_symbols()
    lengths = std_atoms.cell.lengths()
    tol = 10 * symprec / lengths.min()  # fractional tolerance, generous: positions are idealized

    groups: dict[int, list[int]] = {}
    for i, rep in enumerate(std.equivalent_atoms):
        groups.setdefault(int(rep), []).append(i)
    # Stable orbit order: element (first appearance), Wyckoff letter, first atom.
    element_order = list(dict.fromkeys(symbols))
    reps = sorted(groups, key=lambda r: (element_order.index(symbols[r]), std.wyckoffs[r], r))

    n = len(std_atoms)
    orbits: list[Orbit] = []
    dofs: list[Dof] = []
    offset = np.zeros((n, 3))
    columns: list[np.ndarray] = []
    counts: dict[str, int] = {}
    for rep in reps:
        members = groups[rep]
        element, letter = symbols[rep], std.wyckoffs[rep]
        wp = wyckoff_position(int(std.number), letter, hall)
        if wp.multiplicity != len(members):
            raise InputError(
                f"Wyckoff table mismatch for {element} at {letter} in space group {std.number} "
                f"(Hall {hall}): {len(members)} atoms but multiplicity {wp.multiplicity}"
            )
        rot, trans = _affine(wp)
        try:
            params = _fit_params(rot, trans, frac[members], tol)
        except ValueError:
            raise InputError(
                f"{element} orbit {wp.multiplicity}{letter} does not match pyxtal's coordinates "
                f"in Hall setting {hall}; try another --symprec"
            ) from None
        counts[element] = counts.get(element, 0) + 1
        label = f"{element}{counts[element]}"
        free = _free_axes(rot[0])
        # Each atom sits on one triplet of the orbit plus a lattice translation.
        images = np.einsum("mij,j->mi", rot, params) + trans  # (M, 3)
        ops: dict[int, int] = {}
        for atom in members:
            delta = frac[atom][None, :] - images
            dist = np.abs(delta - np.round(delta)).max(axis=1)
            op = int(np.argmin(dist))
            if dist[op] > tol or op in ops.values():
                raise InputError(f"could not place atom {atom} of orbit {label} on its Wyckoff "
                                 f"position {wp.multiplicity}{letter}; try another --symprec")
            ops[atom] = op
            fixed = [axis for axis in range(3) if axis not in free]
            offset[atom] = trans[op] + np.round(delta[op]) + rot[op][:, fixed] @ params[fixed]
        for axis in free:
            column = np.zeros((n, 3))
            for atom, op in ops.items():
                column[atom] = rot[op][:, axis]
            columns.append(column)
            dofs.append(Dof(name=f"{label}.{AXES[axis]}", orbit=label, axis=axis,
                            value=float(params[axis])))
        orbits.append(Orbit(
            label=label, element=element, letter=letter, multiplicity=wp.multiplicity,
            site_symmetry=str(std.site_symmetry_symbols[rep]),
            generator=wp.ops[0].as_xyz_str(), free_axes=free, params=params,
            atoms=tuple(members),
        ))
    basis = np.stack(columns, axis=-1) if columns else np.zeros((n, 3, 0))
    analysis = SymmetryAnalysis(
        atoms=std_atoms, spacegroup=int(std.number), international=str(std.international),
        hall_number=hall, orbits=orbits, dofs=dofs, offset=offset, basis=basis,
        symprec=symprec, label=protostructure_label(std_atoms, symprec=symprec),
        transformation_matrix=np.array(dataset.transformation_matrix),
        origin_shift=np.array(dataset.origin_shift),
    )
    # The reference DOFs must rebuild the standardized cell exactly (up to lattice translations).
    delta = analysis.frac_positions(analysis.reference) - frac
    if np.abs(delta - np.round(delta)).max() > tol:
        raise InputError("internal check failed: reference DOFs do not rebuild the structure; "
                         "try another --symprec")
    std_atoms.set_scaled_positions(analysis.frac_positions(analysis.reference))
    return analysis


def protostructure_label(atoms: Atoms, symprec: float = 0.1) -> str:
    """Protostructure label (pymatgen/aviary convention), e.g. ``A3B2_oP20_62_3c_2c:N-W``."""
    from pymatgen.analysis.prototypes import get_protostructure_label_from_spglib
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = AseAtomsAdaptor.get_structure(atoms)
    with warnings.catch_warnings():  # pymatgen's own use of a deprecated gcd
        warnings.simplefilter("ignore", FutureWarning)
        return get_protostructure_label_from_spglib(structure, init_symprec=symprec)
