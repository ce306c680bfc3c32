"""Smoke tests: each engine with an LJ oracle, a Morse prior and the Δ-model (SPEC.md §3).

LJ oracle ε = 1 eV, σ = 2.5 Å, unshifted (r_c = 20σ); Morse prior ρ0 = 6, r0 = 2^(1/6)σ.
Success is the basin test: a local LJ relaxation of an oracle-evaluated structure (not
counted in the budget) reaches the known minimum within 1e-3 eV. A run stops at its
first success, so these stay fast. REX's cadence is scaled down (oracle every 3
iterations, swaps every 2) so that 40 oracle calls take seconds, not hours.
"""

from __future__ import annotations

import pytest
from search_standins import E_GM, lj_oracle, morse_prior, single_blas_thread  # noqa: F401

from pesflow.models.delta import DeltaModel
from pesflow.search.engines import GOFEE, REX, BasinHopping, RandomSearch
from pesflow.search.runner import SerialRunner
from pesflow.structures.identity import Reference, found_at
from pesflow.structures.problem import lj_cluster

CASES = {
    "rex": (REX, 13, {"oracle_interval": 3, "swap_interval": 2}),
    "basin_hopping": (BasinHopping, 13, {}),
    "gofee": (GOFEE, 13, {}),
    "rss": (RandomSearch, 7, {}),
}


def search(name: str, seed: int, budget: int = 40) -> tuple[int | None, SerialRunner, Reference]:
    """Run one seed until the basin is found or the budget is spent."""
    cls, n, settings = CASES[name]
    problem = lj_cluster(n)
    reference = Reference("basin", energy=E_GM[n], threshold=1e-3, oracle=lj_oracle())
    model = DeltaModel(problem.species, morse_prior(6.0), seed=seed)
    hits: list[int] = []

    def stop(evaluation) -> bool:
        if reference.matches(evaluation.atoms, evaluation.energy):
            hits.append(evaluation.call)
        return bool(hits)

    runner = SerialRunner(
        cls(problem, settings, seed=seed), lj_oracle(), model=model, budget=budget, stop=stop
    )
    runner.run()
    return (hits[0] if hits else None), runner, reference


@pytest.mark.parametrize("name", CASES)
def test_engine_reaches_the_lj_minimum_basin(name):
    found = []
    for seed in range(5):
        call, runner, reference = search(name, seed)
        found.append(call)
        assert runner.model.n_train == len(runner.evaluations)  # every result trained on
        assert runner.n_calls == 40 if call is None else call <= runner.n_calls <= call + 1
        assert found_at(runner.evaluations, reference) == call
    assert sum(c is not None for c in found) >= 4, found
