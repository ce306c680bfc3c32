"""Contour plots of slices: one panel per model, difference maps, and Δ-model σ maps.

The cost > 0 region (atoms closer than D_min) is hatched and outlined; the
reference structure is a white star, the lowest cost-free point a white cross.
Colour limits default to the cost-free region's minimum and 95th percentile
(``extend`` arrows show values beyond them), so that a model's collapse at close contact does not
wash out the physical part of the map; ``clip=False`` shows the full range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pesflow.pes.metrics import lowest_point
from pesflow.pes.slices import SliceData


def _limits(values: Sequence[np.ndarray], masks: Sequence[np.ndarray], clip: bool):
    """Colour limits: cost-free minimum to 95th percentile (5th–95th without cost-free points)."""
    lows, highs = [], []
    for v, m in zip(values, masks, strict=True):
        finite = np.isfinite(v)
        if not finite.any():
            continue
        if not clip:
            lows.append(v[finite].min())
            highs.append(v[finite].max())
        elif (m & finite).any():
            lows.append(v[m & finite].min())
            # 95th percentile: near-contact walls would otherwise take the whole range.
            highs.append(np.percentile(v[m & finite], 95))
        else:  # everything has cost > 0: robust limits, a collapse must not set the scale
            lows.append(np.percentile(v[finite], 5))
            highs.append(np.percentile(v[finite], 95))
    if not lows:
        return 0.0, 1.0
    lo, hi = min(lows), max(highs)
    return (lo, hi) if hi > lo else (lo - 1e-3, hi + 1e-3)


def _panel(ax, data: SliceData, z: np.ndarray, vmin: float, vmax: float, cmap: str,
           levels: int = 30, mark_minimum: bool = True):
    x, y = data.axes
    lv = np.linspace(vmin, vmax, levels)
    full = z[np.isfinite(z)]
    extend = "neither"
    if full.size:
        below, above = full.min() < vmin, full.max() > vmax
        extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
            (bool(below), bool(above)), "neither")
    # Arrays are [i, j] = (dof0[i], dof1[j]): dof0 on the horizontal axis.
    if np.isfinite(z).mean() < 0.5:  # a coarse reference grid (DFT): draw its points
        i, j = np.nonzero(np.isfinite(z))
        im = ax.scatter(x[i], y[j], c=z[i, j], cmap=cmap, vmin=vmin, vmax=vmax, s=160,
                        marker="s", edgecolors="k")
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])
    else:
        im = ax.contourf(x, y, z.T, levels=lv, cmap=cmap, extend=extend)
    bad = (data.cost > 0).T.astype(float)
    if bad.any():
        import matplotlib

        # Sparse grey hatching: the colours underneath stay readable.
        with matplotlib.rc_context({"hatch.color": "0.3", "hatch.linewidth": 0.6}):
            ax.contourf(x, y, bad, levels=[0.5, 1.5], colors="none", hatches=["/"])
        ax.contour(x, y, bad, levels=[0.5], colors="k", linewidths=0.8)
    ax.plot(*data.reference_point, marker="*", ms=14, mfc="white", mec="k", ls="none",
            label="reference")
    best = lowest_point(z, data.cost <= 0, data.axes, data.reference_point)
    if mark_minimum and best is not None:
        i, j = best
        ax.plot(x[i], y[j], marker="X", ms=10, mfc="white", mec="k", ls="none",
                label="lowest cost-free")
    ax.set_xlabel(data.dofs[0])
    ax.set_ylabel(data.dofs[1])
    return im


def plot_slices(data: SliceData, path: str | Path, models: Sequence[str] | None = None,
                shared_scale: bool = False, clip: bool = True, title: str | None = None) -> Path:
    """One contour panel per model (eV/atom); returns the written path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(models or data.energies)
    n = len(models)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    free = data.cost <= 0
    shared = _limits([data.energies[m] for m in models], [free] * n, clip) if shared_scale else None
    for ax, name in zip(axes.flat, models, strict=False):
        z = data.energies[name]
        vmin, vmax = shared or _limits([z], [free], clip)
        im = _panel(ax, data, z, vmin, vmax, "viridis")
        fig.colorbar(im, ax=ax, label="E (eV/atom)")
        ax.set_title(name)
    for ax in list(axes.flat)[n:]:
        ax.remove()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(title or f"{data.meta.get('label', '')}: hatched = distance cost > 0")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_differences(data: SliceData, reference: str, path: str | Path,
                     models: Sequence[str] | None = None) -> Path:
    """Maps of E_model − E_reference (eV/atom), colour limits from the cost-free region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in (models or data.energies) if m != reference]
    n = max(len(models), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    free = data.cost <= 0
    ref = data.energies[reference]
    for ax, name in zip(axes.flat, models, strict=False):
        diff = data.energies[name] - ref
        finite = diff[free & np.isfinite(diff)]
        bound = float(np.abs(finite).max()) if finite.size else 1.0
        bound = bound if bound > 0 else 1e-6  # identical slices: contour levels must increase
        im = _panel(ax, data, diff, -bound, bound, "RdBu_r", mark_minimum=False)
        fig.colorbar(im, ax=ax, label=f"E − E[{reference}] (eV/atom)")
        ax.set_title(f"{name} − {reference}")
    for ax in list(axes.flat)[len(models):]:
        ax.remove()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_uncertainty(data: SliceData, path: str | Path, models: Sequence[str] | None = None,
                     clip: bool = True) -> Path | None:
    """One contour panel of σ (eV/atom) per model that has one (``delta:RUN_DIR``).

    Colour limits as for energies (cost-free minimum to 95th percentile with ``clip``).
    Returns the written path, or None when no model has a finite σ.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in (models or data.sigma)
              if m in data.sigma and np.isfinite(data.sigma[m]).any()]
    if not models:
        return None
    n = len(models)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    free = data.cost <= 0
    for ax, name in zip(axes.flat, models, strict=False):
        z = data.sigma[name]
        vmin, vmax = _limits([z], [free], clip)
        im = _panel(ax, data, z, vmin, vmax, "magma", mark_minimum=False)
        fig.colorbar(im, ax=ax, label="σ (eV/atom)")
        ax.set_title(f"σ of {name}")
    for ax in list(axes.flat)[n:]:
        ax.remove()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(f"{data.meta.get('label', '')}\nΔ-model uncertainty; hatched = distance cost > 0",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_energy_vs_distance(data: SliceData, path: str | Path,
                            models: Sequence[str] | None = None) -> Path:
    """Every grid point's energy against its shortest interatomic distance.

    Energies are relative to each model's lowest cost-free point, on a symmetric-log
    axis: a model without short-range repulsion shows energies falling again (or
    diverging either way) as the shortest distance goes to zero.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in (models or data.energies)
              if np.isfinite(data.energies[m]).mean() >= 0.5]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    free = data.cost <= 0
    for name in models:
        e = data.energies[name]
        ok = np.isfinite(e)
        base = e[free & ok].min() if (free & ok).any() else np.nanmin(e)
        ax.scatter(data.nearest[ok], e[ok] - base, s=6, alpha=0.5, label=name)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set(xlabel="shortest interatomic distance (Å)",
           ylabel="E − E(lowest cost-free point) (eV/atom)",
           title=f"{data.meta.get('label', '')}: {data.dofs[0]} × {data.dofs[1]}")
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
