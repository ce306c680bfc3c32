"""Success curves: Kaplan–Meier on censored repeats, band, JSON and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pesflow.search.success import SuccessCurve, plot_success_curves, success_curve


def test_matches_hand_count():
    times = [3, 5, None, 5, 9, None]  # two repeats never succeeded within 10 calls
    curve = success_curve(times, 10)
    # with every failure censored at the end, the curve is the plain share of successes
    for x, share in [(0, 0), (2.9, 0), (3, 1 / 6), (4, 1 / 6), (5, 3 / 6), (8, 3 / 6),
                     (9, 4 / 6), (10, 4 / 6)]:
        assert curve.evaluate(x) == pytest.approx(share)
    assert curve.censored == [10.0, 10.0]
    assert curve.n_runs == 6


def test_band_is_the_exact_binomial_one_while_no_repeat_is_censored():
    from scipy.stats import binomtest

    times = [3, 5, None, 5, 9, None, None, None, None, None]
    curve = success_curve(times, 10)
    for x, k in [(0, 0), (4, 1), (5, 3), (10, 4)]:
        i = max(j for j, xj in enumerate(curve.x) if xj <= x)
        band = binomtest(k, 10).proportion_ci(0.95, method="exact")
        assert (curve.low[i], curve.high[i]) == pytest.approx((band.low, band.high))
    assert curve.high[0] > 0.25  # no success yet is no proof that none will come


def test_censoring_before_the_end_follows_kaplan_meier():
    # repeat C stopped at 4 without success: after that only 3 repeats are at risk
    curve = success_curve([2, 6, None, 8], [10, 10, 4, 10])
    # S(2) = 3/4; at 6, 2 at risk: S = 3/4 * 1/2; at 8: 0
    assert curve.evaluate(2) == pytest.approx(1 / 4)
    assert curve.evaluate(6) == pytest.approx(1 - 3 / 8)
    assert curve.evaluate(8) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_curve_monotone_inside_band(seed):
    rng = np.random.default_rng(seed)
    budgets = rng.integers(20, 60, size=25).astype(float)
    times = [float(t) if t <= b else None
             for t, b in zip(rng.exponential(30, size=25).round() + 1, budgets, strict=True)]
    curve = success_curve(times, budgets)
    cdf, low, high = map(np.asarray, (curve.cdf, curve.low, curve.high))
    assert np.all(np.diff(cdf) >= -1e-12)
    assert np.all(low <= cdf + 1e-12) and np.all(cdf <= high + 1e-12)
    assert np.all((low >= 0) & (high <= 1))
    assert np.all(np.diff(curve.x) > 0)
    assert high[-1] > low[-1] or cdf[-1] in (0.0, 1.0)


def test_all_censored_and_all_found():
    none = success_curve([None, None], 5)
    assert none.cdf == [0.0, 0.0]
    assert none.high[-1] == pytest.approx(1 - 0.025 ** 0.5)  # exact bound for 0 of 2
    every = success_curve([1, 2], 5)
    assert every.cdf[-1] == 1.0 and every.high[-1] == 1.0
    assert 0 < every.low[-1] < 1
    with pytest.raises(ValueError, match="budget"):
        success_curve([6], 5)


def test_json_round_trip_and_plot(tmp_path):
    curve = success_curve([3, None, 7], [10, 12, 10], unit="CPU seconds", label="REX")
    path = curve.save(tmp_path / "curve.json")
    data = json.loads(path.read_text())
    assert data["n_runs"] == 3 and data["times"] == [3.0, None, 7.0]
    again = SuccessCurve.fromdict(data)
    assert again == curve
    png = plot_success_curves([curve, success_curve([1, 2], 10, label="BH")], tmp_path / "s.png")
    assert png.stat().st_size > 5000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_log_axis_of_repeats_censored_close_together_is_readable():
    """CPU times that all lie within 5 % (every repeat censored) still get an axis from
    one power of ten to the next, labelled there and not at each minor tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pesflow.search.success import draw_success_curves

    curve = success_curve([None, None, None], [310.0, 312.0, 325.0], unit="CPU core-seconds")
    fig, ax = plt.subplots()
    draw_success_curves(ax, [curve], xlog=True)
    fig.canvas.draw()
    assert ax.get_xlim() == pytest.approx((100.0, 1000.0))
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True)]
    assert minor and all(text == "" for text in minor)
    plt.close(fig)


def test_curve_from_seeded_runs():
    """First-success calls of real (cheap) RSS runs on LJ7 make a curve that matches a
    hand count; runs that never succeed are censored at their budget."""
    from search_standins import E_GM, lj_oracle, morse_prior

    from pesflow.search.engines import RandomSearch
    from pesflow.search.runner import SerialRunner
    from pesflow.structures.identity import Reference, found_at
    from pesflow.structures.problem import lj_cluster

    problem = lj_cluster(7)
    reference = Reference("basin", energy=E_GM[7], threshold=1e-3, oracle=lj_oracle())
    budget = 2  # small enough that some repeats fail
    calls, cpu, cpu_budgets = [], [], []
    for seed in range(6):
        runner = SerialRunner(RandomSearch(problem, {"steps": 100}, seed=seed), lj_oracle(),
                              surrogate=morse_prior(3.0), budget=budget)
        runner.run()
        calls.append(found_at(runner.evaluations, reference))
        cpu.append(found_at(runner.evaluations, reference, key="cpu_time"))
        cpu_budgets.append(runner.evaluations[-1].cpu_time)
    assert any(c is None for c in calls) and any(c is not None for c in calls), calls
    curve = success_curve(calls, budget)
    for x in range(budget + 1):
        assert curve.evaluate(x) == pytest.approx(sum(c is not None and c <= x for c in calls) / 6)
    assert curve.censored == [float(budget)] * sum(c is None for c in calls)
    by_time = success_curve(cpu, cpu_budgets, unit="CPU seconds")
    # failures stop at different CPU times: Kaplan–Meier gives at least the plain share
    assert len(by_time.censored) == len(curve.censored)
    assert by_time.cdf[-1] >= curve.cdf[-1] - 1e-12
