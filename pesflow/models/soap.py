"""SOAP descriptor (DScribe) with derivatives for clusters and periodic cells.

DScribe computes analytic SOAP derivatives only for non-periodic systems. For periodic
structures this module offers two routes:

``"images"`` (default)
    The periodic images within the SOAP cutoff (plus DScribe's Gaussian padding) are
    written out as one finite cluster; DScribe's analytic derivatives are taken for the
    original atoms as centres and the derivatives with respect to each image are folded
    back onto the atom it copies. Same descriptor as DScribe's periodic one (to 1e-11).
``"numerical"``
    DScribe's own central finite differences on the periodic system.
``"auto"`` (default)
    ``"numerical"`` when only a few atoms are differentiated (``include`` with at most a
    third of the atoms, e.g. a slab whose lower layers are fixed), else ``"images"``:
    finite differences cost per displaced atom, the image route costs per structure.

``benchmarks/delta_model/`` measures both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from pesflow.errors import InputError


@dataclass(frozen=True)
class SoapSettings:
    """SOAP hyperparameters (paper defaults: n_max = 3, l_max = 2, r_cut = 7 Å, σ = 1 Å)."""

    r_cut: float = 7.0
    n_max: int = 3
    l_max: int = 2
    sigma: float = 1.0
    rbf: str = "gto"

    def to_dict(self) -> dict:
        return asdict(self)


class SoapDescriptor:
    """Per-atom SOAP vectors and their Cartesian derivatives.

    Parameters
    ----------
    species
        Chemical symbols the descriptor knows (all species of the problem).
    settings
        SOAP hyperparameters.
    periodic_derivatives
        ``"auto"``, ``"images"`` (analytic, on the explicit periodic images) or
        ``"numerical"`` (DScribe's finite differences) for structures with any periodic
        direction.
    """

    def __init__(
        self,
        species: Sequence[str],
        settings: SoapSettings | None = None,
        periodic_derivatives: str = "auto",
    ) -> None:
        from dscribe.descriptors import SOAP

        if periodic_derivatives not in ("auto", "images", "numerical"):
            raise InputError(
                "periodic_derivatives must be 'auto', 'images' or 'numerical', "
                f"got {periodic_derivatives!r}"
            )
        self.species = sorted(set(species))
        if not self.species:
            raise InputError("the SOAP descriptor needs at least one species")
        self.settings = settings or SoapSettings()
        self.periodic_derivatives = periodic_derivatives
        s = self.settings
        common = dict(species=self.species, r_cut=s.r_cut, n_max=s.n_max, l_max=s.l_max,
                      sigma=s.sigma, rbf=s.rbf, sparse=False, dtype="float64")
        self._finite = SOAP(periodic=False, **common)
        self._periodic = SOAP(periodic=True, **common)
        self.n_features: int = self._finite.get_number_of_features()
        # DScribe includes neighbours up to r_cut + padding (Gaussian tails).
        self._reach = s.r_cut + self._finite.get_cutoff_padding()
        self._known = set(self.species)

    def _check(self, atoms: Atoms) -> None:
        unknown = set(atoms.get_chemical_symbols()) - self._known
        if unknown:
            raise InputError(
                f"structure {atoms.get_chemical_formula()} has species {sorted(unknown)} that the "
                f"SOAP descriptor was not set up for ({self.species}); give all species of the "
                "problem when building the model"
            )

    def create(self, atoms: Atoms) -> np.ndarray:
        """SOAP vectors of all atoms, shape ``(n_atoms, n_features)``."""
        self._check(atoms)
        soap = self._periodic if atoms.pbc.any() else self._finite
        return soap.create(atoms)

    def derivatives(
        self, atoms: Atoms, include: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """SOAP vectors and their derivatives with respect to atomic positions.

        Parameters
        ----------
        atoms
            The structure (cluster or periodic).
        include
            Atoms whose displacement is differentiated (default: all). Rows for the other
            atoms are zero: use it to skip atoms held fixed.

        Returns
        -------
        x : ndarray, shape (n_atoms, n_features)
        dx : ndarray, shape (n_centres, n_atoms, 3, n_features)
            ``dx[i, a, c, f]`` = ∂x_if / ∂r_ac (centres are all atoms).
        """
        self._check(atoms)
        n = len(atoms)
        subset = None if include is None else np.asarray(include, dtype=int)
        if not atoms.pbc.any():
            return self._cluster_derivatives(atoms, subset)
        method = self.periodic_derivatives
        if method == "auto":
            few = subset is not None and 3 * len(subset) <= n
            method = "numerical" if few else "images"
        if method == "numerical":
            dx, x = self._periodic.derivatives(
                atoms, method="numerical", attach=True,
                include=None if subset is None else subset.tolist(),
            )
            if subset is not None:  # DScribe returns only the included atoms
                full = np.zeros((n, n, 3, self.n_features))
                full[:, subset] = dx
                dx = full
            return x, dx
        return self._image_derivatives(atoms, subset)

    def _cluster_derivatives(
        self, atoms: Atoms, subset: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(atoms)
        if subset is None:
            dx, x = self._finite.derivatives(atoms, method="analytical", attach=True)
            return x, dx
        dx, x = self._finite.derivatives(
            atoms, method="analytical", attach=True, include=subset.tolist()
        )
        full = np.zeros((n, n, 3, self.n_features))
        full[:, subset] = dx
        return x, full

    def _image_derivatives(
        self, atoms: Atoms, subset: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(atoms)
        positions, origin = periodic_images(atoms, self._reach)
        cluster = Atoms(numbers=atoms.numbers[origin], positions=positions)
        if subset is None:
            include = np.arange(len(origin))
        else:
            include = np.flatnonzero(np.isin(origin, subset))
        dx_ext, x = self._finite.derivatives(
            cluster, centers=list(range(n)), include=include.tolist(),
            method="analytical", attach=True,
        )
        # Fold image derivatives back onto the atoms they copy: sum over images.
        fold = np.zeros((len(include), n))
        fold[np.arange(len(include)), origin[include]] = 1.0
        dx = np.einsum("ceyf,ea->cayf", dx_ext, fold, optimize=True)
        return x, dx


def periodic_images(atoms: Atoms, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """The atoms of the cell followed by all periodic images within ``reach`` of any of them.

    Returns
    -------
    positions : ndarray, shape (n_ext, 3)
        The first ``len(atoms)`` rows are the atoms themselves.
    origin : ndarray of int, shape (n_ext,)
        Index of the atom each row copies.
    """
    cell = atoms.cell.array
    n = len(atoms)
    # Layers of images needed along each periodic axis: reach / plane spacing.
    recip = np.linalg.pinv(cell).T
    reps = [
        int(np.ceil(reach * np.linalg.norm(recip[k]))) if atoms.pbc[k] else 0 for k in range(3)
    ]
    grid = np.meshgrid(*[np.arange(-r, r + 1) for r in reps], indexing="ij")
    shifts = np.stack([g.ravel() for g in grid], axis=1)
    shifts = shifts[np.any(shifts != 0, axis=1)]
    images = (atoms.positions[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    dist, _ = cKDTree(atoms.positions).query(images, distance_upper_bound=reach)
    keep = np.isfinite(dist)
    origin = np.concatenate([np.arange(n), np.tile(np.arange(n), len(shifts))[keep]])
    return np.concatenate([atoms.positions, images[keep]]), origin
