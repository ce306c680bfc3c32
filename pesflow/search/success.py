"""Success curves: the share of independent repeats that found the solution by time x.

Each repeat gives its first-success time (oracle calls, or CPU time = cores × wall time)
or, when it never succeeded, the time it ran for: a right-censored observation. The
curve is the empirical CDF (Kaplan–Meier, ``scipy.stats.ecdf`` on ``CensoredData``)
with a pointwise confidence band, written as JSON and drawn with matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import CensoredData, ecdf

from pesflow.store.atomic import atomic_write_json


@dataclass
class SuccessCurve:
    """A success curve as data.

    ``x`` are the step positions (0, then every distinct success or censoring time);
    ``cdf``, ``low`` and ``high`` its value and band on [x_k, x_{k+1}).
    ``times[r]`` is repeat r's first success (``None``: censored at ``budgets[r]``).
    """

    x: list[float]
    cdf: list[float]
    low: list[float]
    high: list[float]
    times: list[float | None]
    budgets: list[float]
    unit: str = "oracle calls"
    confidence: float = 0.95
    label: str = ""

    @property
    def n_runs(self) -> int:
        return len(self.times)

    @property
    def censored(self) -> list[float]:
        """Censoring times of the repeats that never succeeded."""
        return [b for t, b in zip(self.times, self.budgets, strict=True) if t is None]

    def evaluate(self, x: float | Sequence[float]) -> np.ndarray:
        """The curve's value at ``x`` (right-continuous step function)."""
        k = np.searchsorted(self.x, np.asarray(x, dtype=float), side="right") - 1
        return np.asarray(self.cdf)[np.clip(k, 0, None)] * (k >= 0)

    def at(self, x: float) -> tuple[float, float, float]:
        """The curve's value and band at ``x``: (share, low, high)."""
        k = int(np.searchsorted(self.x, x, side="right")) - 1
        return (self.cdf[k], self.low[k], self.high[k]) if k >= 0 else (0.0, 0.0, 0.0)

    def todict(self) -> dict:
        return {**asdict(self), "n_runs": self.n_runs}

    @classmethod
    def fromdict(cls, data: dict) -> SuccessCurve:
        return cls(**{k: v for k, v in data.items() if k != "n_runs"})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_json(path, self.todict(), indent=1)
        return path


def success_curve(
    times: Sequence[float | None],
    budgets: float | Sequence[float],
    unit: str = "oracle calls",
    confidence: float = 0.95,
    label: str = "",
) -> SuccessCurve:
    """Success curve of repeats with first-success ``times`` (``None``: never).

    Parameters
    ----------
    times
        Per repeat, the first-success time, or ``None`` when it never succeeded.
    budgets
        Per repeat (or one for all), how long it ran: the censoring time of the failures.
    """
    times = [None if t is None else float(t) for t in times]
    budgets = [float(budgets)] * len(times) if np.isscalar(budgets) else [float(b) for b in budgets]
    if not times:
        raise ValueError("a success curve needs at least one repeat")
    if len(budgets) != len(times):
        raise ValueError(f"{len(times)} repeats but {len(budgets)} budgets")
    for t, b in zip(times, budgets, strict=True):
        if t is not None and t > b:
            raise ValueError(f"success at {t} after the repeat's budget {b}")
    found = [t for t in times if t is not None]
    failed = [b for t, b in zip(times, budgets, strict=True) if t is None]
    result = ecdf(CensoredData(uncensored=found, right=failed))
    q = result.cdf.quantiles
    p = result.cdf.probabilities
    import warnings

    with warnings.catch_warnings():  # undefined at cdf = 0 or 1: filled in below
        warnings.simplefilter("ignore", RuntimeWarning)
        band = result.cdf.confidence_interval(confidence, method="log-log")
    low, high = band.low.probabilities, band.high.probabilities
    # The log-log band is undefined where the cdf is 0 or 1: the lower bound keeps its
    # last defined value at 1; the upper one at 0 is the exact bound for no success in
    # the repeats still running.
    low, high = low.copy(), high.copy()
    alpha = 1 - confidence
    for k in range(len(p)):
        if np.isnan(low[k]):
            low[k] = low[k - 1] if k and p[k] >= 1 else p[k]
        if np.isnan(high[k]):
            at_risk = sum(b >= q[k] for b in failed)
            high[k] = 1.0 if p[k] >= 1 else 1 - (alpha / 2) ** (1 / max(at_risk, 1))
    x, cdf = [0.0, *map(float, q)], [0.0, *map(float, p)]
    low = [0.0, *map(float, np.minimum(np.clip(low, 0, 1), p))]
    high = [1 - (alpha / 2) ** (1 / len(times)),
            *map(float, np.maximum(np.clip(high, 0, 1), p))]
    # Before the first censoring the curve is a plain share k/n: exact binomial band
    # (Clopper-Pearson), the one a success rate at a fixed budget is quoted with.
    first_censored = min(failed, default=math.inf)
    for k, at in enumerate(x):
        if at <= first_censored:
            low[k], high[k] = clopper_pearson(round(cdf[k] * len(times)), len(times), confidence)
    return SuccessCurve(
        x=x,
        cdf=cdf,
        low=low,
        high=high,
        times=times,
        budgets=budgets,
        unit=unit,
        confidence=confidence,
        label=label,
    )


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval of a success rate ``successes / n``."""
    from scipy.stats import beta

    alpha = 1 - confidence
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1,
                                                        n - successes))
    return low, high


def first_reached(curve: SuccessCurve, share: float = 0.5) -> float | None:
    """The smallest x at which the curve reaches ``share`` (e.g. the median time to
    success), or ``None`` when it never does within the repeats' budgets."""
    for x, p in zip(curve.x, curve.cdf, strict=True):
        if p >= share - 1e-12:
            return x
    return None


