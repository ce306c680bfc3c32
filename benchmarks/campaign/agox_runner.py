"""AGOX 3.11 half of the REX/GOFEE side-by-side on the stand-ins (issue #7 item 4).

Runs in ``.venv-agox`` and imports no pesflow. Each repeat runs AGOX's own REX
(``agox.algorithms.ReplicaExchange``) or GOFEE (``agox.algorithms.GOFEE``) with the
stand-in campaign's oracle, prior, Δ-model, algorithm settings and oracle budget, one
repeat after another. Problems: LJ26 and LJ38 (``benchmarks/campaign/standins.yaml``) and
the EMT surface stand-in Au4-Ag111 (``benchmarks/campaign/surface-standin.yaml``)::

    .venv-agox/bin/python benchmarks/campaign/agox_runner.py --problem LJ26 \
        --algorithm rex --prior-rho0 6 --repeats 10 --first-seed 1 --budget 100 \
        --out runs/agox-standins
    .venv-agox/bin/python benchmarks/campaign/agox_runner.py --problem Au4-Ag111 \
        --algorithm gofee --repeats 10 --first-seed 1 --budget 40 --out runs/agox-surface

Repeat r (seed = first-seed + r) goes to ``OUT/<problem>/AGOX-<ALG>/<prior>/r<NN>/``
(prior: ``morse<ρ0>`` on LJ, ``morse`` on the surface, pesflow's prior names):

- ``evaluations.extxyz``: every oracle call as a frame (energy, forces; info: ``call``,
  ``wall_time`` and ``cpu_time`` (process CPU) since the repeat started, both without
  the success checks, and on LJ the runner's own ``basin_energy``);
- ``record.json``: seed, settings, budget, end figures, ``finished``;
- ``agox.log`` (AGOX's own output), ``db-agox.db`` (AGOX's database) and the
  confinement plots AGOX's generators draw;
- GOFEE only, ``resume.json``: the resume point after the last finished iteration. GOFEE
  keeps no state between iterations beyond its database, the model and sampler trained on
  it, and NumPy's global RNG, so a resumed repeat reloads the database (dropping rows of
  the unfinished iteration), trains again on it with the RNG state the training drew from
  and goes on: the same calls an unbroken repeat makes (``exact`` in the record's
  ``sittings`` checks the RNG state after retraining). Wall and CPU time go on from the
  resume point: the unfinished iteration's time is lost, the retraining is counted.

A repeat ends at its budget, or earlier at its first success: the runner applies the
campaign's success test to every evaluation and stops there, as ``pesflow bench`` does:
on LJ the basin test (a copy of pesflow's numpy LJ + scipy L-BFGS relaxation), on the
surface the energy criterion against the reference pesflow's campaign chose.
``--run-to-budget`` turns that off.
``agox_compare.py`` re-judges every frame with pesflow's own code.

Ray stays off: AGOX's Ray pool is replaced by an in-process pool with the same interface
(tasks run one after another, each on its own seeded global RNG as on a Ray actor), so a
repeat uses one core (BLAS on one thread as well).

Resumable: finished repeats are skipped. An unfinished GOFEE repeat goes on from its
last finished iteration (``resume.json``, below); an unfinished REX repeat, whose walkers
live only in memory, is started again from scratch. ``--judged DIR`` (agox_compare.py's
``judged/``, which is in git) also skips the repeats judged there, so a campaign spread
over machines whose ``--out`` did not survive goes on where it was. Exit status: 0 done,
1 some repeat raised (its record says why; a rerun retries it), 2 bad input (nothing
written).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per repeat, as pesflow's workers

import argparse  # noqa: E402
import atexit  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import fcntl  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RECORD = "record.json"
FRAMES = "evaluations.extxyz"
LOG = "agox.log"
CHECKPOINT = "resume.json"
DATABASE = "db-agox.db"  # AGOX's name for run id "agox"
RECORD_FORMAT = "agox-side-repeat"
#: Files a repeat directory of this runner may hold (an unfinished one is cleared).
OWN_FILES = {RECORD, FRAMES, LOG, CHECKPOINT}
OWN_PREFIXES = (DATABASE, "confinement_plot_")  # AGOX's database (+ journal), plots

# ------------------------------------------------------------------ the stand-in suite
# Every number below is pesflow's; the comment names where it is defined.

#: LJ oracle: pesflow/models/registry.py LJ_DEFAULTS (ε = 1 eV, σ = 2.5 Å, r_c = 20σ).
LJ = {"sigma": 2.5, "epsilon": 1.0, "rc": 50.0}
#: Morse prior: registry.py MORSE_DEFAULTS (minimum at 2^(1/6)σ); ρ0 from --prior-rho0.
MORSE_EPSILON, MORSE_R0 = 1.0, 2 ** (1 / 6) * 2.5
#: LJ problems and success: benchmarks/campaign/standins.yaml (basin test, threshold 1e-3;
#: BasinSuccess defaults fmax 1e-3, steps 5000 in pesflow/workflows/bench.py).
LJ_PROBLEMS = {"LJ26": (26, -108.315616), "LJ38": (38, -173.928427)}
BASIN = {"threshold": 1e-3, "fmax": 1e-3, "steps": 5000}
#: Surface stand-in: benchmarks/campaign/surface-standin.yaml. The slab is pesflow's
#: emt_surface("Au4") (pesflow/structures/problem.py ag111_sqrt7: a = 4.09 Å, 3 layers,
#: lowest layer 3 Å above the cell face, confinement 4 Å above the top layer, 10 Å vacuum).
SURFACE = {"name": "Au4-Ag111", "adsorbates": "Au4", "layers": 3, "a": 4.09,
           "face_gap": 3.0, "height": 4.0, "vacuum": 10.0}
#: Its prior, Δ-model and GOFEE settings (campaign priors, model_settings, algorithms).
SURFACE_PRIOR = {"rho0": 4.0, "epsilon": 0.4, "r0": 2.8}
SURFACE_MODEL = {"n_inducing": 500}
SURFACE_GOFEE = {"n_candidates": 5, "n_walkers": 5, "steps": 60}
#: Energy criterion: within 0.05 eV of the reference (surface-standin/results.json:
#: the best of pesflow's 90 repeats relaxed in EMT).
SURFACE_SUCCESS = {"criterion": "energy", "energy": 4.52896153805983, "threshold": 0.05}
PROBLEMS = [*LJ_PROBLEMS, SURFACE["name"]]
SUCCESS_REASONS = ("basin reached", "energy reached")
#: Element of the stand-in: pesflow/structures/problem.py LJ_STANDIN_SYMBOL.
SYMBOL = "Cu"
#: Surrogate relaxation threshold: Problem.fmax default (pesflow/structures/problem.py).
FMAX = 0.05
#: Δ-model: pesflow/models/delta.py DeltaSettings (+ campaign model_settings n_inducing).
MODEL = {"r_cut": 7.0, "n_max": 3, "l_max": 2, "soap_sigma": 1.0, "amplitude": 1.0,
         "length_scale": 40.0, "noise": 0.01, "n_inducing": 1000, "ensemble_size": 10,
         "sigma_prior": 0.001, "sigma_label": 0.025, "jitter": 1e-8}
#: REX: pesflow/search/rex.py REXSettings defaults with the campaign's settings.
REX = {"n_walkers": 10, "kT_min": 0.1, "kT_max": 1.0, "amplitude_min": 0.1,
       "amplitude_max": 5.0, "steps": 30, "swap_interval": 5, "oracle_interval": 5,
       "oracle_count": 5, "oracle_from": 9}
#: GOFEE: pesflow/search/gofee.py GOFEESettings defaults.
GOFEE = {"n_candidates": 10, "n_walkers": 10, "kappa": 2.0, "steps": 100, "oracle_steps": 1,
         "amplitude": 3.0, "rattle_fraction": 1.0, "random_iterations": 1,
         "random_fraction": 0.0, "energy_window": 5.0}
ALGORITHMS = {"rex": "AGOX-REX", "gofee": "AGOX-GOFEE"}


class InputError(Exception):
    """Bad input: one line saying what, where and how to fix it (exit status 2)."""


class Stop(BaseException):  # not an Exception: AGOX's evaluators catch those
    """Ends a repeat from inside the oracle (budget spent or basin reached)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_surface(problem: str) -> bool:
    return problem == SURFACE["name"]


