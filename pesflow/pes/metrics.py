"""Metrics of 2D energy slices, one row per model.

- ``local_minima``: interior grid points strictly lower than all 8 neighbours (a NaN
  neighbour disqualifies a point); count and DOF positions.
- ``minimum``: the lowest grid point over the whole slice and over the cost-free region,
  with its distance from the reference in DOF units and as the RMS displacement of the
  atoms (Å) when the DOF -> cell map is given. Among points within 1e-5 eV/atom of the
  lowest (symmetry-equivalent copies of one minimum) the one nearest the reference counts.
- ``energy_range``: max − min (eV/atom), whole slice and cost-free region.
- ``mae_vs_reference``: mean absolute difference (eV/atom) to a reference slice (DFT or a
  model) over the cost-free points where both are finite.
- ``roughness``: RMS of the 5-point discrete Laplacian, (E[i±1,j] + E[i,j±1] − 4E) / h²
  with h the grid step in DOF units (eV/atom per unit²), over interior points whose
  stencil lies in the cost-free region.
- ``sigma_cost_free`` (``delta:RUN_DIR`` models only): min, median and max of the Δ-model's
  uncertainty σ (eV/atom) over the cost-free points where it is finite.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def local_minima(energy: np.ndarray) -> np.ndarray:
    """Indices (k, 2) of interior points strictly lower than all 8 neighbours."""
    e = np.asarray(energy, float)
    centre = e[1:-1, 1:-1]
    ok = np.isfinite(centre)
    n1, n2 = e.shape
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == dj == 0:
                continue
            neighbour = e[1 + di:n1 - 1 + di, 1 + dj:n2 - 1 + dj]
            ok &= np.isfinite(neighbour) & (centre < neighbour)
    return np.argwhere(ok) + 1


def laplacian_rms(energy: np.ndarray, mask: np.ndarray, steps: tuple[float, float]) -> float:
    """RMS of the discrete Laplacian over interior points whose whole stencil is in ``mask``."""
    e = np.asarray(energy, float)
    h0, h1 = steps
    lap = ((e[2:, 1:-1] + e[:-2, 1:-1] - 2 * e[1:-1, 1:-1]) / h0**2
           + (e[1:-1, 2:] + e[1:-1, :-2] - 2 * e[1:-1, 1:-1]) / h1**2)
    m = np.asarray(mask, bool)
    inside = m[1:-1, 1:-1] & m[2:, 1:-1] & m[:-2, 1:-1] & m[1:-1, 2:] & m[1:-1, :-2]
    inside &= np.isfinite(lap)
    return float(np.sqrt(np.mean(lap[inside] ** 2))) if inside.any() else float("nan")


def lowest_point(energy: np.ndarray, mask: np.ndarray, axes=None, reference=None,
            tie: float = 1e-5) -> tuple[int, int] | None:
    """Lowest point in ``mask``; among ties (within ``tie`` eV/atom, e.g. symmetry-equivalent
    copies of one minimum) the one closest to ``reference``."""
    e = np.where(mask & np.isfinite(energy), energy, np.inf)
    if not np.isfinite(e).any():
        return None
    if axes is None:
        return tuple(int(i) for i in np.unravel_index(np.argmin(e), e.shape))
    ties = np.argwhere(e <= e.min() + tie)
    dist = [np.hypot(axes[0][i] - reference[0], axes[1][j] - reference[1]) for i, j in ties]
    return tuple(int(i) for i in ties[int(np.argmin(dist))])


def sigma_stats(sigma: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Min, median and max (eV/atom) of σ over ``mask`` (all points if None), NaN skipped.

    Values are None where no point in ``mask`` has a finite σ.
    """
    s = np.asarray(sigma, float)
    m = np.ones(s.shape, bool) if mask is None else np.asarray(mask, bool)
    values = s[m & np.isfinite(s)]
    if not values.size:
        return {"min": None, "median": None, "max": None, "points": 0}
    return {"min": float(values.min()), "median": float(np.median(values)),
            "max": float(values.max()), "points": int(values.size)}