def draw_success_curves(
    ax,
    curves: Mapping[str, SuccessCurve] | Sequence[SuccessCurve],
    xlog: bool = False,
    colors: Mapping[str, Any] | None = None,
    legend: bool = True,
) -> None:
    """Draw curves with their bands on a matplotlib axis; censored repeats marked '+'.

    ``colors`` maps labels to colours, so that one label keeps its colour across panels.
    """
    items = curves.items() if isinstance(curves, Mapping) else [(c.label, c) for c in curves]
    unit = ""
    for label, c in items:
        unit = c.unit
        x_end = max([*c.budgets, *(t for t in c.times if t is not None)])
        x = [*c.x, x_end]
        color = (colors or {}).get(label)
        line = ax.step(x, [*c.cdf, c.cdf[-1]], where="post", label=f"{label} (n={c.n_runs})",
                       color=color)[0]
        ax.fill_between(x, [*c.low, c.low[-1]], [*c.high, c.high[-1]], step="post",
                        color=line.get_color(), alpha=0.2, linewidth=0)
        cens = np.asarray(c.censored)
        if len(cens):
            ax.plot(cens, c.evaluate(cens), "+", color=line.get_color(), markersize=10)
    ax.set_xlabel(unit)
    ax.set_ylabel("share of repeats that found the solution")
    ax.set_ylim(-0.02, 1.02)
    if xlog:
        _decade_log_axis(ax)
    if legend:
        ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)


def _decade_log_axis(ax) -> None:
    """A log x axis reaching from one power of ten to another, labelled at those only.

    Repeats censored at similar CPU times give a range narrower than a decade, where
    matplotlib would label every minor tick and the labels run into each other.
    """
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    if low > 0 and high / low < 10:
        ax.set_xlim(10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_success_curves(
    curves: Mapping[str, SuccessCurve] | Sequence[SuccessCurve],
    path: str | Path,
    title: str | None = None,
    xlog: bool = False,
) -> Path:
    """Draw curves with their bands; censored repeats are marked with '+'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    draw_success_curves(ax, curves, xlog=xlog)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@dataclass
class SuccessPanel:
    """One panel of :func:`plot_success_panels`: curves by label, a title, a log x axis."""

    curves: Mapping[str, SuccessCurve]
    title: str = ""
    xlog: bool = False


def plot_success_panels(
    rows: Sequence[Sequence[SuccessPanel]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """A grid of success-curve panels (``rows`` of panels), one colour per label.

    A benchmark problem draws one row per prior, with success versus oracle calls and
    versus CPU time side by side and one curve per algorithm.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [list(row) for row in rows if row]
    if not rows:
        raise ValueError("no panels to draw")
    ncols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(5.5 * ncols, 3.6 * len(rows)),
                             squeeze=False)
    labels = list(dict.fromkeys(label for row in rows for panel in row for label in panel.curves))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {label: cycle[i % len(cycle)] for i, label in enumerate(labels)}
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(row):
                ax.set_visible(False)
                continue
            draw_success_curves(ax, row[j].curves, xlog=row[j].xlog, colors=colors)
            if row[j].title:
                ax.set_title(row[j].title, fontsize="medium")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
