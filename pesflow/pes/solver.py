"""Vectorized structure solver and distance cost (JAX, float64).

A slice is a 2D grid over two DOFs, all other DOFs frozen at the reference.
Because the cell is an affine function of the DOFs (see
:mod:`pesflow.pes.symmetry`), generating structures is a batched matrix
product; the distance cost (paper Eq. 1) needs all periodic pair distances,
which dominate memory, so grid points are processed in chunks sized to a
memory bound. JAX runs on a GPU when it sees one.

Grid ordering: flat index ``k = i * n2 + j``, ``i`` over the first DOF's
values and ``j`` over the second's, so ``array.reshape(n1, n2)[i, j]`` is the
point (values1[i], values2[j]) (``numpy.meshgrid(..., indexing="ij")``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pesflow.errors import InputError
from pesflow.pes.symmetry import SymmetryAnalysis

#: Default memory bound for one chunk of pair-distance work.
DEFAULT_MEMORY_BYTES = 256 * 2**20
#: Bytes per grid point per atom pair: a handful of (N, N, 3) float64 temporaries.
_BYTES_PER_PAIR = 200
#: Most grid points a slice may have (2000 × 2000): beyond that a typo, not a plan (every
#: point is one model evaluation).
MAX_GRID_POINTS = 4_000_000


def jax_x64():
    """Import JAX with float64 enabled (needed for fractional-coordinate precision).

    On a GPU, JAX no longer takes 75 % of the device's memory at its start (unless
    ``XLA_PYTHON_CLIENT_PREALLOCATE`` is set): the solver needs little, and model workers
    on the same GPU need the rest (12 CHGNet workers beside the coordinator ran out of
    memory on an 80 GB H100 without this).
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


