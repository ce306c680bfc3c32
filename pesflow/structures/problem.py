"""Search problems: what is fixed, what is placed, and where it may go.

A :class:`Problem` is a template (fixed atoms, possibly a slab, which sets the cell
and periodicity), the symbols of the atoms a search places, and a confinement cell
those atoms must stay in. Builders for the paper's Ag–S systems (SPEC.md §4) and for
cheap stand-ins (LJ, EMT) live here too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.build import fcc100, fcc111, make_supercell
from ase.constraints import FixAtoms
from ase.symbols import string2symbols

from pesflow.errors import InputError

#: Ag lattice constant used for the slabs (PBE, Haas, Tran & Blaha, Phys. Rev. B 79, 085104
#: (2009), Table III: 4.157 Å; experiment 4.07 Å). A PBE value keeps the static slab unstrained
#: in the paper's level of theory.
AG_LATTICE_CONSTANT_PBE = 4.157

#: LJ stand-in element: its covalent radius (1.32 Å) puts the graph bond cutoff
#: 1.3 × 2 r_cov = 3.43 Å between the first (2.81 Å) and second (≈3.97 Å) neighbour shells of
#: an LJ cluster with σ = 2.5 Å (SPEC.md §3).
LJ_STANDIN_SYMBOL = "Cu"


@dataclass(frozen=True)
class Confinement:
    """A parallelepiped atoms must stay in: ``corner + f @ cell`` with 0 <= f <= 1.

    Parameters
    ----------
    cell
        (3, 3) array, rows are the spanning vectors in Å.
    corner
        (3,) lower corner in Å.
    periodic
        Directions in which the confinement is not enforced because it spans the
        periodic cell (surface problems confine only z).
    """

    cell: np.ndarray
    corner: np.ndarray
    periodic: tuple[bool, bool, bool] = (False, False, False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", np.asarray(self.cell, dtype=float).reshape(3, 3))
        object.__setattr__(self, "corner", np.asarray(self.corner, dtype=float).reshape(3))
        object.__setattr__(self, "periodic", tuple(bool(p) for p in self.periodic))

    def fractional(self, positions: np.ndarray) -> np.ndarray:
        """Fractional coordinates of ``positions`` (n, 3) in the confinement cell."""
        return np.linalg.solve(self.cell.T, (np.asarray(positions) - self.corner).T).T

    def contains(self, positions: np.ndarray, tolerance: float = 1e-9) -> np.ndarray:
        """Boolean mask of positions inside the confinement (periodic directions ignored)."""
        frac = self.fractional(positions)
        inside = (frac >= -tolerance) & (frac <= 1 + tolerance)
        inside[:, list(self.periodic)] = True
        return inside.all(axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random positions inside the confinement."""
        return self.corner + rng.random((n, 3)) @ self.cell


@dataclass
class Problem:
    """A global-optimization problem.

    Parameters
    ----------
    name
        Short identifier, used in file names and reports.
    template
        Fixed atoms (may be empty); its cell and pbc are the problem's.
    symbols
        Chemical symbols of the atoms the search places, in order.
    confinement
        Where placed atoms start and stay.
    fmax
        Force threshold (eV/Å) of surrogate relaxations (paper: 0.05; 0.025 for Ag(100)).
    kpts
        k-point grid the paper used for this system's DFT (``None``: Γ only).
    """

    name: str
    template: Atoms
    symbols: list[str]
    confinement: Confinement
    fmax: float = 0.05
    kpts: tuple[int, int, int] | None = None
    description: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.symbols:
            raise InputError(f"problem {self.name!r}: no atoms to place")
        self.symbols = list(self.symbols)

    @property
    def n_template(self) -> int:
        return len(self.template)

    @property
    def n_atoms(self) -> int:
        return len(self.template) + len(self.symbols)

    @property
    def species(self) -> list[str]:
        """Sorted unique chemical symbols of template and placed atoms."""
        return sorted(set(self.template.get_chemical_symbols()) | set(self.symbols))

    @property
    def is_periodic(self) -> bool:
        return bool(self.template.pbc.any())

    @property
    def formula(self) -> str:
        counts = Counter(self.symbols)
        return "".join(f"{s}{n if n > 1 else ''}" for s, n in sorted(counts.items()))

    def assemble(self, positions: np.ndarray) -> Atoms:
        """Template plus placed atoms at ``positions`` (n_placed, 3), template atoms fixed."""
        positions = np.asarray(positions, dtype=float).reshape(len(self.symbols), 3)
        atoms = self.template.copy()
        atoms.constraints = []
        atoms += Atoms(self.symbols, positions=positions, cell=atoms.cell, pbc=atoms.pbc)
        if self.n_template:
            atoms.set_constraint(FixAtoms(indices=range(self.n_template)))
        return atoms

    def placed_positions(self, atoms: Atoms) -> np.ndarray:
        """Positions of the placed (non-template) atoms of a structure of this problem."""
        return atoms.positions[self.n_template :]


