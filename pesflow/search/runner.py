"""Serial runner: drives any engine with an oracle calculator and a Δ-model, no Parsl.

This is the reference behaviour the Parsl coordinator must agree with. One cycle:
``engine.propose()`` → run every task in order (surrogate tasks in the model version
they name, oracle tasks while the budget lasts) → ``engine.tell(results)`` → when oracle
data came back, add it to the Δ-model, retrain, ``engine.model_updated(version)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ase import Atoms
from ase.calculators.calculator import Calculator

from pesflow.search.base import Engine, engine_from_state
from pesflow.search.tasks import (
    OracleResult,
    OracleTask,
    Result,
    SurrogateEnergyTask,
    SurrogateRelaxTask,
    atoms_from_dict,
    atoms_to_dict,
    run_oracle,
    run_surrogate_energy,
    run_surrogate_relax,
)
from pesflow.structures.problem import Problem

log = logging.getLogger(__name__)


class SurrogateModel(Protocol):
    """What the runner needs of a Δ-model (:class:`pesflow.models.delta.DeltaModel`)."""

    version: int

    def add_data(self, structures: list[Atoms], energies: list[float] | None = None) -> None: ...

    def train(self) -> None: ...

    def calculator(self, kappa: float = 0.0, skip_fixed: bool = False) -> Calculator: ...


@dataclass
class Evaluation:
    """One oracle evaluation: the ``call``-th oracle call of the run.

    ``wall_time`` is seconds since the run started, ``cpu_time`` = cores × wall time (the
    paper's measure), ``process_time`` the CPU seconds this process used (the honest
    measure for a serial run on a shared machine). None counts success checks.
    """

    call: int
    energy: float
    atoms: Atoms
    task_id: int
    wall_time: float
    cpu_time: float
    model_version: int
    process_time: float = 0.0

    def todict(self) -> dict:
        return {
            "call": self.call, "energy": self.energy, "atoms": atoms_to_dict(self.atoms),
            "task_id": self.task_id, "wall_time": self.wall_time, "cpu_time": self.cpu_time,
            "model_version": self.model_version, "process_time": self.process_time,
        }

    @classmethod
    def fromdict(cls, d: dict) -> Evaluation:
        return cls(**{**d, "atoms": atoms_from_dict(d["atoms"])})

    def __getitem__(self, key: str) -> Any:  # so found_at() takes Evaluations and dicts alike
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def oracle_evaluations(
    task: OracleTask, result: OracleResult, calls_before: int, **meta: float
) -> list[Evaluation]:
    """The :class:`Evaluation` of each frame of an oracle result.

    Frame k is call ``calls_before + k + 1``; with ``keep="last"`` only the final frame
    comes back and it was the task's last call. ``meta`` gives ``wall_time``,
    ``cpu_time``, ``model_version`` and ``process_time``.
    """
    out = []
    for k, frame in enumerate(result.frames):
        call = calls_before + (k + 1 if task.keep == "all" else result.n_calls)
        out.append(Evaluation(call=call, energy=float(frame.get_potential_energy()),
                              atoms=frame, task_id=task.id, **meta))
    return out


@dataclass
class SerialRunner:
    """Run ``engine`` serially until ``budget`` oracle calls are spent (or ``stop`` says so).

    Parameters
    ----------
    engine
        Any :class:`~pesflow.search.base.Engine`.
    oracle
        ASE calculator standing in for DFT.
    model
        Δ-model trained on every oracle result (``None``: no learning).
    surrogate
        Fixed calculator used instead of a model (a prior-only search).
    budget
        Oracle calls (each energy-and-forces evaluation counts one).
    stop
        Called with each new :class:`Evaluation`; ``True`` ends the run (e.g. found).
        Its time is not counted in the run's wall and CPU time.
    cores
        Cores this run occupies, for CPU time = cores × wall time.
    """

    engine: Engine
    oracle: Calculator
    model: SurrogateModel | None = None
    surrogate: Calculator | None = None
    budget: int = 100
    stop: Callable[[Evaluation], bool] | None = None
    cores: int = 1
    evaluations: list[Evaluation] = field(default_factory=list)
    n_calls: int = 0
    n_cycles: int = 0
    elapsed: float = 0.0  # wall seconds spent in earlier sessions (resume)
    elapsed_process: float = 0.0  # process CPU seconds spent in earlier sessions
    stopped: bool = False

    def __post_init__(self) -> None:
        if self.engine.uses_surrogate and self.model is None and self.surrogate is None:
            raise ValueError(f"engine {self.engine.name!r} needs a model or a surrogate calculator")
        self._start = time.perf_counter()
        self._start_process = time.process_time()
        self._paused = 0.0  # seconds spent in ``stop`` (success checks are not search time)
        self._paused_process = 0.0

    @property
    def done(self) -> bool:
        return self.stopped or self.n_calls >= self.budget

    def _wall(self) -> float:
        return self.elapsed + time.perf_counter() - self._start - self._paused

    def _process(self) -> float:
        return (self.elapsed_process + time.process_time() - self._start_process
                - self._paused_process)

    def _calculator(self, task: SurrogateRelaxTask | SurrogateEnergyTask) -> Calculator:
        if self.model is None:
            return self.surrogate
        if self.model.version != task.model_version:
            raise RuntimeError(
                f"task {task.id} wants model version {task.model_version}, the serial "
                f"runner has {self.model.version}"
            )
        if getattr(task, "fixed", 0):  # template atoms never move: skip their derivatives
            return self.model.calculator(kappa=task.kappa, skip_fixed=True)
        return self.model.calculator(kappa=task.kappa)

    def run_task(self, task) -> Result | None:
        """Run one task here; ``None`` for an oracle task beyond the budget."""
        if isinstance(task, SurrogateRelaxTask):
            return run_surrogate_relax(task, self._calculator(task))
        if isinstance(task, SurrogateEnergyTask):
            return run_surrogate_energy(task, self._calculator(task))
        assert isinstance(task, OracleTask)
        remaining = self.budget - self.n_calls
        if remaining <= 0 or self.stopped:
            return None
        if task.steps >= remaining:  # an oracle relaxation: each step is a call
            task = OracleTask(**{**vars(task), "steps": remaining - 1})
        result = run_oracle(task, self.oracle)
        self._record(task, result)
        return result

    def _record(self, task: OracleTask, result: OracleResult) -> None:
        wall = self._wall()
        new = oracle_evaluations(
            task, result, self.n_calls, wall_time=wall, cpu_time=self.cores * wall,
            model_version=self.model.version if self.model is not None else 0,
            process_time=self._process(),
        )
        self.n_calls += result.n_calls
        for evaluation in new:
            self.evaluations.append(evaluation)
            if self.stop is not None:
                t, p = time.perf_counter(), time.process_time()
                self.stopped = bool(self.stop(evaluation)) or self.stopped
                self._paused += time.perf_counter() - t
                self._paused_process += time.process_time() - p

    def step(self) -> bool:
        """One propose/run/tell/train cycle; ``False`` when the run is over."""
        if self.done:
            return False
        tasks = self.engine.propose()
        if not tasks:
            raise RuntimeError(f"engine {self.engine.name!r} proposed nothing: it is stuck")
        results = []
        new_data: list[Atoms] = []
        for task in tasks:
            result = self.run_task(task)
            if result is None:
                break  # budget spent: the run ends here
            results.append(result)
            if isinstance(result, OracleResult):
                new_data.extend(result.frames)
        self.engine.tell(results)
        if new_data and self.model is not None:
            self.model.add_data(new_data)
            self.model.train()
            self.engine.model_updated(self.model.version)
        self.n_cycles += 1
        return not self.done

    def run(self, max_cycles: int | None = None) -> list[Evaluation]:
        """Cycle until the budget is spent, ``stop`` fires or ``max_cycles`` pass."""
        cycles = 0
        while self.step():
            cycles += 1
            if max_cycles is not None and cycles >= max_cycles:
                break
        return self.evaluations

    @property
    def best(self) -> Evaluation | None:
        return min(self.evaluations, key=lambda e: e.energy, default=None)

    def state_dict(self) -> dict:
        """Runner and engine state, plain data (the Δ-model is saved on its own)."""
        return {
            "engine": self.engine.state_dict(),
            "budget": self.budget,
            "cores": self.cores,
            "n_calls": self.n_calls,
            "n_cycles": self.n_cycles,
            "elapsed": self._wall(),
            "elapsed_process": self._process(),
            "stopped": self.stopped,
            "evaluations": [e.todict() for e in self.evaluations],
        }

    @classmethod
    def from_state(
        cls,
        problem: Problem,
        state: dict,
        oracle: Calculator,
        model: SurrogateModel | None = None,
        surrogate: Calculator | None = None,
        stop: Callable[[Evaluation], bool] | None = None,
    ) -> SerialRunner:
        """Continue a run from :meth:`state_dict` (tasks in flight are run again)."""
        engine = engine_from_state(problem, state["engine"])
        # tasks the saved engine had handed out were never answered: hand them out again
        engine._outbox = engine.in_flight() + engine._outbox
        engine._in_flight = {}
        return cls(
            engine=engine, oracle=oracle, model=model, surrogate=surrogate,
            budget=state["budget"], stop=stop, cores=state["cores"],
            evaluations=[Evaluation.fromdict(e) for e in state["evaluations"]],
            n_calls=state["n_calls"], n_cycles=state["n_cycles"], elapsed=state["elapsed"],
            elapsed_process=state["elapsed_process"],
            stopped=state["stopped"],
        )
