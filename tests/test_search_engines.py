"""Engines: the statistics that matter, ask/tell contract, exact resume, robust relaxation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from search_standins import lj_oracle, morse_prior, single_blas_thread  # noqa: F401

from pesflow.search.base import engine_from_state, metropolis, swap_probability
from pesflow.search.engines import GOFEE, REX, BasinHopping, OracleRandomSearch, RandomSearch
from pesflow.search.relax import relax
from pesflow.search.runner import SerialRunner
from pesflow.search.tasks import (
    OracleTask,
    SurrogateEnergyResult,
    SurrogateEnergyTask,
    SurrogateRelaxResult,
    SurrogateRelaxTask,
    from_dict,
    run_oracle,
    run_surrogate_relax,
    to_dict,
)
from pesflow.structures.generators import random_structure
from pesflow.structures.problem import lj_cluster


def binomial_ok(k: int, n: int, p: float, z: float = 4.0) -> bool:
    return abs(k / n - p) <= z * math.sqrt(p * (1 - p) / n) + 1e-12


# -- Metropolis, swaps, amplitude adaptation -------------------------------------------------


@pytest.mark.parametrize("delta_e", [0.05, 0.15, 0.4])
def test_basin_hopping_metropolis_rate(delta_e):
    """BH accepts an oracle energy ΔE higher with probability exp(−ΔE/kT), kT = 0.15 eV."""
    problem = lj_cluster(7)
    engine = BasinHopping(problem, seed=11)
    atoms = random_structure(problem, engine.rng)
    engine.consider(atoms, -10.0)  # the first structure is always taken
    n = 3000
    accepted = sum(engine.consider(atoms, engine.walker.energy + delta_e) for _ in range(n))
    assert binomial_ok(accepted, n, math.exp(-delta_e / 0.15))
    assert all(engine.consider(atoms, engine.walker.energy - 0.01) for _ in range(50))


def test_basin_hopping_metropolis_goes_through_tell():
    """The oracle result of a candidate reaches the Metropolis test via propose/tell."""
    problem = lj_cluster(7)
    engine = BasinHopping(problem, {"kT": 0.15}, seed=3)
    rng = np.random.default_rng(0)
    n, accepted = 600, 0
    for k in range(n + 1):
        (task,) = engine.propose()
        relaxed = task.atoms
        engine.tell([SurrogateRelaxResult(task.id, relaxed, -1.0, 0)])
        (oracle_task,) = engine.propose()
        assert isinstance(oracle_task, OracleTask)
        frame = oracle_task.atoms.copy()
        energy = -5.0 if k == 0 else engine.walker.energy + 0.15 * rng.exponential()
        from ase.calculators.singlepoint import SinglePointCalculator

        frame.calc = SinglePointCalculator(frame, energy=energy, forces=np.zeros((7, 3)))
        before = engine.walker.energy
        from pesflow.search.tasks import OracleResult

        engine.tell([OracleResult(oracle_task.id, [frame], 1)])
        accepted += k > 0 and engine.walker.energy != before
    # ΔE ~ kT·Exp(1): acceptance E[exp(−X)] = 1/2
    assert binomial_ok(accepted, n, 0.5)
    assert len(engine.walker.accepted) == n


def test_metropolis_function_rate():
    rng = np.random.default_rng(0)
    n = 20000
    rate = sum(metropolis(0.2, 0.1, rng) for _ in range(n)) / n
    assert binomial_ok(round(rate * n), n, math.exp(-2))


def test_swap_rule_moves_lower_energy_to_colder_walker():
    engine = REX(lj_cluster(7), {"n_walkers": 2, "kT_min": 0.1, "kT_max": 1.0}, seed=5)
    cold, hot = engine.walkers
    a, b = (random_structure(engine.problem, engine.rng) for _ in range(2))
    # lower energy at the hot walker: always swapped in
    for _ in range(200):
        cold.atoms, cold.energy, hot.atoms, hot.energy = a, 0.0, b, -0.1
        engine.swap()
        assert cold.energy == -0.1 and cold.atoms is b and hot.atoms is a
    # lower energy at the cold walker: kept with probability 1 − exp(−(β_c − β_h) ΔE)
    n, swapped = 4000, 0
    for _ in range(n):
        cold.energy, hot.energy = -0.1, 0.0
        engine.swap()
        swapped += cold.energy == 0.0
    expected = math.exp(-(1 / 0.1 - 1 / 1.0) * 0.1)
    assert binomial_ok(swapped, n, expected)
    # the paper's Eq. 3 as printed, (E_j − E_i), would do the opposite
    assert swap_probability(10.0, 1.0, 0.0, -0.1) == 1.0
    assert swap_probability(10.0, 1.0, -0.1, 0.0) == pytest.approx(math.exp(-0.9))


def test_swap_sweep_carries_the_best_structure_down_the_ladder():
    engine = REX(lj_cluster(7), seed=6)
    for k, w in enumerate(engine.walkers):
        w.atoms, w.energy = random_structure(engine.problem, engine.rng), -float(k) * 0.01
    engine.walkers[-1].energy = -10.0  # the hottest walker found something very good
    best = engine.walkers[-1].atoms
    engine.swap()
    assert engine.walkers[0].atoms is best and engine.walkers[0].energy == -10.0


def test_amplitude_adaptation_drives_acceptance_to_half():
    """Synthetic landscape: ΔE = kT·(a/a0)·Exp(1), acceptance 1/(1 + a/a0), 50% at a0."""
    a0 = 1.0
    settings = {"n_walkers": 3, "random_top": False, "swap_interval": 10**6,
                "oracle_interval": 10**6}
    engine = REX(lj_cluster(7), settings, seed=8)
    rng = np.random.default_rng(1)
    n_iter = 1200

    def synthetic(tasks):
        results = []
        for task in tasks:
            w = engine.walkers[engine._batch[task.id][0]]
            energy = 0.0 if w.atoms is None else (
                w.energy + w.kT * (w.amplitude / a0) * rng.exponential())
            results.append(SurrogateRelaxResult(task.id, task.atoms, energy, 0))
        return results[::-1]  # any order

    for _ in range(n_iter + 1):  # initialisation + n_iter iterations
        engine.tell(synthetic(engine.propose()))
    assert engine.iteration == n_iter
    for w in engine.walkers:
        assert 0.6 * a0 < w.amplitude < 1.6 * a0
    accepted = total = 0
    for _ in range(400):
        engine.tell(synthetic(engine.propose()))
        accepted += sum(w.history[-1] for w in engine.walkers)
        total += len(engine.walkers)
    assert abs(accepted / total - 0.5) < 0.05


def test_amplitudes_start_linear_and_temperatures_geometric():
    engine = REX(lj_cluster(7), seed=0)
    kT = [w.kT for w in engine.walkers]
    amp = [w.amplitude for w in engine.walkers]
    assert kT[0] == pytest.approx(0.1) and kT[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log(kT)), np.log(10) / 9)
    assert np.allclose(amp, np.linspace(0.1, 5.0, 10))


# -- tasks, tell in any order ----------------------------------------------------------------


def test_tasks_and_results_round_trip_through_json():
    problem = lj_cluster(7)
    engine = REX(problem, seed=1)
    tasks = engine.propose()
    oracle_task = engine._oracle_task(tasks[0].atoms, steps=1)
    items = [*tasks, oracle_task, run_oracle(oracle_task, lj_oracle())]
    items.append(run_surrogate_relax(tasks[0], morse_prior()))
    items.append(SurrogateEnergyTask(99, tasks[0].atoms, 3))
    for item in items:
        again = from_dict(json.loads(json.dumps(to_dict(item))))
        assert type(again) is type(item)
        assert json.dumps(to_dict(again)) == json.dumps(to_dict(item))
    result = items[-3]
    assert result.n_calls == 2 and len(result.frames) == 2  # GOFEE: point + one step


@pytest.mark.parametrize("engine_cls", [GOFEE, REX])
def test_tell_in_any_order_and_in_parts(engine_cls):
    """Results told shuffled and in two parts leave the same state as told in order."""
    problem = lj_cluster(7)
    states = []
    for order in ("forward", "shuffled"):
        engine = engine_cls(problem, {"n_walkers": 4} if engine_cls is REX else
                            {"n_candidates": 4}, seed=2)
        prior = morse_prior()
        for _ in range(3):
            tasks = engine.propose()
            results = [run_surrogate_relax(t, prior) for t in tasks
                       if isinstance(t, SurrogateRelaxTask)]
            results += [run_oracle(t, lj_oracle()) for t in tasks if isinstance(t, OracleTask)]
            if order == "shuffled":
                results = [results[i] for i in np.random.default_rng(0).permutation(len(results))]
                half = len(results) // 2
                engine.tell(results[:half])
                assert engine.propose() == []
                engine.tell(results[half:])
            else:
                engine.tell(results)
        states.append(json.dumps(engine.state_dict()))
    assert states[0] == states[1]


# -- exact resume ----------------------------------------------------------------------------

ENGINE_CASES = {
    "rss": (RandomSearch, {"steps": 50}),
    "basin_hopping": (BasinHopping, {"steps": 50}),
    "gofee": (GOFEE, {"n_candidates": 3, "steps": 20}),
    "rex": (REX, {"n_walkers": 4, "steps": 10, "swap_interval": 2, "oracle_interval": 3,
                  "oracle_count": 2, "oracle_from": 3}),
    "oracle_rss": (OracleRandomSearch, {"steps": 5}),
}


def _proposals(runner, cycles):
    """Run ``cycles`` cycles, recording every proposal as JSON text."""
    seen = []
    propose = runner.engine.propose

    def recording():
        tasks = propose()
        seen.append([json.dumps(to_dict(t)) for t in tasks])
        return tasks

    runner.engine.propose = recording
    for _ in range(cycles):
        runner.step()
    return seen


@pytest.mark.parametrize("name", ENGINE_CASES)
def test_resume_from_serialized_state_is_exact(name):
    cls, settings = ENGINE_CASES[name]
    problem = lj_cluster(7)

    def new_runner():
        return SerialRunner(cls(problem, settings, seed=4), lj_oracle(), surrogate=morse_prior(),
                            budget=10**6)

    total, cut = 12, 5
    reference = new_runner()
    whole = _proposals(reference, total)
    first = new_runner()
    part = _proposals(first, cut)
    state = json.loads(json.dumps(first.state_dict()))  # through JSON: plain data only
    second = SerialRunner.from_state(problem, state, lj_oracle(), surrogate=morse_prior())
    part += _proposals(second, total - cut)
    assert part == whole
    assert json.dumps(second.engine.state_dict()) == json.dumps(reference.engine.state_dict())
    assert [(e.call, e.energy) for e in second.evaluations] == [
        (e.call, e.energy) for e in reference.evaluations
    ]
    assert second.evaluations and second.n_calls == reference.n_calls


@pytest.mark.parametrize("engine_cls", [GOFEE, REX])
def test_resume_with_tasks_in_flight(engine_cls):
    """State saved between a partial tell and the rest continues exactly."""
    problem = lj_cluster(7)
    prior = morse_prior()
    settings = {"n_walkers": 3, "steps": 10} if engine_cls is REX else {"n_candidates": 3,
                                                                         "steps": 10}
    a = engine_cls(problem, settings, seed=9)
    tasks = a.propose()
    results = [run_surrogate_relax(t, prior) for t in tasks]
    a.tell(results[:1])
    b = engine_from_state(problem, json.loads(json.dumps(a.state_dict())))
    assert [t.id for t in b.in_flight()] == [t.id for t in a.in_flight()]
    a.tell(results[1:])
    b.tell(results[1:])
    assert [to_dict(t) for t in a.propose()] == [to_dict(t) for t in b.propose()]
    assert json.dumps(a.state_dict()) == json.dumps(b.state_dict())


# -- REX re-prediction and oracle cadence ----------------------------------------------------


def test_rex_repredicts_walkers_after_a_model_update_and_sends_oracle_tasks():
    problem = lj_cluster(7)
    settings = {"n_walkers": 10, "steps": 5, "oracle_interval": 2, "swap_interval": 1}
    engine = REX(problem, settings, seed=3)
    prior = morse_prior()

    def answer(tasks):
        out = []
        for t in tasks:
            if isinstance(t, SurrogateRelaxTask):
                out.append(run_surrogate_relax(t, prior))
            elif isinstance(t, SurrogateEnergyTask):
                out.append(SurrogateEnergyResult(t.id, -1.0, t.model_version))
        return out

    oracle_tasks = []
    for _ in range(3):  # initialisation + 2 iterations
        tasks = engine.propose()
        oracle_tasks += [t for t in tasks if isinstance(t, OracleTask)]
        engine.tell(answer(tasks))
    tasks = engine.propose()
    oracle_tasks += [t for t in tasks if isinstance(t, OracleTask)]
    assert len(oracle_tasks) == 5
    coldest9 = [w.atoms for w in engine.walkers[:9]]
    assert all(any(t.atoms is a for a in coldest9) for t in oracle_tasks)
    assert not any(isinstance(t, SurrogateEnergyTask) for t in tasks)
    engine.tell(answer([t for t in tasks if not isinstance(t, OracleTask)]))
    engine.model_updated(1)
    tasks = engine.propose()
    energy_tasks = [t for t in tasks if isinstance(t, SurrogateEnergyTask)]
    assert len(energy_tasks) == 10 and all(t.model_version == 1 for t in energy_tasks)
    assert all(t.model_version == 1 for t in tasks if isinstance(t, SurrogateRelaxTask))
    engine.tell(answer([t for t in tasks if not isinstance(t, OracleTask)]))
    assert all(w.energy_version == 1 for w in engine.walkers)


# -- robust surrogate relaxation -------------------------------------------------------------


class Broken(Calculator):
    """A model that fails after a few calls: NaN, a collapse, or an exception."""

    implemented_properties = ("energy", "forces")

    def __init__(self, mode: str, after: int = 3):
        super().__init__()
        self.mode, self.after, self.calls = mode, after, 0
        self.inner = morse_prior()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        e = self.inner.get_potential_energy(self.atoms)
        f = self.inner.get_forces(self.atoms)
        if self.calls > self.after:
            if self.mode == "nan":
                e, f = float("nan"), f * np.nan
            elif self.mode == "collapse":
                e = -1e6
            else:
                raise RuntimeError("model crashed")
        self.results = {"energy": e, "forces": f}


@pytest.mark.parametrize("mode", ["nan", "collapse", "raise"])
def test_relax_survives_a_failing_model(mode):
    problem = lj_cluster(7)
    atoms = random_structure(problem, np.random.default_rng(0))
    result = relax(atoms, Broken(mode), steps=50, confinement=problem.confinement)
    assert result.error and not result.converged
    assert np.isfinite(result.energy) and result.steps >= 2
    # the search drops the candidate and goes on
    engine = RandomSearch(problem, seed=0)
    (task,) = engine.propose()
    engine.tell([run_surrogate_relax(task, Broken(mode, after=0))])
    (next_task,) = engine.propose()
    assert isinstance(next_task, SurrogateRelaxTask)  # a new candidate, no oracle call


def test_relax_keeps_atoms_confined_and_template_fixed():
    from ase.calculators.emt import EMT

    from pesflow.structures.problem import emt_surface

    problem = emt_surface("Au2")
    atoms = random_structure(problem, np.random.default_rng(1))
    result = relax(atoms, EMT(), steps=40, fixed=problem.n_template,
                   confinement=problem.confinement)
    assert result.error is None
    assert np.allclose(result.atoms.positions[: problem.n_template], problem.template.positions)
    assert problem.confinement.contains(result.atoms.positions[problem.n_template :]).all()


# -- settings and a surface problem ----------------------------------------------------------


def test_bad_settings_get_one_clear_message():
    from pesflow.errors import InputError

    problem = lj_cluster(7)
    with pytest.raises(InputError, match=r"unknown settings.*'kt'"):
        BasinHopping(problem, {"kt": 0.1})
    with pytest.raises(InputError, match="oracle_count must not exceed"):
        REX(problem, {"oracle_count": 12, "oracle_from": 9})
    with pytest.raises(InputError, match="amplitude must be > 0"):
        BasinHopping(problem, {"amplitude": -1.0})


def test_serial_rss_on_a_surface_keeps_the_slab_fixed():
    """EMT oracle and EMT surrogate: Au2 on the √7 Ag(111) slab, periodic in x and y."""
    from ase.calculators.emt import EMT

    from pesflow.structures.problem import emt_surface

    problem = emt_surface("Au2")
    runner = SerialRunner(RandomSearch(problem, {"steps": 30}, seed=1), EMT(), surrogate=EMT(),
                          budget=2)
    runner.run()
    assert runner.n_calls == 2 and len(runner.evaluations) == 2
    for e in runner.evaluations:
        assert np.allclose(e.atoms.positions[: problem.n_template], problem.template.positions)
        assert problem.confinement.contains(e.atoms.positions[problem.n_template :]).all()
        assert e.energy == pytest.approx(EMT().get_potential_energy(e.atoms))


def test_resume_with_the_delta_model_is_exact(tmp_path):
    """Runner state (JSON) plus the Δ-model file (HDF5) continue a REX run exactly."""
    from pesflow.models.delta import DeltaModel

    problem = lj_cluster(7)
    settings = {"n_walkers": 3, "steps": 10, "oracle_interval": 1, "oracle_count": 2,
                "oracle_from": 2}

    def new_runner():
        model = DeltaModel(problem.species, morse_prior(), seed=0)
        return SerialRunner(REX(problem, settings, seed=4), lj_oracle(), model=model,
                            budget=10**6)

    reference = new_runner()
    whole = _proposals(reference, 7)
    first = new_runner()
    part = _proposals(first, 4)
    state = json.loads(json.dumps(first.state_dict()))
    first.model.save(tmp_path / "model.h5")
    model = DeltaModel.load(tmp_path / "model.h5", prior=morse_prior())
    second = SerialRunner.from_state(problem, state, lj_oracle(), model=model)
    part += _proposals(second, 3)
    assert model.version > 1  # the model was retrained before and after the restart
    assert part == whole


def test_oracle_failure_is_reported_and_counted():
    class Failing(Calculator):
        implemented_properties = ("energy", "forces")

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            raise RuntimeError("SCF did not converge")

    problem = lj_cluster(7)
    engine = BasinHopping(problem, seed=0)
    (task,) = engine.propose()
    engine.tell([run_surrogate_relax(task, morse_prior())])
    (oracle_task,) = engine.propose()
    result = run_oracle(oracle_task, Failing())
    assert result.error == "RuntimeError: SCF did not converge"
    assert result.n_calls == 1 and result.frames == []
    engine.tell([result])
    assert engine.walker.atoms is None  # nothing accepted; the search goes on
    assert isinstance(engine.propose()[0], SurrogateRelaxTask)