def _cubic_confinement(box: float, side: float) -> tuple[Atoms, Confinement]:
    template = Atoms(cell=[box] * 3, pbc=False)
    corner = np.full(3, (box - side) / 2)
    return template, Confinement(np.eye(3) * side, corner)


def _symbols(formula: str | Sequence[str]) -> list[str]:
    try:
        return string2symbols(formula) if isinstance(formula, str) else list(formula)
    except ValueError as error:
        raise InputError(f"cannot read composition {formula!r}: {error}") from None


def ag2s_cluster(x: int, box: float = 20.0, confinement: float = 15.0) -> Problem:
    """[Ag2S]_X cluster in vacuum: 20 Å cell, 15 Å confinement (paper's settings)."""
    if x < 1:
        raise InputError(f"[Ag2S]_X needs X >= 1, got {x}")
    if confinement > box:
        raise InputError(f"confinement ({confinement} Å) larger than the cell ({box} Å)")
    template, conf = _cubic_confinement(box, confinement)
    return Problem(
        name=f"Ag2S_{x}",
        template=template,
        symbols=["Ag"] * (2 * x) + ["S"] * x,
        confinement=conf,
        description=f"[Ag2S]_{x} cluster, {box:g} Å cell, {confinement:g} Å confinement",
    )


def _surface_problem(
    name: str,
    slab: Atoms,
    supercell: np.ndarray,
    adsorbates: str,
    height: float,
    vacuum: float,
    fmax: float,
    kpts: tuple[int, int, int],
    description: str,
) -> Problem:
    slab = make_supercell(slab, supercell)
    slab.wrap()
    z_top = slab.positions[:, 2].max()
    slab.cell[2] = [0.0, 0.0, z_top + height + vacuum]
    slab.pbc = (True, True, False)
    cell = slab.cell.array.copy()
    conf_cell = np.array([cell[0], cell[1], [0.0, 0.0, height]])
    confinement = Confinement(conf_cell, [0.0, 0.0, z_top], periodic=(True, True, False))
    return Problem(
        name=name,
        template=slab,
        symbols=_symbols(adsorbates),
        confinement=confinement,
        fmax=fmax,
        kpts=kpts,
        description=description,
    )


def ag111_sqrt7(
    adsorbates: str = "Ag3S3",
    layers: int = 4,
    a: float = AG_LATTICE_CONSTANT_PBE,
    height: float = 4.0,
    vacuum: float = 10.0,
) -> Problem:
    """Ag(111)-(√7×√7)R19.1° slab with ``adsorbates`` to place (paper: Ag3S3).

    ``layers`` static Ag layers; confinement spans the surface cell and ``height`` Å above
    the top layer; ``vacuum`` Å above the confinement. Paper k-points 6×6.
    """
    slab = fcc111("Ag", size=(1, 1, layers), a=a, vacuum=0.0, orthogonal=False)
    slab.positions[:, 2] -= slab.positions[:, 2].min() - 3.0  # GPAW LCAO: 3 Å to the face
    supercell = np.array([[2, 1, 0], [-1, 3, 0], [0, 0, 1]])  # |v|² = 7 in units of a/√2
    return _surface_problem(
        f"Ag111_sqrt7_{adsorbates}", slab, supercell, adsorbates, height, vacuum, 0.05,
        (6, 6, 1), f"Ag(111)-(√7×√7)R19.1°-{adsorbates}, {layers} static Ag layers, a = {a} Å",
    )


