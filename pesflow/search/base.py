"""Ask/tell engine base: task bookkeeping, model versions and serializable state.

An engine never calls a calculator. ``propose()`` returns the tasks it wants done now
(possibly none, while it waits for results); ``tell(results)`` takes results back in any
order and in partial batches; ``model_updated(version)`` says a new Δ-model version
(with more oracle data) is available. ``state_dict()`` is plain data (JSON/HDF5-friendly:
lists, numbers, strings, dicts; the RNG state from ``Generator.bit_generator.state``) and
:func:`engine_from_state` rebuilds an engine that continues exactly where it stopped.
Tasks handed out and not yet answered are part of the state (``in_flight()``): after a
restart the coordinator submits them again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
from ase import Atoms

from pesflow.errors import InputError
from pesflow.search.tasks import (
    OracleTask,
    Result,
    SurrogateEnergyTask,
    SurrogateRelaxTask,
    Task,
    atoms_from_dict,
    atoms_to_dict,
    from_dict,
    to_dict,
)
from pesflow.structures.generators import BondRule, random_structure, rattle
from pesflow.structures.problem import Problem

log = logging.getLogger(__name__)

#: Numeric settings for which 0 is meaningful (all others must be positive).
_MAY_BE_ZERO = {"kappa", "oracle_steps", "random_iterations", "random_fraction"}

#: State format version, bumped when the layout of ``state_dict()`` changes.
STATE_VERSION = 1


def metropolis(delta_e: float, kT: float, rng: np.random.Generator) -> bool:
    """Accept with probability min(1, exp(−ΔE / kT)); one uniform draw per call."""
    u = rng.random()
    return bool(delta_e <= 0 or u < math.exp(-delta_e / kT))


def swap_probability(beta_i: float, beta_j: float, e_i: float, e_j: float) -> float:
    """Standard replica-exchange acceptance min(1, exp[(β_i − β_j)(E_i − E_j)]).

    With walker i colder (β_i > β_j) a lower energy at the hotter walker (E_j < E_i) is
    always swapped in: good structures move to cold walkers. (The paper's Eq. 3 prints
    the energy difference the other way round; SPEC.md §2 treats that as a typo.)
    """
    x = (beta_i - beta_j) * (e_i - e_j)
    return 1.0 if x >= 0 else math.exp(x)


@dataclass
class EngineSettings:
    """Settings every engine has. ``fmax=None`` takes the problem's threshold."""

    fmax: float | None = None
    min_factor: float = 0.3
    max_factor: float = 0.9
    placement: str = "uniform"

    def __post_init__(self) -> None:
        problems = [f"{f.name} must be > 0" for f in fields(self)
                    if isinstance(getattr(self, f.name), int | float)
                    and not isinstance(getattr(self, f.name), bool)
                    and f.name not in _MAY_BE_ZERO and getattr(self, f.name) <= 0]
        if self.placement not in ("uniform", "grow"):
            problems.append("placement must be 'uniform' or 'grow'")
        if not self.min_factor < self.max_factor:
            problems.append("min_factor must be below max_factor")
        problems += self.check()
        if problems:
            raise InputError(f"{type(self).__name__}: " + "; ".join(problems))

    def check(self) -> list[str]:
        """Engine-specific consistency checks: a list of problems (empty when fine)."""
        return []

    @property
    def rule(self) -> BondRule:
        return BondRule(self.min_factor, self.max_factor)

    def todict(self) -> dict:
        return asdict(self)

    @classmethod
    def fromdict(cls, data: dict | None):
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(
                f"{cls.__name__}: unknown settings {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**data)


class Engine:
    """Base of all search engines (see the module docstring for the contract)."""

    name: ClassVar[str]
    settings_class: ClassVar[type[EngineSettings]] = EngineSettings
    #: Whether the engine needs surrogate (model) tasks at all.
    uses_surrogate: ClassVar[bool] = True

    def __init__(
        self,
        problem: Problem,
        settings: EngineSettings | dict | None = None,
        seed: int | np.random.Generator = 0,
    ) -> None:
        self.problem = problem
        if not isinstance(settings, EngineSettings):
            settings = self.settings_class.fromdict(settings)
        self.settings = settings
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.model_version = 0
        self._next_id = 0
        self._in_flight: dict[int, Task] = {}
        self._outbox: list[Task] = []

    # -- the contract -------------------------------------------------------------------------

    def propose(self) -> list[Task]:
        """Tasks to run now (possibly none while the engine waits for results)."""
        tasks = self._outbox + self._propose()
        self._outbox = []
        for task in tasks:
            self._in_flight[task.id] = task
        return tasks

    def tell(self, results: Iterable[Result]) -> None:
        """Take results back, in any order, any subset of the tasks in flight."""
        for result in results:
            task = self._in_flight.pop(result.task_id, None)
            if task is None:
                raise ValueError(f"{self.name}: result for unknown task {result.task_id}")
            if getattr(result, "error", None):
                log.info(
                    "%s: task %d (%s) dropped: %s", self.name, task.id, task.kind, result.error
                )
            self._on_result(task, result)

    def model_updated(self, version: int) -> None:
        """A Δ-model version ``version`` (trained on more oracle data) is available."""
        self.model_version = max(self.model_version, int(version))

    def in_flight(self) -> list[Task]:
        """Tasks handed out and not yet answered (submit them again after a restart)."""
        return list(self._in_flight.values())

    def report(self) -> dict:
        """Plain-data progress figures for people (walkers, temperatures, acceptance)."""
        return {}

    # -- for subclasses -----------------------------------------------------------------------

    def _propose(self) -> list[Task]:
        raise NotImplementedError

    def _on_result(self, task: Task, result: Result) -> None:
        raise NotImplementedError

    def _state(self) -> dict:
        return {}

    def _load_state(self, state: dict) -> None:
        pass

    @property
    def fmax(self) -> float:
        return self.problem.fmax if self.settings.fmax is None else self.settings.fmax

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _random(self) -> Atoms:
        return random_structure(
            self.problem, self.rng, self.settings.rule, placement=self.settings.placement
        )

    def _rattle(self, atoms: Atoms, amplitude: float, fraction: float = 1.0) -> Atoms:
        return rattle(self.problem, atoms, amplitude, self.rng, self.settings.rule, fraction)

    def _relax_task(self, atoms: Atoms, steps: int, kappa: float = 0.0) -> SurrogateRelaxTask:
        return SurrogateRelaxTask(
            id=self._new_id(), atoms=atoms, model_version=self.model_version, kappa=kappa,
            fmax=self.fmax, steps=steps, fixed=self.problem.n_template,
            confinement=self.problem.confinement,
        )

    def _energy_task(self, atoms: Atoms) -> SurrogateEnergyTask:
        return SurrogateEnergyTask(id=self._new_id(), atoms=atoms, model_version=self.model_version)

    def _oracle_task(self, atoms: Atoms, steps: int = 0, keep: str = "all") -> OracleTask:
        return OracleTask(
            id=self._new_id(), atoms=atoms, steps=steps, fmax=self.fmax,
            fixed=self.problem.n_template, confinement=self.problem.confinement, keep=keep,
        )

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: plain data only."""
        return {
            "state_version": STATE_VERSION,
            "engine": self.name,
            "settings": self.settings.todict(),
            "rng": _rng_state(self.rng),
            "model_version": self.model_version,
            "next_id": self._next_id,
            "in_flight": [to_dict(t) for t in self._in_flight.values()],
            "outbox": [to_dict(t) for t in self._outbox],
            "engine_state": self._state(),
        }

    @classmethod
    def from_state(cls, problem: Problem, state: dict) -> Engine:
        """Rebuild an engine of this class from :meth:`state_dict` output."""
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(
                f"engine state version {state.get('state_version')} is not {STATE_VERSION}"
            )
        if state["engine"] != cls.name:
            raise ValueError(f"state is for engine {state['engine']!r}, not {cls.name!r}")
        engine = cls(problem, state["settings"])
        engine.rng = np.random.default_rng()
        engine.rng.bit_generator.state = _rng_from_state(state["rng"])
        engine.model_version = int(state["model_version"])
        engine._next_id = int(state["next_id"])
        engine._in_flight = {t.id: t for t in map(from_dict, state["in_flight"])}
        engine._outbox = [from_dict(t) for t in state["outbox"]]
        engine._load_state(state["engine_state"])
        return engine


def _rng_state(rng: np.random.Generator) -> dict:
    state = rng.bit_generator.state
    # PCG64's 128-bit integers do not fit HDF5/JSON number types everywhere: keep them as text.
    return _ints_to_text(state)


def _ints_to_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ints_to_text(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return {"int": str(value)}
    return value


def _rng_from_state(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {k: _rng_from_state(v) for k, v in value.items()}
    return value


def walker_to_dict(atoms: Atoms | None) -> dict | None:
    return None if atoms is None else atoms_to_dict(atoms)


def walker_from_dict(data: dict | None) -> Atoms | None:
    return None if data is None else atoms_from_dict(data)


ENGINES: dict[str, type[Engine]] = {}


def register(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine known to :func:`engine_from_state`."""
    ENGINES[cls.name] = cls
    return cls


def engine_from_state(problem: Problem, state: dict) -> Engine:
    """Rebuild any registered engine from its :meth:`Engine.state_dict`."""
    import pesflow.search.engines  # noqa: F401  (registers the engines)

    try:
        cls = ENGINES[state["engine"]]
    except KeyError:
        known = sorted(ENGINES)
        raise InputError(f"unknown engine {state.get('engine')!r} in saved state; this pesflow "
                         f"knows {', '.join(known)}") from None
    return cls.from_state(problem, state)
