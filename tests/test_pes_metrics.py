"""Slice metrics on synthetic landscapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pesflow.pes.metrics import format_table, laplacian_rms, local_minima, metrics_table


def two_wells(n=41):
    x = np.linspace(0, 1, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    e = -np.exp(-((X - 0.25) ** 2 + (Y - 0.5) ** 2) / 0.01) \
        - 0.5 * np.exp(-((X - 0.75) ** 2 + (Y - 0.25) ** 2) / 0.01)
    return (x, x), e


def test_local_minima_of_two_wells():
    axes, e = two_wells()
    found = {(float(axes[0][i]), float(axes[1][j])) for i, j in local_minima(e)}
    assert found == {(0.25, 0.5), (0.75, 0.25)}


def test_nan_neighbours_and_plateaus_are_not_minima():
    e = np.ones((5, 5))
    assert len(local_minima(e)) == 0  # plateau: not strictly lower
    e[2, 2] = 0.0
    assert local_minima(e).tolist() == [[2, 2]]
    e[1, 1] = np.nan
    assert len(local_minima(e)) == 0


def test_metrics_table_positions_ranges_mae():
    axes, e = two_wells()
    cost = np.zeros_like(e)
    cost[:, -5:] = 1.0  # a close-contact strip...
    model = e.copy()
    model[:, -5:] = -10.0  # ...where the model collapses
    table = metrics_table({"dft": e, "model": model}, axes, (0.3, 0.5), cost, reference="dft")
    m = table["model"]
    assert m["minimum"]["energy"] == -10.0  # over the whole slice: the collapse
    assert m["minimum_cost_free"]["dofs"] == [0.25, 0.5]
    assert m["minimum_cost_free"]["distance_dof"] == pytest.approx(0.05)
    assert m["mae_vs_reference"] == pytest.approx(0.0)
    assert m["energy_range"] == pytest.approx(10.0)
    assert m["energy_range_cost_free"] == pytest.approx(np.ptp(e[:, :-5]))
    assert table["dft"]["mae_vs_reference"] is None
    assert m["local_minima"]["count_cost_free"] == 2
    assert "model" in format_table(table)


def test_roughness_is_the_laplacian():
    x = np.linspace(0, 1, 21)
    X, Y = np.meshgrid(x, x, indexing="ij")
    h = (x[1] - x[0], x[1] - x[0])
    mask = np.ones(X.shape, bool)
    assert laplacian_rms(3 * X**2 + Y**2, mask, h) == pytest.approx(8.0)  # Δ = 6 + 2
    noisy = X + 1e-3 * np.random.default_rng(0).standard_normal(X.shape)
    assert laplacian_rms(noisy, mask, h) > laplacian_rms(X, mask, h)


def test_equivalent_minima_count_the_copy_nearest_the_reference():
    x = np.linspace(0, 1, 21)
    X, Y = np.meshgrid(x, x, indexing="ij")
    e = np.cos(4 * np.pi * Y) + (X - 0.5) ** 2  # two equal wells at y = 0.25 and 0.75
    m = metrics_table({"m": e}, (x, x), (0.5, 0.8))["m"]
    assert m["minimum_cost_free"]["dofs"] == [0.5, 0.75]
    assert m["minimum_cost_free"]["distance_dof"] == pytest.approx(0.05)
