"""Benchmark campaigns: problems × algorithms × priors × repeats through one coordinator.

A campaign YAML (:class:`Campaign`) names problems (each with a success criterion and a
budget), algorithms, priors (with or without the Δ-model) and a number of repeats. Every
repeat is an ordinary search run directory::

    OUT/<problem>/<algorithm>/<prior>/r<NN>/     run.yaml, checkpoint.h5, ... (SEARCH.md)
        bench.json                               the repeat's record (below)
        bench-checks.jsonl                       success checks done so far (a cache)

driven ``parallel`` at a time over one Parsl session: when a repeat finishes, the next
one starts. A repeat ends at its first success (the run's ``stop`` callback judges every
oracle evaluation) or when its budget is spent (right-censored). Rerunning the same
command keeps finished repeats untouched, judges and resumes unfinished ones, starts the
missing ones, and extends censored ones whose budget was raised; ``OUT/results.json``
and ``OUT/<problem>.png`` are then rebuilt from every repeat's ``bench.json``.

Success (SPEC.md §3):

- ``basin``: a local oracle relaxation of the evaluated structure ends within
  ``threshold`` of the known minimum ``energy`` (or its graph matches ``structure``).
  The relaxation is not counted in the budget, and its time is taken out of the run's
  wall time. For the Lennard-Jones stand-in oracle it runs on the same potential in
  numpy (L-BFGS, scipy), ~50× faster than ASE's calculator; other oracles use
  :func:`pesflow.structures.identity.local_minimum_energy`.
- ``graph``: the spectral bond graph equals that of a reference structure file.
- ``energy``: the oracle energy is within ``threshold`` of a reference energy (surfaces).

CPU time of a repeat is its share of the site's cores times its wall time: with ``K``
repeats at once on a site of ``C`` cores (``pesflow.workflows.search.site_cores``), a
repeat's clock runs at ``C / K`` core-seconds per second (SPEC.md §3: cores × wall time).
The campaign's total is measured as well: cores × wall time allocated, and the CPU
seconds the coordinator process and its tasks reported (``OUT/sessions.json``).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import queue
import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from ase import Atoms
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from pesflow.config import (
    BudgetConfig,
    CalculatorOracle,
    OracleConfig,
    ProblemConfig,
    RunConfig,
    Strict,
    known_algorithm,
    load_run_config,
    parse_run_config,
    read_yaml,
)
from pesflow.errors import InputError
from pesflow.executors.site import SiteConfig
from pesflow.search.runner import Evaluation
from pesflow.store.atomic import atomic_write_bytes, atomic_write_json
from pesflow.store.lock import RunDirLock
from pesflow.store.rundir import RunDir

log = logging.getLogger(__name__)

RECORD = "bench.json"
CHECKS = "bench-checks.jsonl"
RESULTS = "results.json"
SESSIONS = "sessions.json"
CAMPAIGN = "campaign.yaml"
#: Seconds between rewrites of ``sessions.json`` while a session runs.
SAVE_EVERY = 30.0
RECORD_FORMAT = "pesflow-bench-repeat"
RESULTS_FORMAT = "pesflow-bench-results"
#: Written into a repeat directory restored from a published archive (``bench_archive``).
RESTORED = "restored.json"
#: Files a repeat directory may hold before ``SearchRun.start`` wrote its ``run.yaml``
#: (a session killed at that moment): such a directory is started afresh.
_STARTUP_FILES = {".pesflow.lock", "pesflow.log", CHECKS, RECORD}

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}$")


def _label(value: str) -> str:
    if not _LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a usable name (it becomes a directory name): use up to 40 "
            "letters, digits, '_', '.', '+', '-', starting with a letter or digit"
        )
    return value


Label = Annotated[str, AfterValidator(_label)]


# ----------------------------------------------------------------------------- campaign


class BasinSuccess(Strict):
    """Success when a local oracle relaxation reaches the known minimum ``energy``."""

    criterion: Literal["basin"]
    energy: float
    threshold: float = Field(1e-3, gt=0)
    structure: Path | None = Field(None, description="optional: a graph match also counts")
    fmax: float = Field(1e-3, gt=0, description="force (eV/Å) where the relaxation stops")
    steps: int = Field(5000, ge=1, le=1_000_000)


class _ChosenAfter(Strict):
    """How a reference left to after the runs is chosen (:func:`settle_reference`)."""

    candidates: int = Field(1, ge=1, le=20, description="structures relaxed for the reference")
    relax_fmax: float = Field(0.05, gt=0, description="eV/Å where a reference relaxation stops")
    relax_steps: int = Field(200, ge=1, le=10_000)
    # the candidates must have distinct bond graphs (for `energy` too)
    bond_factor: float = Field(1.3, gt=0)
    tolerance: float = Field(1e-7, gt=0)


class GraphSuccess(_ChosenAfter):
    """Success when the spectral bond graph equals that of a reference (clusters).

    With ``structure`` the reference is that file. Without it, the reference is chosen
    after the runs (SPEC.md §3, real suite): the ``candidates`` lowest-energy evaluations
    of distinct graphs over all finished repeats of the problem are relaxed locally with
    the oracle, and the lowest relaxed one is the reference. Until then nothing is judged
    and every repeat runs to its budget (:func:`settle_reference`).
    """

    criterion: Literal["graph"]
    structure: Path | None = None


class EnergySuccess(_ChosenAfter):
    """Success when the oracle energy is within ``threshold`` of ``energy`` (surfaces).

    Without ``energy`` it is the reference's, chosen after the runs as for ``graph``.
    """

    criterion: Literal["energy"]
    energy: float | None = None
    threshold: float = Field(0.05, ge=0)


def chosen_after_runs(spec: Any) -> bool:
    """True for a success criterion whose reference is chosen after the runs."""
    return ((isinstance(spec, GraphSuccess) and spec.structure is None)
            or (isinstance(spec, EnergySuccess) and spec.energy is None))


SuccessConfig = Annotated[BasinSuccess | GraphSuccess | EnergySuccess,
                          Field(discriminator="criterion")]
_CRITERIA = ("basin", "graph", "energy")


class ProblemEntry(Strict):
    """One problem: a run config ``problem`` block, how success is judged, the budget."""

    name: Label
    problem: ProblemConfig
    success: SuccessConfig
    budget: BudgetConfig
    model_settings: dict[str, Any] = Field(default_factory=dict)
    algorithm_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)


class AlgorithmEntry(Strict):
    """An algorithm under a name: engine (``rss``, ``basin_hopping``, ``gofee``, ``rex``)
    and settings."""

    name: Label
    algorithm: str
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("algorithm")
    @classmethod
    def _known(cls, value: str) -> str:
        return known_algorithm(value)


class PriorEntry(Strict):
    """A prior spec under a name; ``delta: false`` searches in the prior alone."""

    name: Label
    prior: str
    delta: bool = True


class Exclusion(Strict):
    """Cells left out: every name given must match (e.g. ``{algorithm: GOFEE, prior: x}``)."""

    problem: str | None = None
    algorithm: str | None = None
    prior: str | None = None

    @model_validator(mode="after")
    def _some(self) -> Exclusion:
        if self.problem is None and self.algorithm is None and self.prior is None:
            raise ValueError("give problem, algorithm and/or prior")
        return self

    def matches(self, problem: str, algorithm: str, prior: str) -> bool:
        return all(want is None or want == got for want, got in
                   ((self.problem, problem), (self.algorithm, algorithm), (self.prior, prior)))


class QuickConfig(Strict):
    """The ``--quick`` size: fewer repeats, a smaller budget, subsets of the names."""

    repeats: int | None = Field(None, ge=1, le=10_000)
    budget: BudgetConfig | None = None
    problems: list[str] | None = None
    algorithms: list[str] | None = None
    priors: list[str] | None = None


class Campaign(Strict):
    """A benchmark campaign (see ``benchmarks/campaign/standins.yaml``)."""

    name: Label
    repeats: int = Field(ge=1, le=10_000)
    seed: int = Field(0, ge=0, lt=2**62, description="repeat r runs with seed + r")
    oracle: OracleConfig
    model_settings: dict[str, Any] = Field(default_factory=dict)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    deterministic: bool = Field(False, description="runs as `pesflow run --deterministic`")
    problems: list[ProblemEntry] = Field(min_length=1)
    algorithms: list[AlgorithmEntry] = Field(min_length=1)
    priors: list[PriorEntry] = Field(min_length=1)
    exclude: list[Exclusion] = Field(default_factory=list)
    quick: QuickConfig | None = None

    @model_validator(mode="after")
    def _names(self) -> Campaign:
        names = {}
        for what, entries in (("problems", self.problems), ("algorithms", self.algorithms),
                              ("priors", self.priors)):
            seen = [e.name for e in entries]
            twice = sorted({n for n in seen if seen.count(n) > 1})
            if twice:
                raise ValueError(f"{what}: name {twice[0]!r} is given twice")
            names[what] = seen
        refs = [(f"exclude.{k}", what, getattr(x, what[:-1]))
                for k, x in enumerate(self.exclude) for what in names]
        if self.quick is not None:
            refs += [(f"quick.{what}", what, n) for what in names
                     for n in getattr(self.quick, what) or []]
        refs += [(f"problems.{p.name}.algorithm_settings", "algorithms", n)
                 for p in self.problems for n in p.algorithm_settings]
        for where, what, name in refs:
            if name is not None and name not in names[what]:
                raise ValueError(f"{where}: no {what[:-1]} named {name!r} (the campaign's "
                                 f"{what}: {', '.join(names[what])})")
        return self


def _is_tag(loc: tuple, i: int) -> bool:
    """Whether ``loc[i]`` is the tag pydantic puts in a discriminated union's path."""
    before = loc[i - 1] if i else None
    return ((before == "success" and loc[i] in _CRITERIA)
            or (before == "oracle" and loc[i] in ("gpaw", "calculator")))


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names at ``loc`` (a bad key's parent) inside a :class:`Campaign`."""
    import typing

    from pydantic import BaseModel

    model: type[BaseModel] = Campaign
    for i, part in enumerate(loc):
        if not isinstance(part, str):
            continue
        if _is_tag(loc, i) and part in _CRITERIA:
            model = {"basin": BasinSuccess, "graph": GraphSuccess, "energy": EnergySuccess}[part]
            continue
        if _is_tag(loc, i):
            from pesflow.config import GPAWOracle

            model = GPAWOracle if part == "gpaw" else CalculatorOracle
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        found = None
        for arg in (annotation, *typing.get_args(annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found = arg
                break
        if found is None:
            break
        model = found
    return list(model.model_fields)


def _format_error(error: ValidationError, source: str, data: dict) -> str:
    """One line: every bad key, what is wrong, what is allowed."""
    names = {}
    for what in ("problems", "algorithms", "priors"):
        entries = data.get(what)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                names[(what, i)] = entry["name"]
    messages = []
    for item in error.errors():
        loc = tuple(item["loc"])
        shown = [p for i, p in enumerate(loc) if not _is_tag(loc, i)]
        # list positions as the entry's name where there is one (problems.LJ26.budget)
        parts = []
        for i, part in enumerate(shown):
            if isinstance(part, int) and i and shown[i - 1] in ("problems", "algorithms",
                                                                "priors"):
                parts.append(names.get((shown[i - 1], part), str(part)))
            else:
                parts.append(str(part))
        where = ".".join(parts) or "(top level)"
        if item["type"] == "extra_forbidden":
            messages.append(f"unknown key '{where}' (allowed here: "
                            f"{', '.join(_allowed_keys(loc[:-1]))})")
        elif item["type"] == "missing":
            messages.append(f"{where}: missing (required)")
        else:
            got = item.get("input")
            shown_input = "" if isinstance(got, dict | list) else f" (got {got!r})"
            messages.append(f"{where}: {item['msg'].removeprefix('Value error, ')}{shown_input}")
    return f"campaign {source}: " + "; ".join(messages)


def parse_campaign(data: Any, source: str = "<dict>", base: Path | None = None) -> Campaign:
    """Validate a loaded campaign mapping; structure files are resolved against ``base``."""
    if not isinstance(data, dict):
        got = type(data).__name__ if data is not None else "nothing"
        raise InputError(f"campaign {source}: expected a mapping with name, repeats, oracle, "
                         f"problems, algorithms, priors; got {got}")
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as error:
        raise InputError(_format_error(error, source, data)) from None
    if base is not None:
        problems = []
        for p in campaign.problems:
            structure = getattr(p.success, "structure", None)
            if structure is not None and not Path(structure).is_absolute():
                success = p.success.model_copy(update={"structure": base / structure})
                p = p.model_copy(update={"success": success})
            problems.append(p)
        campaign = campaign.model_copy(update={"problems": problems})
    return campaign


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML; raise :class:`InputError` naming the key."""
    path = Path(path)
    return parse_campaign(read_yaml(path, "campaign"), str(path), base=path.resolve().parent)


# -------------------------------------------------------------------------------- plan


@dataclass
class Repeat:
    """One repeat of one cell: its run config and its run directory."""

    problem: str
    algorithm: str
    prior: str
    index: int
    config: RunConfig
    path: Path

    @property
    def key(self) -> str:
        return f"{self.problem}/{self.algorithm}/{self.prior}/r{self.index:02d}"


@dataclass
class Cell:
    """One problem × algorithm × prior combination and its repeats."""

    problem: ProblemEntry
    algorithm: AlgorithmEntry
    prior: PriorEntry
    config: RunConfig  # repeat 0's
    repeats: list[Repeat] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.problem.name}/{self.algorithm.name}/{self.prior.name}"


@dataclass
class Plan:
    """The cells and repeats a campaign (at its size) asks for, under ``out``."""

    campaign: Campaign
    out: Path
    quick: bool
    cells: list[Cell]
    budgets: dict[str, BudgetConfig]

    @property
    def repeats(self) -> list[Repeat]:
        return [r for cell in self.cells for r in cell.repeats]


def repeat_dir(out: Path, problem: str, algorithm: str, prior: str, index: int) -> Path:
    """``OUT/<problem>/<algorithm>/<prior>/r<NN>``."""
    return out / problem / algorithm / prior / f"r{index:02d}"


def _run_config(campaign: Campaign, problem: ProblemEntry, algorithm: AlgorithmEntry,
                prior: PriorEntry, budget: BudgetConfig, index: int) -> RunConfig:
    model: dict[str, Any] = {"delta": prior.delta}
    if prior.delta:
        model["settings"] = {**campaign.model_settings, **problem.model_settings}
    settings = {**algorithm.settings, **problem.algorithm_settings.get(algorithm.name, {})}
    data = {
        "name": f"{campaign.name}-{problem.name}-{algorithm.name}-{prior.name}-r{index:02d}",
        "problem": problem.problem.model_dump(mode="json"),
        "prior": prior.prior,
        "model": model,
        "algorithm": {"name": algorithm.algorithm, "settings": settings},
        "oracle": campaign.oracle.model_dump(mode="json", exclude_none=True),
        "budget": budget.model_dump(mode="json", exclude_none=True),
        "seed": campaign.seed + index,
        "device": campaign.device,
    }
    where = f"cell {problem.name}/{algorithm.name}/{prior.name}"
    try:
        return parse_run_config(data, where)
    except InputError as error:
        raise InputError(f"campaign {campaign.name}: {error}") from None


def plan_campaign(campaign: Campaign, out: str | Path, quick: bool = False,
                  repeats: int | None = None) -> Plan:
    """The repeats of ``campaign`` (``quick``: its quick size; ``repeats`` overrides).

    Every cell's run config is built and checked here (:meth:`RunConfig.check`), and
    every success criterion read, so that bad input fails before anything starts.
    """
    out = Path(out).resolve()
    q = campaign.quick if quick else None
    if quick and q is None:
        raise InputError(f"campaign {campaign.name}: --quick needs a 'quick' block in the "
                         "campaign (repeats, budget, problems, algorithms, priors)")
    if repeats is not None and repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {repeats}")
    n = repeats or (q.repeats if q and q.repeats else campaign.repeats)

    def chosen(entries, names):
        return [e for e in entries if names is None or e.name in names]

    problems = chosen(campaign.problems, q.problems if q else None)
    algorithms = chosen(campaign.algorithms, q.algorithms if q else None)
    priors = chosen(campaign.priors, q.priors if q else None)
    budgets = {p.name: (q.budget if q and q.budget else p.budget) for p in problems}
    cells = []
    for p in problems:
        _criterion_check(campaign, p)
        for a in algorithms:
            for pr in priors:
                if any(x.matches(p.name, a.name, pr.name) for x in campaign.exclude):
                    continue
                config = _run_config(campaign, p, a, pr, budgets[p.name], 0)
                try:
                    config.check()
                except InputError as error:
                    raise InputError(f"campaign {campaign.name}, cell {p.name}/{a.name}/"
                                     f"{pr.name}: {error}") from None
                cell = Cell(p, a, pr, config)
                for r in range(n):
                    cell.repeats.append(Repeat(
                        p.name, a.name, pr.name, r,
                        _run_config(campaign, p, a, pr, budgets[p.name], r),
                        repeat_dir(out, p.name, a.name, pr.name, r),
                    ))
                cells.append(cell)
    if not cells:
        raise InputError(f"campaign {campaign.name}: every cell is excluded; nothing to run")
    return Plan(campaign, out, quick, cells, budgets)


# ---------------------------------------------------------------------------- success


def lj_energy_gradient(x: np.ndarray, n: int, sigma: float, epsilon: float,
                       rc: float) -> tuple[float, np.ndarray]:
    """Energy and gradient of ASE's ``LennardJones`` (non-periodic, not smooth) at the
    flat positions ``x``: pairs within ``rc``, each shifted by its value at ``rc``."""
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


def lj_local_minimum(atoms: Atoms, sigma: float, epsilon: float, rc: float,
                     fmax: float = 1e-3, steps: int = 5000) -> float:
    """Energy after a local L-BFGS relaxation on the Lennard-Jones potential (numpy)."""
    from scipy.optimize import minimize

    n = len(atoms)
    result = minimize(lj_energy_gradient, atoms.positions.ravel(), args=(n, sigma, epsilon, rc),
                      jac=True, method="L-BFGS-B",
                      options={"maxiter": steps, "gtol": fmax / 10, "ftol": 1e-15,
                               "maxcor": 20})
    return float(result.fun)


class Criterion:
    """How one problem's success is judged; ``check`` returns (success, basin energy)."""

    def __init__(self, spec: BasinSuccess | GraphSuccess | EnergySuccess,
                 oracle: OracleConfig, fixed: int = 0) -> None:
        self.spec = spec
        self.fixed = fixed
        self.reference: Atoms | None = None
        structure = getattr(spec, "structure", None)
        if structure is not None:
            from ase.io import read

            self.reference = read(structure)
        self.calculator = None
        self._lj: tuple[float, float, float] | None = None
        if isinstance(spec, BasinSuccess):
            from ase.calculators.lj import LennardJones

            from pesflow.models.registry import get_calculator

            self.calculator = get_calculator(oracle.model)
            p = self.calculator.parameters
            if isinstance(self.calculator, LennardJones) and not p.get("smooth") and not fixed:
                self._lj = (p["sigma"], p["epsilon"], p["rc"])

    @property
    def deferred(self) -> bool:
        """True while the reference is still to be chosen after the runs."""
        return chosen_after_runs(self.spec) and self.reference is None

    def basin_energy(self, atoms: Atoms) -> float:
        """The oracle energy at the end of a local relaxation from ``atoms``."""
        spec = self.spec
        if self._lj is not None and not atoms.pbc.any():
            return lj_local_minimum(atoms, *self._lj, fmax=spec.fmax, steps=spec.steps)
        from pesflow.structures.identity import local_minimum_energy

        return local_minimum_energy(atoms, self.calculator, fmax=spec.fmax, steps=spec.steps,
                                    fixed=self.fixed)

    def check(self, atoms: Atoms, energy: float) -> tuple[bool, float | None]:
        from pesflow.structures.identity import same_graph

        spec = self.spec
        if isinstance(spec, EnergySuccess):
            return bool(energy <= spec.energy + spec.threshold), None
        if isinstance(spec, GraphSuccess):
            return same_graph(atoms, self.reference, spec.tolerance, spec.bond_factor), None
        basin = self.basin_energy(atoms)
        graph = self.reference is not None and same_graph(atoms, self.reference)
        return bool(graph or abs(basin - spec.energy) <= spec.threshold), basin


def problem_criterion(campaign: Campaign, problem: ProblemEntry) -> Criterion:
    """The success test of ``problem`` in ``campaign`` (its fixed atoms left out)."""
    fixed = len(problem.problem.build().template)
    return Criterion(problem.success, campaign.oracle, fixed)


def _criterion_check(campaign: Campaign, problem: ProblemEntry) -> None:
    """Raise :class:`InputError` for a success criterion that cannot be judged."""
    spec = problem.success
    where = f"campaign {campaign.name}: problems.{problem.name}.success"
    if isinstance(spec, BasinSuccess) and not isinstance(campaign.oracle, CalculatorOracle):
        raise InputError(f"{where}: the basin test relaxes every evaluated structure with the "
                         "oracle in the coordinator; with a GPAW oracle use criterion graph "
                         "or energy")
    structure = getattr(spec, "structure", None)
    if structure is None:
        return
    from ase.io import read

    try:
        atoms = read(structure)
    except FileNotFoundError:
        raise InputError(f"{where}.structure: no file at {structure}") from None
    except Exception as error:  # ASE raises many types for unreadable input
        raise InputError(f"{where}.structure: cannot read {structure} ({error})") from None
    built = problem.problem.build()
    want = sorted([*built.template.get_chemical_symbols(), *built.symbols])
    if sorted(atoms.get_chemical_symbols()) != want:
        raise InputError(f"{where}.structure: {structure} holds {atoms.get_chemical_formula()}, "
                         f"the problem {built.formula}; give a structure of the same atoms")


class _Judge:
    """A repeat's ``stop`` callback: judges each new oracle evaluation, once.

    Verdicts are appended to ``bench-checks.jsonl`` (keyed by task and energy), so a
    resumed or re-judged repeat does not relax the same structure again. The time spent
    is taken out of the run's wall time: success checks are not search time.
    """

    def __init__(self, criterion: Criterion, path: Path) -> None:
        self.criterion, self.path = criterion, path
        self.cache: dict[str, dict] = {}
        self.run = None
        self.seconds = 0.0
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.cache[row["key"]] = row
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill

    @staticmethod
    def key(evaluation: Evaluation) -> str:
        return f"{evaluation.task_id}:{float(evaluation.energy)!r}"

    def verdict(self, evaluation: Evaluation) -> dict:
        key = self.key(evaluation)
        if self.criterion.deferred:  # judged once the reference is chosen
            return {"key": key, "call": evaluation.call, "success": None,
                    "basin_energy": None, "seconds": 0.0}
        if key not in self.cache:
            start = time.perf_counter()
            success, basin = self.criterion.check(evaluation.atoms, evaluation.energy)
            row = {"key": key, "call": evaluation.call, "success": success,
                   "basin_energy": basin, "seconds": time.perf_counter() - start}
            self.cache[key] = row
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        return self.cache[key]

    def __call__(self, evaluation: Evaluation) -> bool:
        start = time.perf_counter()
        success = self.verdict(evaluation)["success"]
        spent = time.perf_counter() - start
        self.seconds += spent
        if self.run is not None:
            self.run.elapsed -= spent  # the run's wall clock: search time only
        return bool(success)


# ---------------------------------------------------------------------------- records


def cpu_clock(sessions: list[dict], wall: float) -> float:
    """Core-seconds of a repeat at its wall time ``wall`` (its share of the cores in each
    session: ``sessions`` are ``{"wall_from", "cores"}`` in order)."""
    total = 0.0
    for k, session in enumerate(sessions):
        start = session["wall_from"]
        end = sessions[k + 1]["wall_from"] if k + 1 < len(sessions) else math.inf
        if wall > start:
            total += session["cores"] * (min(wall, end) - start)
    return total


def read_record(path: Path) -> dict | None:
    """A repeat's ``bench.json`` (``None`` when missing or unreadable)."""
    try:
        record = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def _spent(calls: int, wall: float, budget: BudgetConfig) -> bool:
    return ((budget.oracle_calls is not None and calls >= budget.oracle_calls)
            or (budget.wall_time is not None and wall >= budget.wall_time))


def _same_search(old: RunConfig, new: RunConfig, where: Path) -> None:
    """Raise :class:`InputError` when a repeat directory holds another search."""
    a = old.model_dump(mode="json", exclude={"budget", "name"})
    b = new.model_dump(mode="json", exclude={"budget", "name"})
    if a != b:
        diff = next(k for k in b if a.get(k) != b.get(k))
        raise InputError(
            f"{where} was run with another {diff} ({a.get(diff)!r}, the campaign now says "
            f"{b.get(diff)!r}); finished repeats are kept as they are: use another --out, "
            "or remove that directory to run it again"
        )


def repeat_status(repeat: Repeat) -> Literal["new", "done", "open"]:
    """``new`` (not started), ``done`` (finished within the budget asked for) or ``open``
    (to judge, resume or extend); raises :class:`InputError` for a foreign directory."""
    path = repeat.path
    if not path.exists():
        return "new"
    if not path.is_dir():
        raise InputError(f"{path} exists and is not a directory; remove it or use another --out")
    run = RunDir(path)
    if not run.is_run():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in _STARTUP_FILES)
        if foreign:
            raise InputError(f"{path} is not a pesflow run directory (it holds {foreign[0]}); "
                             "remove it or use another --out")
        return "new"
    _same_search(load_run_config(run.config), repeat.config, path)
    record = read_record(path)
    finished = bool(record and record.get("finished") and not record.get("error"))
    if finished and (record.get("success") or _spent(record["oracle_calls"],
                                                     record["wall_time"], repeat.config.budget)):
        return "done"
    if (path / RESTORED).exists() and not run.checkpoint.exists():
        raise InputError(f"{path} was restored from published results without its checkpoint "
                         f"(that stayed on the machine which ran it), so it cannot run past "
                         f"its {record['oracle_calls']} oracle calls; keep the campaign's "
                         "budget, or remove that directory to run the repeat again")
    return "open"


def _checkpoint(path: Path) -> tuple[dict, list[Evaluation]]:
    """The state figures and the oracle evaluations of a repeat's last checkpoint (of a
    repeat restored from a published archive: no state, the archived evaluations)."""
    from pesflow.workflows.bench_archive import archived_evaluations

    run = RunDir(path)
    if not run.checkpoint.exists():
        return {}, archived_evaluations(path) or []
    from pesflow.store.checkpoint import read_checkpoint

    saved = read_checkpoint(run.checkpoint)
    evaluations = [Evaluation(atoms=atoms, **meta)
                   for meta, atoms in zip(saved.state["evaluations"], saved.structures,
                                          strict=True)]
    return saved.state, evaluations


def _finish_record(record: dict, evaluations: list[Evaluation], judge: _Judge, calls: int,
                   wall: float, stop_reason: str | None) -> dict:
    """Fill ``record`` with every oracle call and the first success (judged up to it)."""
    sessions = record["sessions"]
    rows, success = [], None
    for e in evaluations:
        verdict = judge.verdict(e) if success is None else None
        row = {"call": e.call, "task_id": e.task_id, "energy": e.energy,
               "wall_time": e.wall_time, "cpu_time": cpu_clock(sessions, e.wall_time),
               "model_version": e.model_version,
               "success": None if verdict is None else verdict["success"],
               "basin_energy": None if verdict is None else verdict["basin_energy"]}
        rows.append(row)
        if success is None and row["success"]:
            success = row
    basins = [r["basin_energy"] for r in rows if r["basin_energy"] is not None]
    record.update(
        finished=True, error=None, stop_reason=stop_reason,
        success=None if success is None else {
            k: success[k] for k in ("call", "wall_time", "cpu_time", "energy", "basin_energy")},
        oracle_calls=calls, wall_time=wall, cpu_time=cpu_clock(sessions, wall),
        best_energy=min((e.energy for e in evaluations), default=None),
        best_basin_energy=min(basins, default=None),
        check_seconds=sum(judge.cache[judge.key(e)]["seconds"] for e in evaluations
                          if judge.key(e) in judge.cache),
        evaluations=rows,
    )
    return record


# ---------------------------------------------------------------- reference after the runs


def _reference_calculator(oracle: OracleConfig, root: Path, site: SiteConfig | None):
    """The campaign's oracle as an ASE calculator caching its points under ``root``."""
    from pesflow.config import GPAWOracle
    from pesflow.dft.oracle import MPILaunch, OracleCalculator, StandIn

    if isinstance(oracle, GPAWOracle):
        launch = (MPILaunch(timeout=oracle.timeout) if site is None
                  else MPILaunch.of(site.dft, oracle.timeout))
        return OracleCalculator(oracle.gpaw_settings(), root, launch=launch)
    return OracleCalculator(StandIn(oracle.model), root)


def reference_slots(oracle: OracleConfig, site: SiteConfig | None) -> int:
    """How many reference relaxations run at once: as many oracle jobs as ``site`` runs at
    once, and on a local site no more than fit on its cores; 1 without a site."""
    from pesflow.config import GPAWOracle
    from pesflow.workflows.search import site_cores

    if site is None:
        return 1
    label = site.surrogate if site.dft.shared else site.dft
    if all(cfg.provider.type == "local" for cfg in site.labels().values()):
        ranks = label.ranks if isinstance(oracle, GPAWOracle) and label is site.dft else 1
        return max(1, min(site.oracle_workers, site_cores(site) // ranks))
    return site.oracle_workers * label.provider.max_blocks


def _relax(atoms: Atoms, calculator, fmax: float, steps: int, fixed: int) -> tuple[Atoms, dict]:
    """A local relaxation (BFGS) in ``calculator``; returns the end and its figures."""
    from pesflow.structures.identity import relax_locally

    work, converged, taken = relax_locally(atoms, calculator, fmax, steps, fixed, "BFGS")
    forces = work.get_forces()[fixed:]
    return work, {"relaxed_energy": float(work.get_potential_energy()), "steps": taken,
                  "converged": converged,
                  "max_force": float(np.linalg.norm(forces, axis=1).max())}


def _digest(atoms: Atoms) -> str:
    import hashlib

    data = atoms.numbers.tobytes() + np.round(atoms.positions, 6).tobytes()
    return hashlib.sha1(data).hexdigest()[:12]


def settle_reference(plan: Plan, problem: str, site: SiteConfig | None = None,
                     on_event: Callable[[str], None] | None = None) -> dict | None:
    """Choose the reference of a problem that leaves it to after the runs (``graph``
    without ``structure``, ``energy`` without ``energy``), then judge every finished
    repeat of the problem by it.

    The ``candidates`` lowest-energy evaluations of distinct graphs over all finished
    repeats (every cell of the problem) are relaxed locally with the oracle (BFGS, not
    counted in any budget; as many at once as :func:`reference_slots` allows; each single
    point is cached under ``<problem>/reference/``, so a stopped relaxation goes on where
    it was). The lowest relaxed one is the reference, written to ``reference.extxyz``
    with ``reference.json``. A later call relaxes again only if the candidates changed
    (more repeats finished). Returns ``reference.json``'s
    content, or ``None`` for a fixed reference or no finished repeat yet.
    """
    from ase.io import read, write

    from pesflow.dft.oracle import OracleError
    from pesflow.structures.identity import same_graph

    on_event = on_event or (lambda line: None)
    cells = [c for c in plan.cells if c.problem.name == problem]
    spec = cells[0].problem.success
    if not chosen_after_runs(spec):
        return None
    finished = []
    for repeat in (r for cell in cells for r in cell.repeats):
        record = read_record(repeat.path)
        if record and record.get("finished") and not record.get("error"):
            finished.append((repeat, record, _checkpoint(repeat.path)[1]))
    pool = sorted(((e.energy, repeat.key, e) for repeat, _, evaluations in finished
                   for e in evaluations if np.isfinite(e.energy)), key=lambda item: item[0])
    picked: list[tuple[float, str, Evaluation]] = []
    for energy, key, evaluation in pool:
        if not any(same_graph(evaluation.atoms, other.atoms, spec.tolerance, spec.bond_factor)
                   for _, _, other in picked):
            picked.append((energy, key, evaluation))
        if len(picked) == spec.candidates:
            break
    if not picked:
        return None
    folder = plan.out / problem / "reference"
    sources = [{"repeat": key, "call": e.call, "task_id": e.task_id, "energy": energy}
               for energy, key, e in picked]
    try:
        saved = json.loads((folder / "reference.json").read_text())
    except (OSError, ValueError):
        saved = None
    if saved and saved.get("sources") == sources and (folder / "reference.extxyz").exists():
        reference = read(folder / "reference.extxyz")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        fixed = len(cells[0].problem.problem.build().template)

        def relax(source: dict, evaluation: Evaluation) -> tuple[Atoms | None, dict]:
            # a calculator per candidate: ASE calculators keep state and are not shared
            calculator = _reference_calculator(plan.campaign.oracle, folder / "oracle", site)
            on_event(f"{problem}: relaxing reference candidate {source['repeat']} call "
                     f"{source['call']} ({source['energy']:.4f} eV) with the oracle")
            start = time.perf_counter()
            try:
                atoms, figures = _relax(evaluation.atoms, calculator, spec.relax_fmax,
                                        spec.relax_steps, fixed)
            except OracleError as error:
                return None, {**source, "error": str(error)}
            return atoms, {**source, **figures, "seconds": time.perf_counter() - start}

        slots = min(len(picked), reference_slots(plan.campaign.oracle, site))
        with ThreadPoolExecutor(slots, thread_name_prefix="reference") as pool:
            relaxed = list(pool.map(relax, sources, [e for _, _, e in picked]))
        usable = [(atoms, row) for atoms, row in relaxed if atoms is not None]
        if not usable:
            raise RuntimeError(f"{problem}: every reference relaxation failed: "
                               f"{[row.get('error') for _, row in relaxed]}")
        reference, chosen = min(usable, key=lambda item: item[1]["relaxed_energy"])
        reference = reference.copy()
        reference.info.update(energy=chosen["relaxed_energy"], source=chosen["repeat"],
                              call=chosen["call"])
        write(folder / "reference.extxyz", reference)
        saved = {"problem": problem, "sources": sources,
                 "candidates": [row for _, row in relaxed], "chosen": chosen["repeat"],
                 "energy": chosen["relaxed_energy"], "digest": _digest(reference),
                 "finished_repeats": len(finished),
                 "oracle": plan.campaign.oracle.model_dump(mode="json", exclude_none=True),
                 "relaxation": {"optimizer": "BFGS", "fmax": spec.relax_fmax,
                                "steps": spec.relax_steps},
                 "file": f"{problem}/reference/reference.extxyz"}
        atomic_write_json(folder / "reference.json", saved, indent=1)
        on_event(f"{problem}: reference {saved['digest']} from {chosen['repeat']} call "
                 f"{chosen['call']}: {chosen['relaxed_energy']:.4f} eV after relaxation")
    if isinstance(spec, EnergySuccess):
        spec = spec.model_copy(update={"energy": saved["energy"]})
    criterion = Criterion(spec, plan.campaign.oracle)
    criterion.reference = reference
    checks = f"bench-checks-{saved['digest']}.jsonl"
    for repeat, record, evaluations in finished:
        judge = _Judge(criterion, repeat.path / checks)
        judged = _finish_record(record, evaluations, judge, record["oracle_calls"],
                                record["wall_time"], record.get("stop_reason"))
        judged["reference"] = saved["digest"]
        atomic_write_json(repeat.path / RECORD, judged, indent=1)
    return saved


def _references_to_choose(plan: Plan) -> list[str]:
    """Problems whose reference is chosen after the runs, once all their repeats finished."""
    specs = {c.problem.name: c.problem.success for c in plan.cells}
    return [name for name, spec in specs.items() if chosen_after_runs(spec)
            and all((read_record(r.path) or {}).get("finished")
                    for r in plan.repeats if r.problem == name)]


# ---------------------------------------------------------------------------- session


@dataclass
class _Active:
    repeat: Repeat
    run: Any  # SearchRun
    judge: _Judge
    record: dict
    cpu_used_at_open: float


class CampaignSession:
    """One sitting of a campaign: repeats driven ``parallel`` at a time over one Parsl
    session (Parsl must be loaded with ``site``)."""

    def __init__(self, plan: Plan, site: SiteConfig, parallel: int,
                 on_event: Callable[[str], None] | None = None, poll: float = 1.0) -> None:
        from pesflow.workflows.search import site_cores

        self.plan, self.site, self.parallel = plan, site, parallel
        self.on_event = on_event or (lambda line: None)
        self.poll = poll
        self.cores = site_cores(site)
        self.share = self.cores / parallel
        self.criteria: dict[str, Criterion] = {}
        self.finished = 0
        self.errors = 0
        self.check_seconds = 0.0
        self.task_cpu = 0.0  # CPU seconds the runs' tasks reported outside this process
        self.total = len(plan.repeats)

    def criterion(self, repeat: Repeat) -> Criterion:
        if repeat.problem not in self.criteria:
            entry = next(c.problem for c in self.plan.cells if c.problem.name == repeat.problem)
            self.criteria[repeat.problem] = problem_criterion(self.plan.campaign, entry)
        return self.criteria[repeat.problem]

    def _record(self, repeat: Repeat) -> dict:
        record = read_record(repeat.path) or {}
        base = {"format": RECORD_FORMAT, "version": 1, "campaign": self.plan.campaign.name,
                "problem": repeat.problem, "algorithm": repeat.algorithm,
                "prior": repeat.prior, "repeat": repeat.index, "seed": repeat.config.seed,
                "budget": repeat.config.budget.model_dump(mode="json"), "finished": False,
                "error": None}
        return {"sessions": [], **record, **base}

    def _add_session(self, record: dict, wall_from: float, cores: float | None = None) -> None:
        # a session resumed from an older checkpoint replaces what followed it
        kept = [s for s in record["sessions"] if s["wall_from"] < wall_from]
        record["sessions"] = [*kept, {"wall_from": wall_from,
                                      "cores": self.share if cores is None else cores,
                                      "site": self.site.name, "parallel": self.parallel}]

    def widen(self, active: list[_Active]) -> None:
        """Nothing left to start and a repeat has left: the ones still running share all
        the cores from now on (alone, a repeat's tasks fill every worker), so the
        repeats' core-seconds add up to the sitting's."""
        if not active or len(active) >= self.parallel:
            return
        for entry in active:
            self._add_session(entry.record, entry.run.wall(), self.cores / len(active))
            atomic_write_json(entry.repeat.path / RECORD, entry.record, indent=1)

    def open(self, repeat: Repeat, status: str) -> _Active | None:
        """Start or resume ``repeat``; ``None`` when its checkpoint already settles it."""
        from pesflow.workflows.search import SearchRun

        judge = _Judge(self.criterion(repeat), repeat.path / CHECKS)
        record = self._record(repeat)
        if status == "new":
            repeat.path.mkdir(parents=True, exist_ok=True)
            (repeat.path / CHECKS).unlink(missing_ok=True)
            judge.cache.clear()
            record["sessions"] = []
            run = SearchRun.start(repeat.config, self.site, repeat.path, stop=judge,
                                  deterministic=self.plan.campaign.deterministic)
        else:
            state, evaluations = _checkpoint(repeat.path)
            calls, wall = int(state.get("n_calls", 0)), float(state.get("elapsed", 0.0))
            if not record["sessions"]:
                self._add_session(record, 0.0)
            hit = any(judge.verdict(e)["success"] for e in evaluations)
            if hit or _spent(calls, wall, repeat.config.budget):
                reason = "stop condition met" if hit else state.get("stop_reason")
                self._finish(repeat, _finish_record(record, evaluations, judge, calls, wall,
                                                    reason))
                return None
            budget = repeat.config.budget
            run = SearchRun.resume(repeat.path, self.site, stop=judge,
                                   oracle_calls=budget.oracle_calls, wall_time=budget.wall_time)
        judge.run = run
        self._add_session(record, 0.0 if status == "new" else run.wall())
        atomic_write_json(repeat.path / RECORD, record, indent=1)
        return _Active(repeat, run, judge, record, run.cpu_used)

    def _finish(self, repeat: Repeat, record: dict) -> None:
        atomic_write_json(repeat.path / RECORD, record, indent=1)
        self.finished += 1
        success = record.get("success")
        if success is not None:
            what = f"success at oracle call {success['call']} ({success['cpu_time']:.0f} core-s)"
        else:
            what = ("to be judged once every repeat finished"
                    if self.criterion(repeat).deferred else "censored")
        best = record["best_energy"]
        basin = record.get("best_basin_energy")
        self.on_event(f"{repeat.key}: {what}; {record['oracle_calls']} calls, best raw "
                      f"{'–' if best is None else f'{best:.4f}'} eV"
                      + ("" if basin is None else f", best basin {basin:.4f} eV")
                      + f" [{self.finished} finished this session]")

    def close(self, active: _Active, clean: bool = True) -> None:
        """Release a repeat (``clean``: it finished: judge it and write its record)."""
        run = active.run
        wall = run.wall()
        self.task_cpu += run.cpu_used - active.cpu_used_at_open
        self.check_seconds += active.judge.seconds
        run.close(clean=clean)
        if clean:
            record = _finish_record(active.record, run.evaluations, active.judge, run.n_calls,
                                    wall, run.stop_reason)
            self._finish(active.repeat, record)

    def fail(self, active: _Active | None, repeat: Repeat, error: BaseException) -> None:
        """A repeat raised: keep its last checkpoint, record why, go on with the others."""
        reason = f"{type(error).__name__}: {error}"
        log.error("%s: %s", repeat.key, reason, exc_info=error)
        if active is not None:
            try:
                active.run.close(clean=False)
            except Exception:  # closing must not hide the first error
                log.exception("%s: closing after the error failed", repeat.key)
        record = active.record if active is not None else self._record(repeat)
        record.update(finished=False, error=reason)
        if repeat.path.is_dir():
            atomic_write_json(repeat.path / RECORD, record, indent=1)
        self.errors += 1
        self.on_event(f"{repeat.key}: error ({reason}); rerun the command to retry it")

    def drive(self, todo: Iterable[tuple[Repeat, str]],
              after_each: Callable[[], None] | None = None) -> None:
        """Run ``todo`` (repeat, status) to the end, ``parallel`` at a time.

        The loop is :func:`pesflow.workflows.search.drive` with new runs started as
        others finish. On KeyboardInterrupt the active runs keep their last checkpoint.
        """
        from pesflow.workflows.search import arrived

        events: queue.Queue = queue.Queue()
        pending = deque(todo)
        active: list[_Active] = []
        clean = False
        last_save = time.perf_counter()
        try:
            while True:
                while pending and len(active) < self.parallel:
                    repeat, status = pending.popleft()
                    entry = None
                    try:
                        entry = self.open(repeat, status)
                        if entry is None:
                            continue
                        entry.run.fill(events)
                        active.append(entry)
                    except Exception as error:
                        self.fail(entry, repeat, error)
                    finally:
                        if after_each is not None:
                            after_each()
                if not active:
                    break
                touched = arrived(events, self.poll)
                if after_each is not None and time.perf_counter() - last_save > SAVE_EVERY:
                    after_each()
                    last_save = time.perf_counter()
                by_run = {id(a.run): a for a in active}
                for run, task_id, future in touched:
                    if id(run) in by_run:  # a finished repeat's late surrogate task: dropped
                        run.take(task_id, future, events)
                for entry in list(active):
                    try:
                        entry.run.commit(events)
                        if entry.run.finished:
                            active.remove(entry)
                            self.close(entry)
                            if not pending:
                                self.widen(active)
                            if after_each is not None:
                                after_each()
                            continue
                        entry.run.fill(events)
                    except Exception as error:
                        active.remove(entry)
                        self.fail(entry, entry.repeat, error)
                        if not pending:
                            self.widen(active)
            clean = True
        finally:
            for entry in active:  # interrupted: the last checkpoint stands
                self.task_cpu += entry.run.cpu_used - entry.cpu_used_at_open
                self.check_seconds += entry.judge.seconds
                entry.run.close(clean=False)
            if not clean:
                self.on_event(f"stopped: {len(active)} repeat(s) keep their last checkpoint; "
                              "rerun the same command to go on")


# ---------------------------------------------------------------------------- campaign


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / CAMPAIGN).exists():
        raise InputError(f"--out {out} is not empty and holds no {CAMPAIGN}: it is not a "
                         "pesflow bench directory; choose another --out")


def _write_campaign(out: Path, campaign: Campaign) -> None:
    import yaml

    dumped = campaign.model_dump(mode="json", exclude_none=True)
    atomic_write_bytes(out / CAMPAIGN, yaml.safe_dump(dumped, sort_keys=False).encode())


def _read_sessions(out: Path) -> list[dict]:
    try:
        sessions = json.loads((out / SESSIONS).read_text())
    except (OSError, ValueError):
        return []
    return sessions if isinstance(sessions, list) else []


def run_campaign(
    campaign: Campaign,
    site: SiteConfig,
    out: str | Path,
    quick: bool = False,
    repeats: int | None = None,
    parallel: int | None = None,
    on_event: Callable[[str], None] | None = None,
    command: str = "",
    publish: str | Path | None = None,
    only: Sequence[str] = (),
) -> dict:
    """Run (or continue) a campaign in ``out``; returns the results (``results.json``).

    Everything is validated before anything is written. Finished repeats are kept, the
    others judged, resumed or started, ``parallel`` at a time (default: the site's
    cores). KeyboardInterrupt stops the session; the results so far are written first.
    ``publish``: a directory that also gets ``results.json``, the figures and an archive
    of the finished repeats; archived repeats that ``out`` lacks are restored from it
    first (:mod:`pesflow.workflows.bench_archive`).
    ``only``: run just the cells whose ``problem/algorithm/prior`` matches one of these
    shell patterns (e.g. ``LJ26/*/morse6``); the results still cover every cell.
    """
    from pesflow.executors import parsl_session
    from pesflow.executors.leftovers import stop_leftovers
    from pesflow.workflows.bench_archive import restorable, restore
    from pesflow.workflows.search import logging_to, site_cores

    on_event = on_event or (lambda line: None)
    out = Path(out).resolve()
    if parallel is not None and parallel < 1:
        raise InputError(f"--parallel must be at least 1, got {parallel}")
    _check_out(out)
    target = _check_publish(publish, out)
    plan = plan_campaign(campaign, out, quick, repeats)
    chosen = select_cells(plan, only)
    found = restorable(plan, target)
    statuses = [(r, repeat_status(r)) for cell in chosen for r in cell.repeats]
    parallel = parallel or site_cores(site)
    # Validated: from here on files are written.
    out.mkdir(parents=True, exist_ok=True)
    lock = RunDirLock(out)
    lock.acquire()
    try:
        _write_campaign(out, campaign)
        if found:
            restore(plan, target, found)
            on_event(f"restored {len(found)} finished repeat(s) from {target}")
            statuses = [(r, repeat_status(r)) for cell in chosen for r in cell.repeats]
        todo = [(r, s) for r, s in statuses if s == "open"] + \
               [(r, s) for r, s in statuses if s == "new"]
        done = len(statuses) - len(todo)
        parallel = max(1, min(parallel, len(todo)))  # fewer repeats: each gets more cores
        on_event(f"campaign {campaign.name}{' (quick)' if quick else ''}: {len(statuses)} "
                 f"repeats in {len(chosen)} of {len(plan.cells)} cells; {done} finished, "
                 f"{sum(s == 'open' for _, s in todo)} to judge or resume, "
                 f"{sum(s == 'new' for _, s in todo)} to start; {parallel} at a time on "
                 f"site {site.name or site.kind} ({site_cores(site)} cores)")
        if todo:
            sessions = _read_sessions(out)
            figures = {"started": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"), "command": command, "site": site.name,
                "kind": site.kind, "cores": site_cores(site), "parallel": parallel,
                "quick": quick}
            session = CampaignSession(plan, site, parallel, on_event)
            wall0, cpu0 = time.perf_counter(), time.process_time()

            def save_session(state: str = "running") -> None:
                wall = time.perf_counter() - wall0
                used = time.process_time() - cpu0 + session.task_cpu
                atomic_write_json(out / SESSIONS, [*sessions, {
                    **figures, "wall_s": wall, "cpu_allocated_s": session.cores * wall,
                    "cpu_used_s": used, "check_s": session.check_seconds,
                    "repeats_finished": session.finished, "repeats_failed": session.errors,
                    "state": state}], indent=1)

            stopped = stop_leftovers(out)
            if stopped:
                log.warning("stopped %d process(es) left by an earlier session: %s",
                            len(stopped), stopped)
            interrupted = True
            try:
                with logging_to(out / "bench.log"), parsl_session(site, out):
                    session.drive(todo, after_each=save_session)
                for problem in _references_to_choose(plan):
                    settle_reference(plan, problem, site, on_event)
                interrupted = False
            finally:
                save_session("interrupted" if interrupted else "ended")
                if interrupted:
                    write_results(plan, command, target)
        return write_results(plan, command, target)
    finally:
        lock.release()


def select_cells(plan: Plan, only: Sequence[str] = ()) -> list[Cell]:
    """The cells of ``plan`` whose ``problem/algorithm/prior`` matches one of ``only``
    (shell patterns; none given: every cell). A pattern that matches nothing is refused."""
    from fnmatch import fnmatchcase

    if not only:
        return list(plan.cells)
    for pattern in only:
        if not any(fnmatchcase(cell.key, pattern) for cell in plan.cells):
            keys = ", ".join(cell.key for cell in plan.cells[:6])
            raise InputError(
                f"--only {pattern!r} matches no cell of campaign {plan.campaign.name} (cells "
                f"are PROBLEM/ALGORITHM/PRIOR, e.g. {keys}{', ...' if len(plan.cells) > 6 else ''})"
            )
    return [cell for cell in plan.cells if any(fnmatchcase(cell.key, p) for p in only)]


# ---------------------------------------------------------------------------- results


def _cell_results(cell: Cell, reference: str | None = None) -> dict:
    """One cell's figures from its repeats' records. With a reference chosen after the runs
    (``reference``: its digest, or ``None`` while it is still to be chosen), only the
    repeats judged against that reference count as successes or failures; the others
    are finished but not judged (``"judged"`` < ``"finished"``), and draw no curve."""
    from pesflow.search.success import first_reached, success_curve

    records = [read_record(r.path) for r in cell.repeats]
    finished = [r for r in records if r and r.get("finished")]
    waiting = chosen_after_runs(cell.problem.success)
    judged = [not waiting or (reference is not None and r.get("reference") == reference)
              for r in finished]
    calls = [r["success"]["call"] if r["success"] and j else None
             for r, j in zip(finished, judged, strict=True)]
    cpu = [r["success"]["cpu_time"] if r["success"] and j else None
           for r, j in zip(finished, judged, strict=True)]
    calls_end = [max(r["oracle_calls"], c or 0) for r, c in zip(finished, calls, strict=True)]
    cpu_end = [max(r["cpu_time"], c or 0.0) for r, c in zip(finished, cpu, strict=True)]
    result = {
        "problem": cell.problem.name, "algorithm": cell.algorithm.name,
        "engine": cell.algorithm.algorithm,
        "settings": cell.config.algorithm.settings, "prior": cell.prior.name,
        "prior_spec": cell.prior.prior, "delta_model": cell.prior.delta,
        "repeats": len(cell.repeats), "finished": len(finished), "judged": sum(judged),
        "failed": sum(bool(r and r.get("error")) for r in records),
        "successes": sum(c is not None for c in calls),
        "success_calls": calls, "success_cpu_s": cpu,
        "calls_at_end": calls_end, "cpu_s_at_end": cpu_end,
        "censored": sum(c is None and j for c, j in zip(calls, judged, strict=True)),
        "budgets": sorted({json.dumps(r["budget"], sort_keys=True) for r in finished}),
        "best_raw_energy": [r["best_energy"] for r in finished],
        "best_basin_energy": [r.get("best_basin_energy") for r in finished],
        "seeds": [r["seed"] for r in finished],
        "check_seconds": sum(r.get("check_seconds", 0.0) for r in finished),
    }
    result["budgets"] = [json.loads(b) for b in result["budgets"]]
    if any(judged):
        def pick(values: list) -> list:
            return [v for v, j in zip(values, judged, strict=True) if j]

        label = f"{cell.algorithm.name}"
        curve_calls = success_curve(pick(calls), pick(calls_end), label=label)
        curve_cpu = success_curve(pick(cpu), pick(cpu_end),
                                  unit="CPU core-seconds (cores × wall)", label=label)
        result["median_calls_to_success"] = first_reached(curve_calls)
        result["median_cpu_s_to_success"] = first_reached(curve_cpu)
        result["curve_calls"] = curve_calls.todict()
        result["curve_cpu"] = curve_cpu.todict()
    return result


def reported_budgets(budget: int) -> list[int]:
    """The oracle-call budgets a table reports: a quarter, half and all of ``budget``."""
    return [budget // 4, budget // 2, budget]


def median_seconds_per_call(cell: dict) -> float | None:
    """Median over a cell's repeats of wall seconds per oracle call (core-seconds where
    an older cell has no wall times); ``None`` without a repeat that made a call."""
    seconds = [t / n for t, n in zip(cell.get("wall_s_at_end") or cell["cpu_s_at_end"],
                                     cell["calls_at_end"], strict=True) if n]
    return statistics.median(seconds) if seconds else None


def success_table(title: str, budget: int, cells: dict[str, dict]) -> str:
    """A markdown table, one row per cell (label -> a ``results.json`` cell): repeats,
    successes, the share that succeeded by a quarter, half and all of ``budget`` oracle calls
    (95 % band), median calls to success, seconds per oracle call and best raw energy
    (medians over repeats)."""
    from pesflow.search.success import SuccessCurve

    marks = reported_budgets(budget)
    head = (f"| {title} | repeats | successes | "
            + " | ".join(f"success by {m} calls" for m in marks)
            + " | median calls to success | s per oracle call (median) "
              "| best raw energy, eV (median) |")
    rows = [head, "|" + " --- |" * (head.count("|") - 1)]
    for label, cell in cells.items():
        if not cell.get("finished"):
            continue
        if "curve_calls" in cell:
            curve = SuccessCurve.fromdict(cell["curve_calls"])
            rates = [f"{100 * p:.0f} % ({100 * low:.0f}–{100 * high:.0f})"
                     for p, low, high in map(curve.at, marks)]
        else:  # finished, waiting for a reference chosen after the runs
            rates = ["not judged yet"] * len(marks)
        seconds = median_seconds_per_call(cell)
        median = cell.get("median_calls_to_success")
        best = [e for e in cell.get("best_raw_energy", []) if e is not None]
        judged = cell.get("judged", cell["finished"])
        successes = cell["successes"] if judged else "–"
        rows.append(f"| {label} | {cell['finished']} | {successes} | "
                    + " | ".join(rates)
                    + f" | {'–' if median is None else f'{median:g}'}"
                    + f" | {'–' if seconds is None else f'{seconds:.2f}'}"
                    + f" | {f'{statistics.median(best):.2f}' if best else '–'} |")
    return "\n".join(rows) + "\n"


def write_results(plan: Plan, command: str = "", publish: Path | None = None) -> dict:
    """Rebuild ``results.json`` and one ``<problem>.png`` per problem from the repeats'
    records (finished repeats only; unfinished ones are counted, not drawn).

    ``publish``: a directory that gets a copy of those files (e.g. one under version
    control, while the repeats' run directories stay outside it) and the archive of the
    finished repeats. Returns the results, with ``publish`` as published (problems kept
    from an earlier publication included).
    """
    from pesflow.search.success import SuccessCurve, SuccessPanel, plot_success_panels
    from pesflow.workflows.bench_archive import merge_sessions, published_sessions

    out = plan.out
    sessions = _read_sessions(out)
    if publish is not None:  # sittings of other machines count too
        merged = merge_sessions(sessions, published_sessions(publish))
        if merged != sessions:
            atomic_write_json(out / SESSIONS, merged, indent=1)
            sessions = merged
    allocated = sum(s.get("cpu_allocated_s", 0.0) for s in sessions)
    used = sum(s.get("cpu_used_s", 0.0) for s in sessions)
    campaign = plan.campaign
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT, "version": 1, "campaign": campaign.name,
        "size": "quick" if plan.quick else "full", "command": command,
        "oracle": campaign.oracle.model_dump(mode="json", exclude_none=True),
        "cpu_hours": {"allocated": allocated / 3600, "used": used / 3600,
                      "sessions": sum(s.get("sessions", 1) for s in sessions),
                      "wall_hours": sum(s.get("wall_s", 0.0) for s in sessions) / 3600},
        "problems": {},
    }
    for problem in dict.fromkeys(c.problem.name for c in plan.cells):
        cells = [c for c in plan.cells if c.problem.name == problem]
        entry = cells[0].problem
        chosen = out / problem / "reference" / "reference.json"
        reference = json.loads(chosen.read_text()) if chosen.exists() else None
        digest = reference["digest"] if reference else None
        results["problems"][problem] = {
            "problem": entry.problem.model_dump(mode="json"),
            "success": entry.success.model_dump(mode="json"),
            "budget": plan.budgets[problem].model_dump(mode="json", exclude_none=True),
            "cells": {f"{c.algorithm.name}/{c.prior.name}": _cell_results(c, digest)
                      for c in cells},
        }
        if reference:
            results["problems"][problem]["reference"] = reference
        rows, tables = [], []
        for prior in dict.fromkeys(c.prior.name for c in cells):
            got = {c.algorithm.name: results["problems"][problem]["cells"][c.key.split("/", 1)[1]]
                   for c in cells if c.prior.name == prior}
            calls = {a: SuccessCurve.fromdict(r["curve_calls"]) for a, r in got.items()
                     if "curve_calls" in r}
            cpu = {a: SuccessCurve.fromdict(r["curve_cpu"]) for a, r in got.items()
                   if "curve_cpu" in r}
            if not any(r["finished"] for r in got.values()):
                continue
            p = next(c.prior for c in cells if c.prior.name == prior)
            budget = plan.budgets[problem].oracle_calls or max(  # a wall-time-only budget
                n for r in got.values() for n in r.get("calls_at_end", []))
            tables.append(success_table(
                f"{problem}, {p.prior}{' + Δ' if p.delta else ' alone'}", budget, got))
            title = f"prior {p.prior}{' + Δ-model' if p.delta else ' alone'}"
            if calls:  # some repeats judged
                rows.append([SuccessPanel(calls, f"{title}: oracle calls"),
                             SuccessPanel(cpu, f"{title}: CPU time", xlog=True)])
        if rows:
            plot_success_panels(rows, out / f"{problem}.png",
                                title=f"{campaign.name}: {problem} "
                                      f"({'quick' if plan.quick else 'full'} size)")
        else:  # nothing judged (yet): no figure, not an old one
            (out / f"{problem}.png").unlink(missing_ok=True)
        atomic_write_bytes(out / f"{problem}-table.md", "\n".join(tables).encode())
    atomic_write_json(out / RESULTS, results, indent=1)
    return results if publish is None else _publish(plan, results, publish)


def _publish(plan: Plan, results: dict, publish: Path) -> dict:
    """Copy the results, figures and tables to ``publish`` and archive the finished
    repeats there; a problem published earlier from more repeats than ``out`` holds (run
    elsewhere, before repeats were archived) keeps its published entry and files."""
    import shutil

    from pesflow.workflows.bench_archive import archive_repeats, kept_problems, published_results

    publish.mkdir(parents=True, exist_ok=True)
    kept = kept_problems(results, published_results(publish))
    for problem in results["problems"]:
        if problem in kept:
            log.warning("%s: kept as published in %s (%s)", problem, publish,
                        kept[problem]["kept"])
            continue
        for name in (f"{problem}.png", f"{problem}-table.md"):
            if (plan.out / name).exists():
                shutil.copyfile(plan.out / name, publish / name)
            else:  # the published copy mirrors the run directory
                (publish / name).unlink(missing_ok=True)
    archive_repeats(plan, publish)
    problems = {name: kept.get(name, entry) for name, entry in results["problems"].items()}
    published = {**results, "problems": problems}
    atomic_write_json(publish / RESULTS, published, indent=1)
    return published


def _check_publish(publish: str | Path | None, out: Path) -> Path | None:
    if publish is None:
        return None
    publish = Path(publish).resolve()
    if publish.exists() and not publish.is_dir():
        raise InputError(f"--results {publish} exists and is not a directory")
    if publish == out:
        return None
    return publish


def report(campaign: Campaign, out: str | Path, quick: bool = False,
           repeats: int | None = None, command: str = "",
           publish: str | Path | None = None, site: SiteConfig | None = None,
           on_event: Callable[[str], None] | None = None) -> dict:
    """Rebuild ``results.json`` and the figures from ``out`` without running a search.

    A problem whose reference is chosen after the runs gets it now if every repeat of it
    has finished (:func:`settle_reference`: local oracle relaxations, GPAW launched as
    ``site`` says); to choose it from fewer, pass a smaller ``repeats``. Oracle points
    computed for that are booked in ``sessions.json`` as a sitting of ``site``'s cores.
    Archived repeats in ``publish`` that ``out`` lacks are restored first (``out`` is made
    if need be).
    """
    from pesflow.workflows.bench_archive import restorable, restore

    out = Path(out).resolve()
    target = _check_publish(publish, out)
    plan = plan_campaign(campaign, out, quick, repeats)
    found = restorable(plan, target)
    if not (out / CAMPAIGN).exists():
        if not found:
            raise InputError(f"--out {out} holds no {CAMPAIGN}: run the campaign there first"
                             " (or give --results a directory with archived repeats)")
        _check_out(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_campaign(out, campaign)
    restore(plan, target, found)
    problems = _references_to_choose(plan)
    points = {problem: _reference_points(plan, problem) for problem in problems}
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    wall0, cpu0 = time.perf_counter(), _process_and_children_cpu()
    ended = False
    try:
        for problem in problems:
            settle_reference(plan, problem, site, on_event)
        ended = True
    finally:
        computed = sum(_reference_points(plan, p) - points[p] for p in problems)
        if computed:  # oracle points were computed: book them as a sitting
            from pesflow.workflows.search import site_cores

            cores = site_cores(site) if site is not None else 1
            wall = time.perf_counter() - wall0
            atomic_write_json(out / SESSIONS, [*_read_sessions(out), {
                "started": started, "command": f"{command} --report" if command else "",
                "site": site.name if site is not None else None,
                "kind": site.kind if site is not None else None, "cores": cores,
                "parallel": None, "quick": quick, "wall_s": wall,
                "cpu_allocated_s": cores * wall,
                "cpu_used_s": _process_and_children_cpu() - cpu0, "check_s": 0.0,
                "repeats_finished": 0, "repeats_failed": 0, "reference_points": computed,
                "state": "ended" if ended else "interrupted"}], indent=1)
    return write_results(plan, command, target)


def _reference_points(plan: Plan, problem: str) -> int:
    """Oracle single points cached for a problem's reference relaxations."""
    folder = plan.out / problem / "reference" / "oracle"
    return sum(path.is_dir() for path in folder.iterdir()) if folder.is_dir() else 0


def _process_and_children_cpu() -> float:
    """CPU seconds of this process and its finished children (GPAW's MPI launches)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


__all__ = [
    "Campaign",
    "CampaignSession",
    "Criterion",
    "Plan",
    "Repeat",
    "chosen_after_runs",
    "cpu_clock",
    "lj_local_minimum",
    "load_campaign",
    "parse_campaign",
    "plan_campaign",
    "problem_criterion",
    "read_record",
    "repeat_status",
    "report",
    "run_campaign",
    "select_cells",
    "settle_reference",
    "write_results",
]