def confinement(n: int) -> tuple[float, float]:
    """Cell edge and confinement cube edge of pesflow's ``lj_cluster(n)``."""
    side = round(1.5 * 2 ** (1 / 6) * LJ["sigma"] * n ** (1 / 3), 1)
    return side + 10.0, side


def surface_slab():
    """pesflow's ``emt_surface("Au4")`` slab, confinement cell and corner, rebuilt with
    ASE (tests/test_bench.py checks they are pesflow's)."""
    from ase.build import fcc111, make_supercell

    s = SURFACE
    slab = fcc111("Ag", size=(1, 1, s["layers"]), a=s["a"], vacuum=0.0, orthogonal=False)
    slab.positions[:, 2] -= slab.positions[:, 2].min() - s["face_gap"]
    slab = make_supercell(slab, np.array([[2, 1, 0], [-1, 3, 0], [0, 0, 1]]))  # √7 × √7
    slab.wrap()
    z_top = slab.positions[:, 2].max()
    slab.cell[2] = [0.0, 0.0, z_top + s["height"] + s["vacuum"]]
    slab.pbc = (True, True, False)
    cell = slab.cell.array
    return slab, np.array([cell[0], cell[1], [0.0, 0.0, s["height"]]]), np.array([0, 0, z_top])


def problem_setup(problem: str):
    """Template, symbols to place, confinement cell and corner of ``problem``."""
    from ase import Atoms

    if is_surface(problem):
        slab, cell, corner = surface_slab()
        return slab, SURFACE["adsorbates"], cell, corner
    n = LJ_PROBLEMS[problem][0]
    box, side = confinement(n)
    return (Atoms(cell=[box] * 3, pbc=False), f"{SYMBOL}{n}", np.eye(3) * side,
            np.full(3, (box - side) / 2))


def algorithm_settings(algorithm: str, problem: str) -> dict:
    if algorithm == "rex":
        return dict(REX)
    return {**GOFEE, **(SURFACE_GOFEE if is_surface(problem) else {})}


def model_settings(problem: str) -> dict:
    return {**MODEL, **(SURFACE_MODEL if is_surface(problem) else {})}


def success_test(problem: str):
    """``(test, stop reason)``; ``test(atoms, energy)`` -> (success, basin energy or None)."""
    if is_surface(problem):
        s = SURFACE_SUCCESS
        return (lambda atoms, energy: (energy <= s["energy"] + s["threshold"], None),
                "energy reached")
    e_min = LJ_PROBLEMS[problem][1]

    def basin_test(atoms, energy: float) -> tuple[bool, float]:
        basin = lj_local_minimum(atoms.positions, LJ["sigma"], LJ["epsilon"], LJ["rc"],
                                 BASIN["fmax"], BASIN["steps"])
        return abs(basin - e_min) <= BASIN["threshold"], basin

    return basin_test, "basin reached"


# ------------------------------------------------------------- basin test (pesflow's copy)
# Copied from pesflow/workflows/bench.py (lj_energy_gradient, lj_local_minimum) so that a
# repeat can stop at its first success as in `pesflow bench`; keep the two identical.