@dataclass(frozen=True)
class Grid:
    """A 2D grid over two DOFs of a :class:`SymmetryAnalysis`.

    Attributes
    ----------
    names : tuple of str
        The two DOF names.
    indices : tuple of int
        Their positions in the analysis' DOF vector.
    axes : tuple of numpy.ndarray
        Values along each DOF (fractional coordinates).
    reference : numpy.ndarray
        Full DOF vector of the reference structure (frozen DOFs keep these values).
    """

    names: tuple[str, str]
    indices: tuple[int, int]
    axes: tuple[np.ndarray, np.ndarray]
    reference: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.axes[0]), len(self.axes[1]))

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def values(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Full DOF vectors of flat points ``start:stop``, shape (m, n_dof)."""
        flat = np.arange(start, self.size if stop is None else min(stop, self.size))
        i, j = np.divmod(flat, self.shape[1])
        q = np.repeat(self.reference[None, :], len(flat), axis=0)
        q[:, self.indices[0]] = self.axes[0][i]
        q[:, self.indices[1]] = self.axes[1][j]
        return q

    def reference_point(self) -> tuple[float, float]:
        return float(self.reference[self.indices[0]]), float(self.reference[self.indices[1]])


def make_grid(
    analysis: SymmetryAnalysis,
    dofs: Sequence[str],
    ranges: Sequence[tuple[float, float]] | None = None,
    steps: Sequence[int] | int = 50,
) -> Grid:
    """Build the grid for two named DOFs.

    Parameters
    ----------
    analysis : SymmetryAnalysis
    dofs : two DOF names, as ``--list-dofs`` prints them.
    ranges : two (start, stop) pairs, inclusive; default (0, 1) for both.
    steps : number of values per DOF (one int for both, or two).
    """
    if len(dofs) != 2:
        raise InputError(f"a slice needs exactly two DOFs (--dof twice), got {len(dofs)}")
    if dofs[0] == dofs[1]:
        raise InputError(f"the two DOFs must differ, got {dofs[0]!r} twice")
    indices = tuple(analysis.dof_index(name) for name in dofs)
    ranges = ranges or [(0.0, 1.0), (0.0, 1.0)]
    steps = [steps, steps] if isinstance(steps, int) else list(steps)
    if len(ranges) != 2 or len(steps) != 2:
        raise InputError("give one --range and one --steps per DOF (or one --steps for both)")
    for name, (lo, hi), n in zip(dofs, ranges, steps, strict=True):
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"range for {name} must be finite numbers, got ({lo}, {hi})")
        if not hi > lo:
            raise InputError(f"range for {name} must have start < stop, got ({lo}, {hi})")
        if n < 2:
            raise InputError(f"steps for {name} must be at least 2, got {n}")
    if steps[0] * steps[1] > MAX_GRID_POINTS:
        raise InputError(
            f"a {steps[0]}×{steps[1]} grid has {steps[0] * steps[1]:,} points, more than "
            f"{MAX_GRID_POINTS:,}; use fewer --steps"
        )
    axes = tuple(np.linspace(lo, hi, n) for (lo, hi), n in zip(ranges, steps, strict=True))
    return Grid(tuple(dofs), indices, axes, analysis.reference.copy())


class StructureSolver:
    """Full cells and distance costs for batches of DOF vectors.

    Parameters
    ----------
    analysis : SymmetryAnalysis
    dmin : numpy.ndarray
        D_min for every atom pair, shape (N, N) (see :func:`pesflow.pes.radii.dmin_matrix`).
    memory_bytes : int
        Bound on the working memory of one chunk; sets the chunk size.
    """

    def __init__(
        self, analysis: SymmetryAnalysis, dmin: np.ndarray, memory_bytes: int = DEFAULT_MEMORY_BYTES
    ) -> None:
        self.analysis = analysis
        self.lattice = np.array(analysis.atoms.cell)
        self.dmin = np.asarray(dmin, float)
        n = len(analysis.atoms)
        if self.dmin.shape != (n, n):
            raise ValueError(f"dmin must have shape ({n}, {n})")
        self.memory_bytes = int(memory_bytes)
        self.chunk_size = max(1, self.memory_bytes // (_BYTES_PER_PAIR * n * n))
        # A Niggli-reduced cell and its 27 neighbour images give true minimum distances,
        # also in skewed cells where rounding fractional differences alone is wrong.
        # (Cell.niggli_reduce returns a rotated cell; op @ lattice keeps our Cartesian frame.)
        _, op = analysis.atoms.cell.niggli_reduce()
        self.reduced = np.asarray(op, float) @ self.lattice
        self.images = np.array(list(itertools.product((-1, 0, 1), repeat=3)), float)
        shifts = self.images @ self.reduced
        self.lattice_min = float(np.sort(np.linalg.norm(shifts, axis=1))[1])  # d_lat,min
        # Self-image term: constant because the lattice is fixed along a slice.
        self.self_cost = 0.5 * float(np.maximum(0.0, np.diag(self.dmin) - self.lattice_min).sum())

    def frac_positions(self, q: np.ndarray) -> np.ndarray:
        """Fractional positions, shape (m, N, 3), for DOF vectors of shape (m, n_dof)."""
        return self.analysis.frac_positions(q)

    @cached_property
    def _kernel(self):
        jax = jax_x64()
        jnp = jax.numpy
        offset = jnp.asarray(self.analysis.offset)
        basis = jnp.asarray(self.analysis.basis)
        to_reduced = jnp.asarray(self.lattice @ np.linalg.inv(self.reduced))
        reduced = jnp.asarray(self.reduced)
        shifts = self.images @ self.reduced  # Cartesian image shifts, (27, 3)
        shift2 = (shifts**2).sum(axis=1)
        dmin = jnp.asarray(self.dmin)
        n = len(self.dmin)
        offdiag = jnp.asarray(1.0 - np.eye(n))  # precomputed mask (no booleans inside jit)
        self_cost = self.self_cost

        def one(q):
            frac = offset + jnp.einsum("nad,d->na", basis, q)
            red = frac @ to_reduced  # fractional coordinates in the reduced cell
            delta = red[None, :, :] - red[:, None, :]
            delta = delta - jnp.round(delta)
            cart = delta @ reduced
            dx, dy, dz = cart[..., 0], cart[..., 1], cart[..., 2]
            d2 = dx * dx + dy * dy + dz * dz
            best = d2
            # |d + s|^2 = |d|^2 + 2 d.s + |s|^2, elementwise per image: XLA fuses it into
            # one pass and memory stays O(N^2) per point.
            for (sx, sy, sz), s2 in zip(shifts, shift2, strict=True):
                if s2 == 0.0:
                    continue
                best = jnp.minimum(best, d2 + 2.0 * (dx * sx + dy * sy + dz * sz) + s2)
            best = jnp.maximum(best, 0.0)
            dist = jnp.sqrt(best)
            cost = 0.5 * jnp.sum(offdiag * jnp.maximum(0.0, dmin - dist)) + self_cost
            nearest = jnp.min(dist + (1.0 - offdiag) * 1e9)
            return cost, nearest

        return jax.jit(jax.vmap(one))

    def cost(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance cost (Eq. 1, Å) and shortest interatomic distance (Å) for DOF vectors.

        Parameters
        ----------
        q : numpy.ndarray
            Shape (m, n_dof); processed in chunks of ``chunk_size`` (padded so that the
            compiled kernel is reused).
        """
        q = np.atleast_2d(np.asarray(q, float))
        costs, nearest = np.empty(len(q)), np.empty(len(q))
        size = min(self.chunk_size, len(q))
        for start in range(0, len(q), size):
            chunk = q[start:start + size]
            pad = size - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            c, d = self._kernel(chunk)
            stop = start + size - pad
            costs[start:stop] = np.asarray(c)[: size - pad]
            nearest[start:stop] = np.asarray(d)[: size - pad]
        return costs, nearest

    def grid_cost(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Cost and shortest distance over a whole grid, each of shape ``grid.shape``."""
        costs, nearest = np.empty(grid.size), np.empty(grid.size)
        step = max(self.chunk_size, 1) * 16  # DOF vectors are small; pairs are bounded per chunk
        for start in range(0, grid.size, step):
            c, d = self.cost(grid.values(start, start + step))
            costs[start:start + len(c)], nearest[start:start + len(d)] = c, d
        return costs.reshape(grid.shape), nearest.reshape(grid.shape)

    def iter_structures(self, grid: Grid, start: int, stop: int) -> Iterator:
        """ASE Atoms of flat grid points ``start:stop``."""
        base = self.analysis.atoms
        for frac in self.frac_positions(grid.values(start, stop)):
            atoms = base.copy()
            atoms.set_scaled_positions(frac)
            yield atoms