def ag100_sqrt17(
    adsorbates: str = "Ag12S8",
    layers: int = 4,
    a: float = AG_LATTICE_CONSTANT_PBE,
    height: float = 4.0,
    vacuum: float = 10.0,
) -> Problem:
    """Ag(100)-(√17×√17)R14° slab with ``adsorbates`` to place (paper: Ag12S8, fmax 0.025)."""
    slab = fcc100("Ag", size=(1, 1, layers), a=a, vacuum=0.0)
    slab.positions[:, 2] -= slab.positions[:, 2].min() - 3.0  # GPAW LCAO: 3 Å to the face
    supercell = np.array([[4, 1, 0], [-1, 4, 0], [0, 0, 1]])  # |v|² = 17, angle atan(1/4) = 14.0°
    return _surface_problem(
        f"Ag100_sqrt17_{adsorbates}", slab, supercell, adsorbates, height, vacuum, 0.025,
        (2, 2, 1), f"Ag(100)-(√17×√17)R14°-{adsorbates}, {layers} static Ag layers, a = {a} Å",
    )


def lj_cluster(n: int, sigma: float = 2.5, symbol: str = LJ_STANDIN_SYMBOL) -> Problem:
    """LJ_n stand-in: ``n`` atoms in a cube whose side grows as n^(1/3) (LJ oracle σ = 2.5 Å)."""
    if n < 2:
        raise InputError(f"an LJ cluster needs at least 2 atoms, got {n}")
    side = round(1.5 * 2 ** (1 / 6) * sigma * n ** (1 / 3), 1)
    template, conf = _cubic_confinement(side + 10.0, side)
    return Problem(
        name=f"LJ{n}",
        template=template,
        symbols=[symbol] * n,
        confinement=conf,
        description=f"LJ{n} stand-in (σ = {sigma} Å, element {symbol} for graph bonds)",
        info={"sigma": sigma},
    )


def emt_cluster(formula: str = "Cu13", box: float = 20.0, confinement: float = 12.0) -> Problem:
    """Metal cluster stand-in for an EMT oracle (EMT knows Al, Cu, Ag, Au, Ni, Pd, Pt)."""
    template, conf = _cubic_confinement(box, confinement)
    return Problem(
        name=f"EMT_{formula}", template=template, symbols=_symbols(formula), confinement=conf,
        description=f"{formula} cluster stand-in (EMT)",
    )


def emt_surface(adsorbates: str = "Au3", layers: int = 3) -> Problem:
    """Surface stand-in: metal adatoms on the √7 Ag(111) slab (EMT oracle), Γ point."""
    problem = ag111_sqrt7(adsorbates, layers=layers, a=4.09)  # a: ASE's Ag reference state
    problem.name = f"EMT_Ag111_sqrt7_{adsorbates}"
    problem.kpts = None
    problem.description = f"EMT stand-in: {adsorbates} on Ag(111)-(√7×√7), {layers} layers"
    return problem


#: Named builders, as run configs refer to them.
BUILDERS = {
    "ag2s_cluster": ag2s_cluster,
    "ag111_sqrt7": ag111_sqrt7,
    "ag100_sqrt17": ag100_sqrt17,
    "lj_cluster": lj_cluster,
    "emt_cluster": emt_cluster,
    "emt_surface": emt_surface,
}
