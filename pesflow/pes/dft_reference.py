"""A coarse DFT reference over a slice (GPAW single points, e.g. 5 × 5, ``fast`` settings).

Points with distance cost > 0 are skipped by default: overlapping atoms are what the
cost flags, and SCF there is slow or fails. Each single point runs through
:func:`pesflow.dft.run_single_point` in ``OUT/dft-tasks`` (task directories named by
a hash of structure and settings), so a rerun reuses finished ones. Results go to
``OUT/dft.npz``: the coarse indices, energies (eV/atom, NaN where skipped or failed)
and the level of theory.
"""

from __future__ import annotations

import logging

import numpy as np

from pesflow.pes.slices import SliceRun
from pesflow.store.atomic import atomic_write

log = logging.getLogger(__name__)


def coarse_indices(n_full: int, n: int) -> np.ndarray:
    """``n`` evenly spaced indices into an axis of ``n_full`` points (ends included)."""
    return np.unique(np.linspace(0, n_full - 1, min(n, n_full)).round().astype(int))


def monkhorst_pack_for(cell: np.ndarray, density: float) -> tuple[int, int, int]:
    """k-points per axis: ceil(density / |a_i|) (density in Å, e.g. 15)."""
    lengths = np.linalg.norm(np.asarray(cell), axis=1)
    return tuple(int(max(1, np.ceil(density / length))) for length in lengths)


def dft_reference(run: SliceRun, n: int = 5, settings: str | dict = "fast", ranks: int = 1,
                  kpoint_density: float = 15.0, include_close_contacts: bool = False,
                  root=None) -> dict:
    """Run (or reuse) GPAW single points on an ``n`` × ``n`` sub-grid of the slice.

    Returns
    -------
    dict
        ``indices`` (k, 2), ``energies`` (k,) in eV/atom, ``level_of_theory``.
    """
    from pesflow.dft import run_single_point
    from pesflow.dft.settings import get_settings

    grid = run.geometry.grid
    kpts = monkhorst_pack_for(run.geometry.cell, kpoint_density)
    resolved = get_settings(settings, kpts=kpts)
    with np.load(run.out / "cost.npz") as d:
        cost = d["cost"]
    rows, energies = [], []
    for i in coarse_indices(grid.shape[0], n):
        for j in coarse_indices(grid.shape[1], n):
            rows.append((int(i), int(j)))
            if cost[i, j] > 0 and not include_close_contacts:
                energies.append(np.nan)
                continue
            k = int(i) * grid.shape[1] + int(j)
            atoms = run.geometry.structures(k, k + 1)[0]
            result = run_single_point(atoms, resolved, ranks=ranks,
                                      root=root or run.out / "dft-tasks")
            if not result.ok:
                log.warning("DFT at grid point (%d, %d): %s %s", i, j, result.status,
                            result.message)
            energies.append(result.energy / len(atoms) if result.ok else np.nan)
    out = {"indices": np.array(rows), "energies": np.array(energies),
           "level_of_theory": resolved.level_of_theory()}
    atomic_write(run.out / "dft.npz", lambda f: np.savez(f, indices=out["indices"],
                 energies=out["energies"], level_of_theory=np.array(out["level_of_theory"])))
    return out


def dft_grid(run: SliceRun) -> np.ndarray | None:
    """The DFT reference as a full-grid array (NaN off the coarse points), if there is one."""
    path = run.out / "dft.npz"
    if not path.exists():
        return None
    full = np.full(run.geometry.grid.shape, np.nan)
    with np.load(path) as d:
        for (i, j), e in zip(d["indices"], d["energies"], strict=True):
            full[i, j] = e
    return full