def lj_energy_gradient(x: np.ndarray, n: int, sigma: float, epsilon: float,
                       rc: float) -> tuple[float, np.ndarray]:
    """Energy and gradient of ASE's LennardJones (non-periodic, not smooth)."""
    p = x.reshape(n, 3)
    d = p[:, None, :] - p[None, :, :]
    r2 = np.einsum("ijk,ijk->ij", d, d)
    np.fill_diagonal(r2, np.inf)
    inside = r2 < rc * rc
    s6 = np.where(inside, (sigma * sigma / r2) ** 3, 0.0)
    e0 = 4 * epsilon * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    energy = 0.5 * float(np.sum(np.where(inside, 4 * epsilon * (s6 * s6 - s6) - e0, 0.0)))
    de_dr2 = np.where(inside, 4 * epsilon * (3 * s6 - 6 * s6 * s6) / r2, 0.0)
    gradient = 2 * np.einsum("ij,ijk->ik", de_dr2, d)
    return energy, gradient.ravel()


def lj_local_minimum(positions: np.ndarray, sigma: float, epsilon: float, rc: float,
                     fmax: float = 1e-3, steps: int = 5000) -> float:
    """Energy after a local L-BFGS relaxation on the Lennard-Jones potential (numpy)."""
    from scipy.optimize import minimize

    n = len(positions)
    result = minimize(lj_energy_gradient, np.asarray(positions).ravel(),
                      args=(n, sigma, epsilon, rc), jac=True, method="L-BFGS-B",
                      options={"maxiter": steps, "gtol": fmax / 10, "ftol": 1e-15,
                               "maxcor": 20})
    return float(result.fun)


# ------------------------------------------------------------------------ Ray kept off


class SerialPool:
    """In-process stand-in for AGOX's Ray ``Pool`` (agox/utils/ray/pool.py).

    Modules stay the live objects (nothing to synchronise); ``map`` runs the tasks one
    after another. As ``Pool.map`` does, each task gets a seed drawn from the global
    NumPy RNG and runs on a global RNG seeded with it (a Ray actor's); the caller's RNG
    state is restored afterwards, so the main stream advances exactly as with Ray.
    """

    def __init__(self) -> None:
        self.modules: dict = {}
        self.attached_handlers: list = []

    def get_key(self, module):
        return module.ray_key

    def add_module(self, module):
        self.modules[module.ray_key] = module
        return module.ray_key

    def remove_module(self, module) -> None:
        self.modules.pop(module.ray_key, None)

    def map(self, functions, module_keys, args_fn, kwargs_fn) -> list:
        if not isinstance(functions, list):
            functions = [functions] * len(module_keys)
        seeds = [np.random.randint(0, 10e6, size=1) for _ in functions]  # noqa: NPY002
        results = []
        for fn, keys, args, kwargs, seed in zip(functions, module_keys, args_fn, kwargs_fn,
                                                seeds, strict=True):
            outer = np.random.get_state()  # noqa: NPY002
            np.random.seed(seed)  # noqa: NPY002
            try:
                results.append(fn(*[self.modules[k] for k in keys], *args, **kwargs))
            finally:
                np.random.set_state(outer)  # noqa: NPY002
        return results

    def task_map(self, tasks) -> list:
        return self.map([t.function for t in tasks], [t.modules for t in tasks],
                        [t.args for t in tasks], [t.kwargs for t in tasks])

    def execute_on_actors(self, fn, module_key, args, kwargs) -> list:
        return [fn(*[self.modules[k] for k in module_key], *args, **kwargs)]

    def get_module_attributes(self, module, attributes) -> list[dict]:
        return [{a: module.__dict__.get(a) for a in attributes}]

    def set_module_attributes(self, module, attributes, values) -> None:
        for attribute, value in zip(attributes, values, strict=True):
            module.__dict__[attribute] = value

    # Observer plumbing of the Ray pool: nothing to do in one process.
    def attach(self, handler) -> None:
        pass

    def print_modules(self) -> None:
        pass

    def update_module_interconnections(self) -> None:
        pass

    def update_modules(self) -> None:
        pass

    def synchronize_module(self, module, attributes="all", writer=None, verbose=True) -> dict:
        return {}


class _NoRay:
    """What AGOX's collectors call on ``ray`` (``ray.put``): the object itself."""

    @staticmethod
    def put(value):
        return value


_POOL: list[SerialPool] = []


def keep_ray_off() -> None:
    """Route every AGOX Ray use in the modules used here to :class:`SerialPool`."""
    import agox.collectors.ray_collector as ray_collector
    import agox.collectors.replica_exchange as rex_collector
    import agox.utils.ray as agox_ray
    import agox.utils.ray.pool_user as pool_user
    import ray

    def pool(**_):
        return _POOL[-1], {"CPU": 1.0}

    pool_user.get_ray_pool = pool  # RayPoolUser.__init__ (GPR, collectors, relaxer)
    agox_ray.ray_startup = lambda **_: {"CPU": 1.0}  # ParallelAlgorithm.__init__
    rex_collector.ray = ray_collector.ray = _NoRay

    def refuse(*_, **__):
        raise RuntimeError("agox_runner keeps Ray off, but something called ray.init")

    ray.init = refuse


# ---------------------------------------------------------------------- oracle + clock