def slice_metrics(
    energy: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray],
    reference_point: tuple[float, float],
    cost: np.ndarray | None = None,
    reference_energy: np.ndarray | None = None,
    displacement=None,
    sigma: np.ndarray | None = None,
) -> dict:
    """Metrics of one model's slice.

    Parameters
    ----------
    energy : numpy.ndarray
        Energies (eV/atom), shape (n1, n2), NaN where missing.
    axes : the two DOF value arrays.
    reference_point : DOF values of the reference structure.
    cost : numpy.ndarray, optional
        Distance cost per point; the cost-free region is ``cost <= 0`` (all points if None).
    reference_energy : numpy.ndarray, optional
        Reference slice for the MAE (same shape).
    displacement : callable, optional
        ``displacement(dq) -> float``: RMS atom displacement (Å) for a DOF change (2,).
    sigma : numpy.ndarray, optional
        The model's uncertainty σ (eV/atom, same shape): adds ``sigma_cost_free``.
    """
    e = np.asarray(energy, float)
    free = np.ones(e.shape, bool) if cost is None else np.asarray(cost) <= 0
    finite = np.isfinite(e)
    steps = (float(axes[0][1] - axes[0][0]), float(axes[1][1] - axes[1][0]))
    ref = np.asarray(reference_point, float)

    def point(ij):
        if ij is None:
            return None
        x = np.array([axes[0][ij[0]], axes[1][ij[1]]])
        row = {"index": list(ij), "dofs": x.round(6).tolist(), "energy": float(e[ij]),
               "distance_dof": float(np.linalg.norm(x - ref))}
        if displacement is not None:
            row["displacement_A"] = float(displacement(x - ref))
        return row

    minima = local_minima(e)
    def spread(m):
        return float(np.ptp(e[m & finite])) if (m & finite).any() else float("nan")

    out = {
        "points": int(e.size),
        "finite_points": int(finite.sum()),
        "cost_free_points": int(free.sum()),
        "local_minima": {
            "count": len(minima),
            "count_cost_free": int(sum(free[i, j] for i, j in minima)),
            "dofs": [[float(axes[0][i]), float(axes[1][j])] for i, j in minima],
        },
        "minimum": point(lowest_point(e, np.ones(e.shape, bool), axes, ref)),
        "minimum_cost_free": point(lowest_point(e, free, axes, ref)),
        "energy_range": spread(np.ones(e.shape, bool)),
        "energy_range_cost_free": spread(free),
        "roughness": laplacian_rms(e, free & finite, steps),
        "mae_vs_reference": None,
    }
    if reference_energy is not None:
        r = np.asarray(reference_energy, float)
        both = free & finite & np.isfinite(r)
        out["mae_vs_reference"] = float(np.mean(np.abs(e[both] - r[both]))) if both.any() else None
    if sigma is not None:
        out["sigma_cost_free"] = sigma_stats(sigma, free)
    return out


def metrics_table(
    energies: Mapping[str, np.ndarray],
    axes: tuple[np.ndarray, np.ndarray],
    reference_point: tuple[float, float],
    cost: np.ndarray | None = None,
    reference: str | None = None,
    displacement=None,
    sigma: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict]:
    """:func:`slice_metrics` for every model; ``reference`` names the slice for the MAE,
    ``sigma`` maps models to their σ arrays."""
    ref = energies.get(reference) if reference else None
    sigma = sigma or {}
    return {
        name: slice_metrics(e, axes, reference_point, cost,
                            None if name == reference else ref, displacement, sigma.get(name))
        for name, e in energies.items()
    }


def format_table(table: Mapping[str, dict]) -> str:
    """A plain-text table of the headline metrics."""
    head = (f"{'model':<16}{'minima':>7}{'min ΔDOF':>10}{'min Δr/Å':>10}{'range':>9}"
            f"{'range*':>9}{'MAE*':>9}{'rough*':>10}")
    lines = [head, "-" * len(head)]
    for name, m in table.items():
        mn = m["minimum_cost_free"] or {}
        mae = m["mae_vs_reference"]
        lines.append(
            f"{name:<16}{m['local_minima']['count']:>7d}"
            f"{mn.get('distance_dof', float('nan')):>10.3f}"
            f"{mn.get('displacement_A', float('nan')):>10.3f}"
            f"{m['energy_range']:>9.3g}{m['energy_range_cost_free']:>9.3g}"
            f"{(mae if mae is not None else float('nan')):>9.3g}{m['roughness']:>10.3g}"
        )
    lines.append("energies in eV/atom; * = over the cost-free region (distance cost 0); "
                 "min = lowest cost-free point")
    for name, m in table.items():
        st = m.get("sigma_cost_free")
        if st is not None and st["points"]:
            lines.append(f"σ of {name} over the cost-free region (eV/atom): min {st['min']:.3g}, "
                         f"median {st['median']:.3g}, max {st['max']:.3g}")
        elif st is not None:
            lines.append(f"σ of {name}: no finite value in the cost-free region")
    return "\n".join(lines)
