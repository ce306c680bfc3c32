"""Trace plot of a search: best oracle energy versus oracle calls and versus CPU time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def best_so_far(energies: Sequence[float]) -> np.ndarray:
    """Running minimum of oracle energies in call order."""
    return np.minimum.accumulate(np.asarray(energies, dtype=float))


def plot_trace(evaluations: Sequence, path: str | Path, title: str = "") -> Path:
    """Two panels: every oracle energy and the best so far, versus oracle calls and versus
    CPU time (cores × wall time, the paper's measure). ``evaluations`` are
    :class:`~pesflow.search.runner.Evaluation` objects (or dicts with the same keys)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(evaluations, key=lambda e: (e["call"], e["task_id"]))
    calls = np.array([e["call"] for e in rows])
    energies = np.array([e["energy"] for e in rows])
    cpu = np.array([e["cpu_time"] for e in rows])
    best = best_so_far(energies)
    hours = cpu.max(initial=0) > 7200
    cpu_axis = cpu / 3600 if hours else cpu
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, constrained_layout=True)
    cpu_label = "CPU time (core-h)" if hours else "CPU time (core-s)"
    for ax, x, label in ((axes[0], calls, "oracle calls"), (axes[1], cpu_axis, cpu_label)):
        ax.plot(x, energies, "o", ms=3, color="0.6", label="oracle energy")
        ax.step(x, best, where="post", color="C0", lw=2, label="best so far")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    # the y range follows the best energies: close-contact outliers would hide the trace
    low, high = best.min(), np.percentile(energies, 90) if len(energies) > 3 else energies.max()
    pad = 0.05 * max(high - low, 1e-3)
    axes[0].set_ylim(low - pad, high + pad)
    axes[0].set_ylabel("energy (eV)")
    axes[0].legend(loc="upper right")
    fig.suptitle(f"{title}: best {best[-1]:.4f} eV after {calls[-1]} oracle calls" if title
                 else f"best {best[-1]:.4f} eV after {calls[-1]} oracle calls")
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