class Clock:
    """Wall and process-CPU seconds since the repeat started, success checks excluded;
    a resumed repeat's clock starts at its resume point's figures."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0, excluded_wall: float = 0.0,
                 excluded_cpu: float = 0.0) -> None:
        self.wall0 = time.perf_counter() - wall - excluded_wall
        self.cpu0 = time.process_time() - cpu - excluded_cpu
        self.excluded_wall, self.excluded_cpu = excluded_wall, excluded_cpu

    def state(self) -> dict:
        """What :class:`Clock` takes to go on from now."""
        return {"wall": self.wall(), "cpu": self.cpu(), "excluded_wall": self.excluded_wall,
                "excluded_cpu": self.excluded_cpu}

    def wall(self) -> float:
        return time.perf_counter() - self.wall0 - self.excluded_wall

    def cpu(self) -> float:
        return time.process_time() - self.cpu0 - self.excluded_cpu

    @contextlib.contextmanager
    def excluded(self):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.excluded_wall += time.perf_counter() - wall
            self.excluded_cpu += time.process_time() - cpu


def extxyz_frame(atoms, energy: float, forces: np.ndarray, info: dict) -> str:
    """One extended-XYZ frame with every float at full precision (repr): ASE's writer
    rounds positions to 1e-8 Å, and a basin test from far above a minimum can end in
    another minimum after such a change, so the frame must be the evaluated structure."""
    cell = " ".join(repr(float(x)) for x in atoms.cell.array.ravel())
    pbc = " ".join("T" if p else "F" for p in atoms.pbc)
    extra = " ".join(f"{key}={int(value) if isinstance(value, int) else float(value)!r}"
                     for key, value in info.items())
    lines = [str(len(atoms)),
             f'Lattice="{cell}" Properties=species:S:1:pos:R:3:forces:R:3 '
             f'energy={energy!r} {extra} pbc="{pbc}"']
    for symbol, position, force in zip(atoms.get_chemical_symbols(), atoms.positions,
                                       forces, strict=True):
        lines.append(" ".join([symbol, *(repr(float(x)) for x in (*position, *force))]))
    return "\n".join(lines) + "\n"


class Journal:
    """Writes every oracle call as a frame, judges it and ends the repeat when due."""

    def __init__(self, path: Path, budget: int, test, reason: str, early_stop: bool) -> None:
        self.path, self.budget, self.early_stop = path, budget, early_stop
        self.test, self.reason = test, reason  # success_test(problem)
        self.clock = Clock()
        self.calls = 0
        self.best: float | None = None
        self.best_basin: float | None = None
        self.success: dict | None = None

    def state(self) -> dict:
        """What :meth:`go_on_from` takes to go on after the last recorded call."""
        return {"calls": self.calls, "best": self.best, "best_basin": self.best_basin,
                "success": self.success, "clock": self.clock.state(),
                "frames_bytes": self.path.stat().st_size if self.path.exists() else 0}

    def go_on_from(self, state: dict) -> None:
        """Take up ``state`` (clock aside: the caller starts it), dropping frames written
        after it."""
        with self.path.open("r+b") as handle:
            handle.truncate(state["frames_bytes"])
        self.calls, self.best, self.best_basin, self.success = (
            state["calls"], state["best"], state["best_basin"], state["success"])

    def before_call(self) -> None:
        if self.calls >= self.budget:  # never reached: the last budgeted call stops first
            raise Stop("budget")

    def record(self, atoms, energy: float, forces: np.ndarray) -> None:
        self.calls += 1
        wall, cpu = self.clock.wall(), self.clock.cpu()
        with self.clock.excluded():  # success checks and writing are not search time
            hit, basin = self.test(atoms, float(energy))
            info = {"call": self.calls, "wall_time": wall, "cpu_time": cpu}
            if basin is not None:
                info["basin_energy"] = basin
                self.best_basin = basin if self.best_basin is None else min(self.best_basin,
                                                                            basin)
            with self.path.open("a") as handle:
                handle.write(extxyz_frame(atoms, float(energy), np.asarray(forces), info))
            self.best = energy if self.best is None else min(self.best, energy)
            if hit and self.success is None:
                self.success = {"call": self.calls, "wall_time": wall, "cpu_time": cpu,
                                "energy": float(energy), "basin_energy": basin}
        if hit and self.early_stop:
            raise Stop(self.reason)
        if self.calls >= self.budget:
            raise Stop("budget")


def counting_oracle(journal: Journal, problem: str):
    """pesflow's oracle (``lj``: ASE LennardJones; ``emt`` on the surface) that reports
    every call to ``journal``."""
    from ase.calculators.calculator import all_changes
    from ase.calculators.emt import EMT
    from ase.calculators.lj import LennardJones

    base, parameters = (EMT, {}) if is_surface(problem) else (LennardJones, LJ)

    class Oracle(base):
        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            journal.before_call()
            super().calculate(atoms, properties, system_changes)  # energy and forces at once
            journal.record(self.atoms, float(self.results["energy"]), self.results["forces"])

    return Oracle(**parameters)


# ----------------------------------------------------------------------- AGOX searches


def _model(environment, database, problem: str, prior: dict):
    """The Δ-model: AGOX SparseGPR ensemble on SOAP with the Morse prior, pesflow's settings
    (``prior``: MorsePotential's parameters)."""
    from agox.models.ase_model import CalculatorModel
    from agox.models.descriptors import SOAP
    from agox.models.GPR.kernels import RBF
    from agox.models.GPR.kernels import Constant as C
    from agox.models.GPR.sGPR_ensemble import SparseGPREnsemble
    from agox.utils.sparsifiers import CUR
    from ase.calculators.morse import MorsePotential

    m = model_settings(problem)
    # unweighted SOAP as pesflow's, periodic only on the slab (AGOX's config default is
    # weighted, periodic; as in benchmarks/delta_model/agox_side.py)
    descriptor = SOAP.from_species(species=environment.get_all_species(), r_cut=m["r_cut"],
                                   nmax=m["n_max"], lmax=m["l_max"], sigma=m["soap_sigma"],
                                   weight=False, periodic=is_surface(problem))
    kernel = C(m["amplitude"], "fixed") * RBF(m["length_scale"], "fixed")
    prior = CalculatorModel(calculator=MorsePotential(**prior),
                            composition_model=False)  # zero anyway: a prior is never trained
    return SparseGPREnsemble(
        N_ensemble=m["ensemble_size"], target_noise=m["sigma_label"],
        prior_noise=m["sigma_prior"], database=database, kernel=kernel, descriptor=descriptor,
        prior=prior, n_optimize=0, sparsifier=CUR(m["n_inducing"]), sigma=m["noise"],
        jitter=m["jitter"], centralize=True, use_ray=False,
    )


@functools.cache
def search_classes() -> dict[str, type]:
    """AGOX's ReplicaExchange and GOFEE with the Δ-model above (defined once: AGOX
    registers every Algorithm subclass under its KIND)."""
    from agox.algorithms import GOFEE as AgoxGOFEE
    from agox.algorithms import ReplicaExchange as AgoxREX

    class Side:
        problem: str = ""  # both set per instance by make_search
        prior: dict | None = None  # MorsePotential's parameters

        def _make_model(self, cfg):  # instead of AGOX's model factory
            return _model(self.get_environment(), self.get_database(), self.problem,
                          self.prior)

    class REXSearch(Side, AgoxREX):
        KIND = "agox_runner_rex"

        def _setup_modules(self):
            from agox.collectors import ReplicaExchangeCollector
            from agox.samplers import ReplicaExchangeSampler

            modules = super()._setup_modules()
            for module in modules:
                if isinstance(module, ReplicaExchangeSampler):
                    module.swap = module.swap_down  # from the hottest pair down, as pesflow
                if isinstance(module, ReplicaExchangeCollector):
                    # amplitudes adapt toward 50 % acceptance (last 10 tests, ×0.99 / ×1.01),
                    # clamped to the initial range: AGOX's own mechanism, as in its REX run
                    # scripts (its config path leaves it out)
                    for i in range(REX["n_walkers"] - 1):
                        module.add_generator_update(i, "rattle_amplitude",
                                                    min_val=REX["amplitude_min"],
                                                    max_val=REX["amplitude_max"])
            return modules

    class GOFEESearch(Side, AgoxGOFEE):
        KIND = "agox_runner_gofee"

    return {"rex": REXSearch, "gofee": GOFEESearch}


def make_search(algorithm: str, problem: str, oracle, seed: int, prior: dict):
    """AGOX's own ReplicaExchange or GOFEE algorithm object with pesflow's settings
    (``prior``: MorsePotential's parameters)."""
    from agox.algorithms import GOFEEConfig, ProblemConfig, ReplicaExchangeConfig, RunConfig
    from agox.algorithms.config import (
        KMeansConfig,
        LCBConfig,
        LocalOptConfig,
        ParallelCollectorConfig,
        ParallelRelaxerConfig,
        RandomGeneratorConfig,
        RattleGeneratorConfig,
        ReplicaExchangeAcquisitorConfig,
        ReplicaExchangeRattleRandomCollectorConfig,
        ReplicaExchangeSamplerConfig,
        SinglePointEvaluatorConfig,
    )
    from ase.symbols import string2symbols

    template, symbols, cell, corner = problem_setup(problem)
    # the template stays fixed (fix_template); the confinement is periodic where it
    # spans the cell (AGOX's box_constraint_pbc), as pesflow's
    problem_cfg = ProblemConfig(template=template, symbols=symbols, calculator=oracle,
                                confinement_cell=cell, confinement_corner=corner,
                                fix_template=True)
    run_cfg = RunConfig(seed=seed, id_str="agox")
    s = algorithm_settings(algorithm, problem)
    n = len(string2symbols(symbols))  # atoms placed (GOFEE rattles all of them)
    if algorithm == "rex":
        config = ReplicaExchangeConfig(
            sampler=ReplicaExchangeSamplerConfig(temperature_range=[s["kT_min"], s["kT_max"]],
                                                 swap_interval=s["swap_interval"],
                                                 n_walkers=s["n_walkers"]),
            collector=ReplicaExchangeRattleRandomCollectorConfig(
                min_amplitude=s["amplitude_min"], max_amplitude=s["amplitude_max"]),
            acquisitor=ReplicaExchangeAcquisitorConfig(dft_interval=s["oracle_interval"]),
            evaluator=SinglePointEvaluatorConfig(number_to_evaluate=s["oracle_count"]),
            relaxer=ParallelRelaxerConfig(start_relax=0, max_steps=s["steps"], fmax=FMAX),
        )
    else:
        config = GOFEEConfig(
            evaluator=LocalOptConfig(max_steps=s["oracle_steps"], fmax=FMAX,
                                     store_trajectory=True),
            # AGOX's default start_relax=2: its LCB calculator needs a trained model, so
            # the first iteration's random candidates go to the oracle unrelaxed
            relaxer=ParallelRelaxerConfig(start_relax=2, max_steps=s["steps"], fmax=FMAX),
            sampler=KMeansConfig(n_samples=s["n_walkers"], max_energy=s["energy_window"]),
            acquisitor=LCBConfig(kappa=s["kappa"]),
            collector=ParallelCollectorConfig(
                generators=[RandomGeneratorConfig(),
                            RattleGeneratorConfig(n_rattle=round(n * s["rattle_fraction"]),
                                                  rattle_amplitude=s["amplitude"])],
                candidates=s["n_candidates"], strict_candidates=True,
                # AGOX counts iterations from 1: random only in the first random_iterations
                generator_fractions={0: [1, 0], 1 + s["random_iterations"]: [
                    s["random_fraction"], 1 - s["random_fraction"]]}),
        )
    search = search_classes()[algorithm](config, problem_cfg, run_cfg)
    search.problem, search.prior = problem, prior
    return search


# ------------------------------------------------------------------------ GOFEE resume


class ResumeError(Exception):
    """A resume point that does not fit the repeat's files: the repeat starts again."""


def rng_to_json(state: tuple) -> list:
    name, keys, position, has_gauss, cached = state
    return [name, keys.tolist(), int(position), int(has_gauss), float(cached)]


def rng_from_json(data: list) -> tuple:
    name, keys, position, has_gauss, cached = data
    return name, np.array(keys, dtype=np.uint32), position, has_gauss, cached


def rng_fingerprint(state: tuple) -> str:
    return hashlib.sha256(json.dumps(rng_to_json(state)).encode()).hexdigest()


def database_rows(filename: Path) -> list[int]:
    """Row ids of AGOX's ``structures`` table, in order (a torn write is rolled back by
    SQLite on connecting)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(filename)) as con:
        return [row[0] for row in con.execute("SELECT id FROM structures ORDER BY id")]


def drop_database_rows_after(filename: Path, rows: int) -> None:
    """Delete every structure after the first ``rows`` and its key-value rows."""
    import sqlite3

    ids = database_rows(filename)
    if len(ids) == rows:
        return
    last = ids[rows - 1] if rows else 0
    with contextlib.closing(sqlite3.connect(filename)) as con:
        tables = [name for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%key_values'")]
        for table in ["structures", *tables]:
            con.execute(f"DELETE FROM {table} WHERE id > ?", (last,))
        con.commit()


def resume_point(path: Path) -> dict:
    """The repeat's resume point, checked against its frames and database; raises
    ResumeError (and changes nothing) where they do not fit."""
    try:
        point = json.loads((path / CHECKPOINT).read_text())
        frames_bytes, rows = point["journal"]["frames_bytes"], point["database_rows"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ResumeError(f"{CHECKPOINT} cannot be read ({error})") from None
    frames = path / FRAMES
    if not frames.exists() or frames.stat().st_size < frames_bytes:
        raise ResumeError(f"{FRAMES} is shorter than at the resume point")
    import sqlite3

    if not (path / DATABASE).exists():  # (connecting would make an empty one)
        raise ResumeError(f"{DATABASE} is missing")
    try:
        have = len(database_rows(path / DATABASE))
    except sqlite3.Error as error:
        raise ResumeError(f"{DATABASE} cannot be read ({error})") from None
    if have < rows:
        raise ResumeError(f"{DATABASE} has {have} rows, the resume point {rows}")
    return point


class ResumePoints:
    """Writes the resume point after every GOFEE iteration whose new candidates trained
    the model: the database then dispatches to the model and the sampler, which draw from
    the global RNG, so the RNG state just before that dispatch is what a resume needs."""

    def __init__(self, path: Path, journal: Journal, database) -> None:
        self.path, self.journal = path, journal
        self.before_training: tuple | None = None
        dispatch = database.dispatch_to_observers

        def dispatch_noted(*args, **kwargs):
            self.before_training = (np.random.get_state(), len(database),  # noqa: NPY002
                                    len(database_rows(Path(database.filename))))
            dispatch(*args, **kwargs)

        database.dispatch_to_observers = dispatch_noted

    def after_iteration(self, iteration: int) -> None:
        if self.before_training is None:
            return  # nothing trained in this iteration: the last resume point holds
        rng, candidates, rows = self.before_training
        self.before_training = None
        write_json(self.path, {
            "iteration": iteration, "candidates": candidates, "database_rows": rows,
            "rng_before_training": rng_to_json(rng),
            "rng_after": rng_fingerprint(np.random.get_state()),  # noqa: NPY002
            "journal": self.journal.state()})


def retrain_as_at(database, point: dict) -> bool:
    """Reload AGOX's database and let it train the model and sampler as at the end of the
    resume point's iteration; returns whether the RNG then stands where it stood."""
    from agox.main.state import State

    database.restore_to_memory()
    if len(database) != point["candidates"]:
        raise ResumeError(f"{DATABASE} gave {len(database)} candidates back, the resume "
                          f"point has {point['candidates']}")
    state = State()
    state.set_iteration_counter(point["iteration"])
    database.set_iteration_counter(point["iteration"])
    np.random.set_state(rng_from_json(point["rng_before_training"]))  # noqa: NPY002
    database.dispatch_to_observers(database=database, state=state)
    return rng_fingerprint(np.random.get_state()) == point["rng_after"]  # noqa: NPY002


def drive(agox, first: int, last: int, after_iteration) -> None:
    """AGOX.run's main loop, from iteration ``first`` (AGOX.run always starts at 1),
    calling ``after_iteration(iteration)`` at the end of each."""
    from agox.main.state import State

    state = State()
    state.set_iteration_counter(first)
    atexit.register(agox.on_failure)
    agox.writer.write_header("AGOX run started" if first == 1 else
                             f"AGOX run resumed at iteration {first}")
    while state.get_iteration_counter() <= last and not state.get_convergence_status():
        agox.print_iteration_header(state)
        agox.dispatch_to_observers(state=state)
        agox.print_timings(state)
        state.clear()
        after_iteration(state.get_iteration_counter())
        state.advance_iteration_counter()
        agox.writer.write_header("Iteration finished")
    for method in agox.get_finalization_methods():
        method()


def settings_record(algorithm: str, problem: str, rho0: float | None) -> dict:
    """What the repeat ran with (compared on a rerun; only the budget may change)."""
    common = {"algorithm": algorithm_settings(algorithm, problem), "surrogate_fmax": FMAX,
              "model": model_settings(problem)}
    if is_surface(problem):
        return {**common, "prior": {"kind": "morse", **SURFACE_PRIOR},
                "oracle": {"kind": "emt"}, "success": dict(SURFACE_SUCCESS),
                "problem": dict(SURFACE)}
    return {**common,
            "prior": {"kind": "morse", "epsilon": MORSE_EPSILON, "r0": MORSE_R0, "rho0": rho0},
            "oracle": {"kind": "lj", **LJ}, "basin": dict(BASIN)}


# ---------------------------------------------------------------------------- repeats


def read_record(path: Path) -> dict | None:
    try:
        record = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        handle.write(json.dumps(data, indent=1))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


#: What a resumed repeat must share with the one asked for.
SAME_REPEAT = ("problem", "algorithm", "seed", "settings", "budget", "early_stop")


def repeat_status(path: Path, wanted: dict) -> str:
    """``new``, ``done``, ``resume`` (an unfinished GOFEE repeat with a resume point) or
    ``redo`` (unfinished: cleared and run again); raises InputError for a directory that
    is not this runner's or that ran other settings."""
    if not path.exists():
        return "new"
    if not path.is_dir():
        raise InputError(f"{path} exists and is not a directory; remove it or use another --out")
    foreign = sorted(p.name for p in path.iterdir() if p.name not in OWN_FILES
                     and not p.name.endswith(".tmp") and not p.name.startswith(OWN_PREFIXES))
    if foreign:
        raise InputError(f"{path} holds {foreign[0]}, which agox_runner does not write; "
                         "remove it or use another --out")
    record = read_record(path)
    if record is None or not record.get("finished"):
        if record is not None and record.get("engine") == "gofee" \
                and (path / CHECKPOINT).exists() \
                and all(record.get(key) == wanted[key] for key in SAME_REPEAT):
            return "resume"
        return "redo"
    for key in ("problem", "algorithm", "seed", "settings"):
        if record.get(key) != wanted[key]:
            raise InputError(
                f"{path} was run with another {key} ({record.get(key)!r}; asked now: "
                f"{wanted[key]!r}); use another --out, or remove that directory to run it again")
    if record["budget"] == wanted["budget"]:
        return "done"
    success = record.get("success")
    if record.get("stop_reason") in SUCCESS_REASONS and success \
            and success["call"] <= wanted["budget"]["oracle_calls"]:
        return "done"  # it stopped at a success that lies within the new budget
    raise InputError(f"{path} ran with budget {record['budget']} and ended "
                     f"({record.get('stop_reason')}); AGOX cannot extend a run: use another "
                     "--out, or remove that directory to run it again")


@contextlib.contextmanager
def stdout_to(path: Path):
    """Send file descriptor 1 (AGOX's printing) to ``path`` for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    with path.open("a") as handle:
        os.dup2(handle.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def run_repeat(path: Path, base: dict, early_stop: bool, resume: bool = False) -> dict:
    """Run one repeat into ``path``: afresh (``path`` cleared first) or, with ``resume``,
    a GOFEE repeat from its resume point (afresh where that point does not fit the
    files); returns its record."""
    problem, algorithm, seed = base["problem"], base["engine"], base["seed"]
    budget = base["budget"]["oracle_calls"]
    point, refused = None, None
    if resume:
        try:
            point = resume_point(path)
        except ResumeError as error:
            refused = str(error)
    if point is None:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        record = {**base, "finished": False, "error": None, "started": _now(), "sittings": []}
    else:
        drop_database_rows_after(path / DATABASE, point["database_rows"])
        record = {**read_record(path), "error": None, "versions": base["versions"]}
        record.pop("traceback", None)  # of an earlier sitting that raised
        record.setdefault("sittings", [])
    sitting = {"started": _now(), "from_call": point["journal"]["calls"] if point else 0,
               "versions": base["versions"]}  # a resume under other libraries shows here
    if point is not None:
        sitting["from_iteration"] = point["iteration"]
    if refused is not None:
        sitting["resume_refused"] = refused
    record["sittings"].append(sitting)
    write_json(path / RECORD, record)
    journal = Journal(path / FRAMES, budget, *success_test(problem), early_stop)
    if point is not None:
        journal.go_on_from(point["journal"])
    oracle = counting_oracle(journal, problem)
    _POOL.append(SerialPool())  # a fresh pool: no modules of an earlier repeat
    reason = None
    agox = None
    # iteration cap: 10× what the budget needs (REX: oracle_interval per oracle_count
    # calls; GOFEE: 2 calls per iteration), against a loop that stops calling the oracle
    per_call = REX["oracle_interval"] / REX["oracle_count"] if algorithm == "rex" else 0.5
    cap = int(10 * budget * per_call) + 50
    try:
        with contextlib.chdir(path), stdout_to(path / LOG):
            np.random.seed(seed)  # noqa: NPY002  (AGOX draws from the global RNG)
            prior = {k: v for k, v in base["settings"]["prior"].items() if k != "kind"}
            search = make_search(algorithm, problem, oracle, seed, prior)
            # search time starts with building the modules (a resume's retraining counts)
            journal.clock = Clock(**point["journal"]["clock"]) if point else Clock()
            agox = search._make_agox()
            try:
                if algorithm == "gofee":
                    database = search.get_database()
                    first = 1
                    if point is not None:
                        sitting["exact"] = retrain_as_at(database, point)
                        write_json(path / RECORD, record)
                        first = point["iteration"] + 1
                    points = ResumePoints(path / CHECKPOINT, journal, database)
                    drive(agox, first, cap, points.after_iteration)
                else:
                    agox.run(N_iterations=cap)
                reason = "iteration cap"
            except Stop as stop:
                reason = stop.reason
            finally:
                atexit.unregister(agox.on_failure)
    except Exception as error:  # recorded; the other repeats go on
        record.update(error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(), oracle_calls=journal.calls)
        write_json(path / RECORD, record)
        return record
    import ray

    record.update(
        finished=True, stop_reason=reason, oracle_calls=journal.calls,
        wall_time=journal.clock.wall(), cpu_time=journal.clock.cpu(),
        check_seconds=journal.clock.excluded_wall, success=journal.success,
        best_energy=journal.best, best_basin_energy=journal.best_basin,
        ray_initialized=bool(ray.is_initialized()), ended=_now(),
    )
    write_json(path / RECORD, record)
    return record


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="agox_runner.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", required=True, choices=PROBLEMS)
    parser.add_argument("--algorithm", required=True, choices=sorted(ALGORITHMS))
    parser.add_argument("--prior-rho0", type=float, default=None,
                        help="ρ0 of the Morse prior on LJ (campaign: 6, the default, and 3); "
                        "the surface's prior is its campaign's")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1,
                        help="repeat r runs with seed first-seed + r (campaign: seed 1)")
    parser.add_argument("--budget", type=int, required=True, help="oracle calls per repeat")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parallel", type=int, default=1,
                        help="repeats run at once, each in a fresh process on one core")
    parser.add_argument("--run-to-budget", action="store_true",
                        help="do not stop a repeat at its first basin success")
    parser.add_argument("--judged", type=Path, default=None, metavar="DIR",
                        help="agox_compare.py's judged/ directory (e.g. benchmarks/campaign/"
                        "agox/judged): repeats judged there, run on another machine, are "
                        "skipped")
    args = parser.parse_args(argv)
    for name, low in (("repeats", 1), ("budget", 1), ("first_seed", 0), ("parallel", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be at least {low}, "
                         f"got {getattr(args, name)}")
    if is_surface(args.problem):
        if args.prior_rho0 is not None:
            parser.error(f"--prior-rho0: {args.problem} runs its campaign's prior (morse:"
                         + ",".join(f"{k}={v:g}" for k, v in SURFACE_PRIOR.items())
                         + "); leave --prior-rho0 out")
    elif args.prior_rho0 is None:
        args.prior_rho0 = 6.0
    elif not args.prior_rho0 > 0:
        parser.error(f"--prior-rho0 must be > 0, got {args.prior_rho0}")
    return args


def plan(args: argparse.Namespace) -> list[tuple[Path, dict, str]]:
    """Every repeat with its record base and status; raises InputError before writing."""
    out = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {probe} is not writable; choose another --out")
    if is_surface(args.problem):  # pesflow's prior name and spec in surface-standin.yaml
        prior = "morse"
        prior_spec = "morse:" + ",".join(f"{k}={v:g}" for k, v in SURFACE_PRIOR.items())
    else:
        prior, prior_spec = f"morse{args.prior_rho0:g}", f"morse:rho0={args.prior_rho0:g}"
    cell = out / args.problem / ALGORITHMS[args.algorithm] / prior
    repeats = []
    for r in range(args.repeats):
        base = {
            "format": RECORD_FORMAT, "version": 1, "problem": args.problem,
            "algorithm": ALGORITHMS[args.algorithm], "engine": args.algorithm, "prior": prior,
            "prior_spec": prior_spec, "delta_model": True, "repeat": r,
            "seed": args.first_seed + r, "budget": {"oracle_calls": args.budget},
            "settings": settings_record(args.algorithm, args.problem, args.prior_rho0),
            "early_stop": not args.run_to_budget, "cores": 1,
        }
        path = cell / f"r{r:02d}"
        status = repeat_status(path, base)
        if status != "done" and args.judged is not None and \
                _judged_before(args.judged / args.problem / base["algorithm"] / prior
                               / f"{path.name}.json", base):
            status = "judged"
        repeats.append((path, base, status))
    return repeats


def _judged_before(path: Path, base: dict) -> bool:
    """Whether agox_compare.py judged this repeat (same seed and budget) at ``path``."""
    try:
        record = json.loads(path.read_text())["record"]
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"--judged: {path} cannot be read ({error})") from None
    if (record.get("seed"), record.get("budget")) != (base["seed"], base["budget"]):
        raise InputError(f"--judged: {path} was run with seed {record.get('seed')} and budget "
                         f"{record.get('budget')}, this run asks for seed {base['seed']} and "
                         f"{base['budget']}; check --first-seed and --budget")
    return True


def prepare_process() -> None:
    """Import what a repeat needs before its clock starts, so all repeats are alike."""
    import dscribe.descriptors  # noqa: F401
    import sklearn.cluster  # noqa: F401

    keep_ray_off()


def repeat_name(base: dict, path: Path) -> str:
    return f"{base['problem']}/{base['algorithm']}/{base['prior']}/{path.name}"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        repeats = plan(args)
    except InputError as error:
        print(f"agox_runner.py: error: {error}", file=sys.stderr)
        return 2
    cell = repeats[0][0].parent
    try:
        cell.mkdir(parents=True, exist_ok=True)
        lock = (cell / ".lock").open("w")
    except OSError as error:
        print(f"agox_runner.py: error: cannot write under --out ({error}); choose another "
              "--out", file=sys.stderr)
        return 2
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"agox_runner.py: error: another agox_runner is writing {cell}", file=sys.stderr)
        return 2
    from importlib.metadata import version

    # AGOX's results depend on more than AGOX: its clustering, descriptor and sparsifier
    # come from these (a rerun reproduces a repeat's calls only with the same ones)
    versions = {name: version(name) for name in ("agox", "ase", "scikit-learn", "dscribe",
                                                 "scipy")}
    versions.update(python=platform.python_version(), numpy=np.__version__,
                    threads=os.environ.get("OMP_NUM_THREADS"), parallel=args.parallel)
    todo = []
    for path, base, status in repeats:
        if status == "done":
            print(f"{repeat_name(base, path)}: finished before, skipped", file=sys.stderr)
        elif status == "judged":
            print(f"{repeat_name(base, path)}: judged before (--judged), skipped",
                  file=sys.stderr)
        else:
            if status == "resume":
                print(f"{repeat_name(base, path)}: unfinished, resumed from its last "
                      "finished iteration", file=sys.stderr)
            todo.append((path, {**base, "versions": versions}, not args.run_to_budget,
                         status == "resume"))
    if args.parallel == 1:
        prepare_process()
        records = (run_repeat(*job) for job in todo)
    else:  # a fresh process per repeat: no AGOX module state is shared between repeats
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(args.parallel, multiprocessing.get_context("spawn"),
                                   initializer=prepare_process, max_tasks_per_child=1)
        records = pool.map(run_repeat, *zip(*todo, strict=True)) if todo else iter(())
    failed = 0
    for (path, base, *_), record in zip(todo, records, strict=False):
        name = repeat_name(base, path)
        if record.get("error"):
            failed += 1
            print(f"{name}: error ({record['error']}); rerun to retry it", file=sys.stderr)
            continue
        calls, wall = record["oracle_calls"], record["wall_time"]
        success = record["success"]
        print(f"{name}: {record['stop_reason']} after {calls} oracle calls, {wall:.0f} s "
              f"({wall / max(calls, 1):.1f} s per call); best raw {record['best_energy']:.4f}"
              + ("" if record["best_basin_energy"] is None
                 else f", best basin {record['best_basin_energy']:.4f}")
              + ("" if success is None else f"; success at call {success['call']}"),
              file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
