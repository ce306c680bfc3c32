"""The search coordinator: engines, Δ-model and oracle driven through Parsl.

One loop drives one or more :class:`SearchRun` objects (a run, or many benchmark
repeats) over one Parsl session. Futures' done-callbacks only put ``(run, task id,
future)`` on a queue; the loop takes what has arrived, records oracle results, tells the
engine, retrains the Δ-model and publishes it as a new version file, writes the
checkpoint, and submits what the engine proposes next. Surrogate tasks keep running while
oracle tasks are pending.

Two modes:

- asynchronous (default): results are told in the order they arrive, surrogate tasks use
  the newest model version, oracle tasks start as soon as the budget allows. Fastest, but
  the trajectory depends on timing.
- deterministic: each batch that ``propose()`` returns is run in full and told in
  submission order, oracle tasks one after another, exactly as
  :class:`~pesflow.search.runner.SerialRunner` does; the same seed gives the same search
  on any executor, at the cost of idle workers at the end of each batch.

Retraining: in the asynchronous mode the Δ-model is retrained in a background thread, so
the loop keeps handing out work while it trains; oracle data that arrives meanwhile goes
into the next training, and a version is published (file written, engine told) when its
training ends. The other modes retrain in the loop, before anything new is proposed.

Durability: the checkpoint is written after every engine step and, before any task is
submitted, with that task among the engine's tasks in flight. Every oracle evaluation is a
hash-named file (:mod:`pesflow.dft.oracle`), so a resumed run submits its tasks in flight
again and reads back any that finished after the checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ase import Atoms

from pesflow import __version__
from pesflow.config import GPAWOracle, RunConfig, dump_run_config, load_run_config
from pesflow.dft.oracle import MPILaunch, StandIn
from pesflow.errors import InputError, ModelOutOfResources, SearchStalled
from pesflow.executors.site import SiteConfig
from pesflow.models.loaded import SurrogateRef, prior_calculator
from pesflow.search.base import Engine, engine_from_state
from pesflow.search.engines import ENGINES
from pesflow.search.runner import Evaluation, oracle_evaluations
from pesflow.search.tasks import (
    OracleResult,
    OracleTask,
    Result,
    SurrogateEnergyResult,
    SurrogateEnergyTask,
    SurrogateRelaxResult,
    Task,
)
from pesflow.store.atomic import atomic_write_bytes, atomic_write_json
from pesflow.store.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from pesflow.store.lock import RunDirLock
from pesflow.store.rundir import RunDir

log = logging.getLogger(__name__)

STATE_FORMAT = "pesflow-run"
STATE_VERSION = 1


def site_cores(site: SiteConfig) -> int:
    """Cores a run on ``site`` occupies (for CPU time = cores × wall time).

    ``site.cores`` if given; else the surrogate workers plus the dft workers × ranks, at
    most this machine's cores when every label runs here (a local pool larger than the
    machine shares its cores; it does not occupy more).
    """
    if site.cores is not None:
        return site.cores
    if site.dft.shared:
        cores = site.surrogate.workers
    else:
        cores = site.surrogate.workers + site.dft.workers * site.dft.ranks
    if all(cfg.provider.type == "local" for cfg in site.labels().values()):
        cores = min(cores, os.cpu_count() or cores)
    return cores


#: Seconds between checkpoints written only because surrogate results arrived (oracle
#: results, new model versions and new tasks are always checkpointed at once).
CHECKPOINT_EVERY = 5.0

#: Resubmissions of an oracle task whose worker or block was lost (a scancel, a walltime
#: end, a node failure), not counted as attempts; a task that kills its own worker each
#: time then fails after this many.
LOST_WORKER_RETRIES = 3
_LOST = ("ManagerLost", "WorkerLost")

#: Resubmissions of a surrogate task whose model ran out of memory or lost its device (a
#: GPU shared by too many workers), not counted as the candidate's failure; then the run
#: stops, since dropping every candidate on a full machine would search nothing.
OUT_OF_RESOURCES_RETRIES = 2

#: Surrogate tasks failing one after another before a run gives up. Single failures are
#: normal (a relaxation through the energy floor where the Δ-model has no data: up to 546
#: in one 100-call LJ26 campaign run); an unbroken run this long means nothing can relax,
#: and the engines would otherwise re-propose forever.
SURROGATE_FAILURES_IN_A_ROW = 1000


def _error_result(task: Task, reason: str) -> Result:
    """The result of a task whose app raised (worker lost, model file unreadable, ...)."""
    if isinstance(task, OracleTask):
        return OracleResult(task_id=task.id, n_calls=1, error=reason)  # as a failed call
    if isinstance(task, SurrogateEnergyTask):
        return SurrogateEnergyResult(task.id, math.nan, task.model_version, error=reason)
    return SurrogateRelaxResult(task.id, task.atoms, math.nan, task.model_version, error=reason)


def _max_calls(task: OracleTask) -> int:
    return task.steps + 1


@dataclass
class _Submitted:
    task: Task
    future: Future | None = None
    attempts: int = 0
    version: int = 0  # model version a surrogate task runs in
    start: float = field(default_factory=time.perf_counter)
    round: int = 0  # which proposal it came from (its place in a shared pool's queue)


class SearchRun:
    """One search in one run directory, stepped by :func:`drive`.

    Build with :meth:`start` (a new run) or :meth:`resume`; ``stop`` (called with each
    new :class:`~pesflow.search.runner.Evaluation`, True ends the run) serves benchmarks.
    """

    def __init__(
        self,
        run_dir: RunDir,
        config: RunConfig,
        site: SiteConfig,
        engine: Engine,
        model,
        state: dict | None = None,
        deterministic: bool = False,
        stop: Callable[[Evaluation], bool] | None = None,
        evaluations: Sequence[Evaluation] = (),
        overlap: bool = True,
    ) -> None:
        state = state or {}
        self.dir, self.config, self.site = run_dir, config, site
        self.engine, self.model = engine, model
        self.deterministic = bool(state.get("deterministic", deterministic))
        self.overlap = bool(state.get("overlap", overlap))
        self.stop = stop
        self.problem = engine.problem
        self.cores = site_cores(site)
        # Oracle tasks allowed to wait for a free dft worker before the engine is paused:
        # walkers run ahead of the oracle, but not by an ever longer queue of candidates
        # chosen with an ever older model. (Parsl gets no more oracle tasks than oracle workers.)
        self.oracle_backlog = max(1, site.oracle_workers)
        # Surrogate tasks handed to Parsl at a time: enough to keep every worker busy.
        # Parsl launches the tasks of all executors from one thread in submission order,
        # so an oracle task submitted behind a thousand surrogate tasks would wait for them.
        blocks = site.surrogate.provider.max_blocks if site.kind == "htex" else 1
        self.surrogate_window = 2 * site.surrogate.workers * blocks
        self.budget_calls = config.budget.oracle_calls or math.inf
        self.budget_wall = config.budget.wall_time or math.inf
        self.evaluations: list[Evaluation] = list(evaluations)
        self.n_calls = int(state.get("n_calls", 0))
        self.failures: list[dict] = list(state.get("failures", []))
        self.attempts: dict[int, int] = {int(k): v for k, v in state.get("attempts", {}).items()}
        # resubmissions not charged to the task: worker lost, model out of memory
        self.lost: dict[int, int] = {int(k): v for k, v in state.get("lost", {}).items()}
        self.counts: dict[str, int] = dict(state.get("counts", {}))
        self.surrogate_failing: tuple[int, str | None] = (0, None)  # in a row, last error
        self.elapsed = float(state.get("elapsed", 0.0))
        self.cpu_used = float(state.get("cpu_used", 0.0))
        self.stop_reason: str | None = state.get("stop_reason")
        self.sessions: list[dict] = list(state.get("sessions", []))
        self.level = _oracle_level(config)
        self.launch = MPILaunch.of(
            site.dft, config.oracle.timeout if isinstance(config.oracle, GPAWOracle) else None)
        self.submitted: dict[int, _Submitted] = {}
        self.held: list[_Submitted] = []  # oracle tasks waiting for budget (or their turn)
        self.held_surrogate: list[_Submitted] = []  # overlap=False: waiting for the oracle
        self.arrived: list[Result] = []  # async: results not yet told
        self.batch: list[int] | None = None  # deterministic: this batch's task ids, in order
        self.batch_results: dict[int, Result] = {}
        self.resubmit: list[Task] = []  # async resume: submit these first
        self.rounds = 0  # proposals launched in this session
        self.cut: int | None = None  # deterministic: index where the budget cut the batch
        self._session_start = time.perf_counter()
        self._process_start = time.process_time()
        self._lock = RunDirLock(run_dir.path)
        self._in_process = site.kind == "threads"
        self._dirty = False
        # Δ-model: the version tasks run in, and how many evaluations it was trained on
        self.published = model.version if model is not None else 0
        self.trained_on = int(state.get("trained_on", len(self.evaluations)))
        self.background_training = not self.deterministic and self.overlap
        self._training: Future | None = None
        self._published_news = False  # a version published since the last checkpoint
        self._checkpointed = time.perf_counter()
        self._trainer: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------------------- set-up

    @classmethod
    def start(
        cls,
        config: RunConfig,
        site: SiteConfig,
        run_dir: str | Path,
        deterministic: bool = False,
        stop: Callable[[Evaluation], bool] | None = None,
        overlap: bool = True,
    ) -> SearchRun:
        """A new run in ``run_dir`` (created; the caller checked it may be used).

        ``overlap=False`` never runs surrogate and oracle tasks at the same time (the
        sequential behaviour of AGOX; for benchmarks).
        """
        config.check()
        run = RunDir(run_dir)
        run.path.mkdir(parents=True, exist_ok=True)
        problem = config.problem.build()
        engine = ENGINES[config.algorithm.name](problem, config.algorithm.settings, config.seed)
        model = _new_model(config, problem)
        self = cls(run, config, site, engine, model, deterministic=deterministic, stop=stop,
                   overlap=overlap)
        self._lock.acquire()
        _write_site(run, site)  # before run.yaml: a run dir with run.yaml has both
        atomic_write_bytes(run.config, dump_run_config(config).encode())
        if model is not None:
            run.models.mkdir(exist_ok=True)
            model.save(run.model_path(model.version))
        self.checkpoint()
        return self

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        site: SiteConfig | None = None,
        stop: Callable[[Evaluation], bool] | None = None,
        oracle_calls: int | None = None,
        wall_time: float | None = None,
    ) -> SearchRun:
        """Continue the run in ``run_dir`` (on ``site``, else the site it last used).

        ``oracle_calls``/``wall_time`` raise the budget. Tasks in flight at the last
        checkpoint are submitted again; finished oracle evaluations are read back.
        """
        from pesflow.executors.site import load_site

        run = RunDir(run_dir).require_run()
        config = load_run_config(run.config)
        if oracle_calls is not None or wall_time is not None:
            budget = config.budget.model_copy(update={
                k: v for k, v in (("oracle_calls", oracle_calls), ("wall_time", wall_time))
                if v is not None
            })
            config = config.model_copy(update={"budget": budget})
        site = site or load_site(run.site)
        lock = RunDirLock(run.path)
        lock.acquire()  # before reading: the state must not change under us
        try:
            from pesflow.executors.leftovers import stop_leftovers

            stopped = stop_leftovers(run.path)
            # half-written files of a killed session (the lock proves no writer is left)
            for tmp in [*run.path.glob(".*.tmp"), *run.models.glob(".*.tmp")]:
                tmp.unlink(missing_ok=True)
            if stopped:
                log.warning("%s: stopped %d process(es) left by the earlier session: %s",
                            run.path.name, len(stopped), stopped)
            problem = config.problem.build()
            if not run.checkpoint.exists():  # killed before its first checkpoint
                engine = ENGINES[config.algorithm.name](
                    problem, config.algorithm.settings, config.seed
                )
                model, state, evaluations = _new_model(config, problem), {}, []
            else:
                saved = read_checkpoint(run.checkpoint)
                state = saved.state
                if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
                    raise InputError(f"{run.checkpoint} is not a pesflow search checkpoint")
                engine = engine_from_state(problem, state["engine"])
                model = _load_model(run, config, int(state["model_version"]))
                evaluations = [
                    Evaluation(atoms=atoms, **meta)
                    for meta, atoms in zip(state["evaluations"], saved.structures, strict=True)
                ]
        except BaseException:
            lock.release()
            raise
        self = cls(run, config, site, engine, model, state, stop=stop, evaluations=evaluations)
        self._lock = lock
        atomic_write_bytes(run.config, dump_run_config(config).encode())
        _write_site(run, site)
        if model is not None and not run.model_path(model.version).exists():
            run.models.mkdir(exist_ok=True)
            model.save(run.model_path(model.version))
        if self.deterministic:
            # as SerialRunner.from_state: the unanswered tasks are proposed again, in order
            engine._outbox = sorted(engine.in_flight(), key=lambda t: t.id) + engine._outbox
            engine._in_flight = {}
        else:
            self.resubmit = sorted(engine.in_flight(), key=lambda t: t.id)
        self.stop_reason = None if self._budget_left() else self.stop_reason
        return self

    # ----------------------------------------------------------------------------- state

    @property
    def model_version(self) -> int:
        """The newest published Δ-model version (0 without a model)."""
        return self.published

    def wall(self) -> float:
        return self.elapsed + time.perf_counter() - self._session_start

    def cpu(self) -> float:
        """CPU seconds used so far: this process, plus work done outside it."""
        return self.cpu_used + time.process_time() - self._process_start

    def _reserved(self) -> int:
        """Oracle calls recorded plus those the submitted oracle tasks may still take."""
        pending = sum(_max_calls(s.task) for s in self.submitted.values()
                      if isinstance(s.task, OracleTask))
        return self.n_calls + pending

    def _budget_left(self) -> bool:
        return self.n_calls < self.budget_calls and self.wall() < self.budget_wall

    @property
    def closing(self) -> bool:
        """No new work: budget reserved or spent, wall time over, or stopped."""
        if self.stop_reason is not None:
            return True
        if self.wall() >= self.budget_wall:
            self.stop_reason = "wall time budget spent"
            return True
        if self._reserved() >= self.budget_calls and not self.deterministic:
            return True
        if self.n_calls >= self.budget_calls:
            self.stop_reason = "oracle budget spent"
            return True
        return False

    @property
    def finished(self) -> bool:
        """Nothing more will be recorded: closing and no oracle task running."""
        if not self.closing:
            return False
        if self.deterministic and self.batch is not None:
            return False
        running = any(isinstance(s.task, OracleTask) and s.future is not None
                      for s in self.submitted.values())
        if not running and self.stop_reason is None:
            self.stop_reason = "oracle budget spent"
        return not running

    # ------------------------------------------------------------------------ submission

    def _ref(self, version: int) -> SurrogateRef:
        path = str(self.dir.model_path(version)) if self.model is not None else None
        return SurrogateRef(self.config.prior, version, path, self.config.device)

    def _submit(self, entry: _Submitted, events: queue.Queue) -> None:
        from pesflow.apps.search import oracle_app, shared_oracle_app, surrogate_app

        task = entry.task
        entry.attempts += 1
        entry.start = time.perf_counter()
        oracle = isinstance(task, OracleTask)
        # One pool for both (dft.shared): tasks run round by round in the order the engine
        # asked for them, a round's surrogate work first, so the walkers' next round starts
        # at once and oracle tasks fill the workers it leaves idle; none waits more than a round.
        shared = self.site.dft.shared
        spec = self.site.resource_specification(
            priority=2 * entry.round + oracle if shared else None)
        if oracle:
            app = shared_oracle_app if shared else oracle_app
            future = app(task, self.level, str(self.dir.oracle), f"task{task.id}",
                         self.launch, parsl_resource_specification=spec)
        else:
            version = task.model_version if self.deterministic else self.model_version
            entry.version = version
            future = surrogate_app(task, self._ref(version), parsl_resource_specification=spec)
        entry.future = future
        self.submitted[task.id] = entry
        future.add_done_callback(lambda f, run=self, tid=task.id: events.put((run, tid, f)))

    def _running(self, oracle: bool) -> bool:
        return any(isinstance(s.task, OracleTask) == oracle and s.future is not None
                   for s in self.submitted.values())

    def _release_oracle(self, events: queue.Queue) -> None:
        """Submit held oracle tasks while the budget allows (deterministic: one at a time)."""
        if not self.overlap and self._running(oracle=False):
            return
        while self.held:
            if self.deterministic:
                busy = any(isinstance(s.task, OracleTask) and s.future is not None
                           for s in self.submitted.values())
                if busy or self.cut is not None:
                    return
                remaining = self.budget_calls - self.n_calls
                if remaining <= 0 or self.stop_reason is not None:
                    self.cut = self.batch.index(self.held[0].task.id)
                    self.held.clear()
                    return
            else:
                remaining = self.budget_calls - self._reserved()
                running = sum(isinstance(s.task, OracleTask) for s in self.submitted.values())
                if remaining <= 0 or self.closing or running >= self.site.oracle_workers:
                    return  # Parsl would only queue it: keep it here, in order
            entry = self.held.pop(0)
            if _max_calls(entry.task) > remaining:  # an oracle relaxation: each step is a call
                entry.task = OracleTask(**{**vars(entry.task), "steps": int(remaining) - 1})
            self._submit(entry, events)

    def _release_surrogate(self, events: queue.Queue) -> None:
        """Submit held surrogate tasks, in order, while the window has room (and, with
        ``overlap=False``, only while no oracle task runs or waits)."""
        if not self.overlap and (self._running(oracle=True) or self.held):
            return
        room = self.surrogate_window - sum(not isinstance(s.task, OracleTask)
                                           for s in self.submitted.values())
        while self.held_surrogate and room > 0:
            self._submit(self.held_surrogate.pop(0), events)
            room -= 1

    def fill(self, events: queue.Queue) -> None:
        """Propose and submit whatever the engine wants now, within the budget.

        Raises :class:`SearchStalled` once ``SURROGATE_FAILURES_IN_A_ROW`` surrogate tasks
        have failed one after another.
        """
        failed, error = self.surrogate_failing
        if failed >= SURROGATE_FAILURES_IN_A_ROW:
            raise SearchStalled(
                f"run {self.dir.path}: the last {failed} surrogate tasks all failed, the last "
                f"with: {error}. Nothing can relax in this surrogate, so the search cannot go "
                f"on; check the prior and the Δ-model (pesflow.log has every failure), then "
                f"'pesflow resume {self.dir.path}' continues from the last checkpoint")
        if self.resubmit:  # after a resume: the tasks in flight at the last checkpoint
            resubmit, self.resubmit = self.resubmit, []
            self._launch(resubmit, events)
        if self.deterministic:
            if self.batch is None and not self.closing:
                tasks = self.engine.propose()
                if not tasks:
                    raise RuntimeError(f"engine {self.engine.name!r} proposed nothing: stuck")
                self.batch, self.batch_results, self.cut = [t.id for t in tasks], {}, None
                self.checkpoint()  # tasks in flight are durable before they start
                self._launch(tasks, events)
            self._release_oracle(events)
            self._release_surrogate(events)
            return
        while not self.closing and len(self.held) < self.oracle_backlog:
            tasks = self.engine.propose()
            if not tasks:
                break
            self.checkpoint()
            self._launch(tasks, events)
        self._release_oracle(events)
        self._release_surrogate(events)
        idle = not self.submitted and not self.held_surrogate
        if idle and not self.held and not self.closing:
            raise RuntimeError(f"engine {self.engine.name!r} proposed nothing: stuck")

    def _launch(self, tasks: Sequence[Task], events: queue.Queue) -> None:
        # one whole round of oracle tasks may wait, so a REX round never stalls its walkers
        self.oracle_backlog = max(self.oracle_backlog,
                                  sum(isinstance(t, OracleTask) for t in tasks))
        self.rounds += 1
        for task in tasks:
            entry = _Submitted(task, attempts=self.attempts.get(task.id, 0), round=self.rounds)
            if isinstance(task, OracleTask):
                self.held.append(entry)
            else:
                self.held_surrogate.append(entry)
        self._release_oracle(events)
        self._release_surrogate(events)

    # -------------------------------------------------------------------------- results

    def take(self, task_id: int, future: Future, events: queue.Queue) -> None:
        """A future resolved: turn it into a result (or a retry).

        ``task_id`` None: a background training ended; publish its version.
        """
        if task_id is None:
            self._trained(future, events)
            return
        entry = self.submitted.pop(task_id, None)
        if entry is None or entry.future is not future:
            return  # a stale future (resubmitted since)
        task = entry.task
        try:
            result, cpu = future.result()
            if not self._in_process:
                self.cpu_used += cpu.get("thread", 0.0)
            self.cpu_used += cpu.get("mpi", 0.0)
        except Exception as error:  # the app itself failed: worker lost, bad model file, ...
            reason = f"{type(error).__name__}: {error}".strip()
            result = _error_result(task, reason)
            lost = self.lost.get(task.id, 0)
            if isinstance(error, ModelOutOfResources):
                if lost >= OUT_OF_RESOURCES_RETRIES:
                    raise SearchStalled(
                        f"run {self.dir.path}: the surrogate model ran out of memory or device "
                        f"on {task.kind} task {task.id} {lost + 1} times ({reason}); give each "
                        f"surrogate worker more memory (fewer 'workers' in the site file's "
                        f"surrogate section, or 'device: cpu' in the run file), then "
                        f"'pesflow resume {self.dir.path}' continues from the last "
                        f"checkpoint") from error
                log.warning("%s: %s task %d: %s; resubmitting (%d of %d)", self.dir.path.name,
                            task.kind, task.id, reason, lost + 1, OUT_OF_RESOURCES_RETRIES)
                self._resubmit(entry, events)
                return
            if (isinstance(task, OracleTask) and type(error).__name__ in _LOST
                    and lost < LOST_WORKER_RETRIES):
                log.warning("%s: oracle task %d lost its worker (%s); resubmitting (%d of %d)",
                            self.dir.path.name, task.id, reason, lost + 1, LOST_WORKER_RETRIES)
                self._resubmit(entry, events)
                return
        kind = "oracle" if isinstance(task, OracleTask) else "surrogate"
        self.counts[f"{kind}_tasks"] = self.counts.get(f"{kind}_tasks", 0) + 1
        if result.error is not None:
            if isinstance(task, OracleTask):
                retries = self.config.oracle.retries
                if entry.attempts <= retries:
                    log.warning("%s: oracle task %d failed (attempt %d of %d): %s; retrying",
                                self.dir.path.name, task.id, entry.attempts, retries + 1,
                                result.error)
                    self.attempts[task.id] = entry.attempts
                    entry.future = None
                    self._submit(entry, events)
                    return
                self._failure(task, result.error, entry.attempts)
            else:
                self.counts["surrogate_failed"] = self.counts.get("surrogate_failed", 0) + 1
                self.surrogate_failing = (self.surrogate_failing[0] + 1, result.error)
                log.info("%s: %s task %d dropped: %s", self.dir.path.name, task.kind, task.id,
                         result.error)
        elif not isinstance(task, OracleTask):
            self.surrogate_failing = (0, None)
        self.attempts.pop(task.id, None)
        self.lost.pop(task.id, None)
        if isinstance(task, OracleTask):
            self._record(task, result)
            self._release_oracle(events)  # the dft worker is free: no wait for the retrain
        else:
            self._release_surrogate(events)
        if self.deterministic:
            self.batch_results[task.id] = result
        else:
            self.arrived.append(result)
        self._dirty = True

    def _resubmit(self, entry: _Submitted, events: queue.Queue) -> None:
        """Run a task again without spending an attempt: the machine failed, not the task."""
        self.lost[entry.task.id] = self.lost.get(entry.task.id, 0) + 1
        entry.attempts -= 1
        entry.future = None
        self._submit(entry, events)

    def _failure(self, task: OracleTask, reason: str, attempts: int) -> None:
        log.error("%s: oracle task %d failed after %d attempt(s): %s", self.dir.path.name,
                  task.id, attempts, reason)
        self.failures.append({"task_id": task.id, "reason": reason, "attempts": attempts,
                              "wall_time": self.wall()})

    def _record(self, task: OracleTask, result: OracleResult) -> None:
        wall = self.wall()
        new = oracle_evaluations(
            task, result, self.n_calls, wall_time=wall, cpu_time=self.cores * wall,
            model_version=self.model_version, process_time=self.cpu(),
        )
        self.n_calls += result.n_calls
        self.evaluations.extend(new)
        for evaluation in new:
            if self.stop is not None and self.stop_reason is None and self.stop(evaluation):
                self.stop_reason = "stop condition met"

    def commit(self, events: queue.Queue | None = None) -> None:
        """Tell the engine what arrived, retrain on new oracle data, write the checkpoint.

        Without ``events`` (nowhere to report a background training) it trains here.
        """
        if not self._dirty:
            return
        self._dirty = False
        if self.deterministic:
            if self.batch is None:
                return
            upto = self.batch if self.cut is None else self.batch[: self.cut]
            if not all(tid in self.batch_results for tid in upto):
                return
            results = [self.batch_results[tid] for tid in upto]
            self.batch, self.batch_results = None, {}
        else:
            results, self.arrived = self.arrived, []
        self.engine.tell(results)
        learn = self.model is not None and self.trained_on < len(self.evaluations)
        if learn and self.background_training and events is not None:
            self._start_training(events)
        elif learn:
            self._train_now()
        new_data = any(isinstance(r, OracleResult) and r.frames for r in results)
        oracle_news = self._published_news or any(isinstance(r, OracleResult) for r in results)
        # Surrogate results alone are cheap to redo (their tasks stay in flight in the last
        # checkpoint and run again on resume): the state is not rewritten for each of them.
        if oracle_news or time.perf_counter() - self._checkpointed >= CHECKPOINT_EVERY:
            self.checkpoint(outputs=new_data)

    # ------------------------------------------------------------------------- training

    def _train_now(self) -> None:
        """Train on the evaluations the model has not seen and publish, in this thread."""
        upto = len(self.evaluations)
        self.model.add_data([e.atoms for e in self.evaluations[self.trained_on:upto]])
        self.model.train()
        self.model.save(self.dir.model_path(self.model.version))
        self._publish(self.model.version, upto)

    def _start_training(self, events: queue.Queue) -> None:
        """Train in the background on what arrived since the last training (if idle)."""
        if self._training is not None:
            return  # what arrives now goes into the next training
        model, upto = self.model, len(self.evaluations)
        frames = [e.atoms for e in self.evaluations[self.trained_on:upto]]
        path = self.dir.model_path

        def train() -> tuple[int, int]:
            model.add_data(frames)
            model.train()
            model.save(path(model.version))
            return model.version, upto

        if self._trainer is None:
            self._trainer = ThreadPoolExecutor(1, thread_name_prefix=f"train-{self.dir.path.name}")
        self._training = self._trainer.submit(train)
        self._training.add_done_callback(lambda f, run=self: events.put((run, None, f)))

    def _trained(self, future: Future, events: queue.Queue | None) -> None:
        if future is not self._training:
            return  # already published (close waited for it)
        self._training = None
        self._publish(*future.result())  # a training that raised ends the run, as in the loop
        self._dirty = self._published_news = True
        if events is not None and self.trained_on < len(self.evaluations):
            self._start_training(events)

    def _publish(self, version: int, trained_on: int) -> None:
        self.published, self.trained_on = version, trained_on
        self.engine.model_updated(version)
        self._prune_models()

    def _prune_models(self) -> None:
        """Delete model files no task uses any more (keep the checkpoint's and the one
        before: a worker may still be loading it)."""
        if self.model is None:
            return
        in_use = {s.version for s in self.submitted.values() if not isinstance(s.task, OracleTask)}
        keep = min(in_use | {self.published - 1})
        for version in self.dir.model_versions():
            if version < keep:
                self.dir.model_path(version).unlink(missing_ok=True)

    # ------------------------------------------------------------------------ durability

    def _figures(self) -> dict:
        """The state without the engine and the evaluations (cheap: every progress step)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "pesflow": __version__,
            "name": self.config.name,
            "deterministic": self.deterministic,
            "overlap": self.overlap,
            "model_version": self.model_version,
            "trained_on": self.trained_on,
            "n_calls": self.n_calls,
            "failures": self.failures,
            "attempts": {str(k): v for k, v in self.attempts.items()},
            "lost": {str(k): v for k, v in self.lost.items()},
            "counts": self.counts,
            "elapsed": self.wall(),
            "cpu_used": self.cpu(),
            "cores": self.cores,
            "stop_reason": self.stop_reason,
            "sessions": [*self.sessions, {"site": self.site.name, "wall": self.wall()}],
        }

    def state(self) -> dict:
        """Everything a resume needs, as plain data (the structures go beside it)."""
        return {
            **self._figures(),
            "engine": self.engine.state_dict(),
            "evaluations": [_meta(e) for e in self.evaluations],
        }

    def checkpoint(self, outputs: bool = False) -> None:
        """Write the run state atomically (and, after new oracle data, the outputs)."""
        state = self.state()
        write_checkpoint(self.dir.checkpoint,
                         Checkpoint(state, [e.atoms for e in self.evaluations]))
        self._checkpointed, self._published_news = time.perf_counter(), False
        if outputs or not self.dir.summary.exists():
            self.write_outputs(state)

    def write_outputs(self, state: dict | None = None, trace: bool = False) -> None:
        """evaluated.extxyz, best.extxyz, summary.json (and trace.png with ``trace``)."""
        state = state or self.state()
        frames = []
        for e in self.evaluations:
            atoms = e.atoms.copy()
            atoms.calc = e.atoms.calc
            atoms.info.update(call=e.call, task_id=e.task_id, model_version=e.model_version)
            frames.append(atoms)
        _write_extxyz(self.dir.evaluated, frames)
        best = min(range(len(frames)), key=lambda i: self.evaluations[i].energy, default=None)
        if best is not None:
            _write_extxyz(self.dir.best, [frames[best]])
        atomic_write_json(self.dir.summary, summarize(state, self.config, self.engine,
                                                      pending=self.pending_counts()))
        if trace and self.evaluations:
            from pesflow.search.report import plot_trace

            plot_trace(self.evaluations, self.dir.trace, title=self.config.name)

    def pending_counts(self) -> dict[str, int]:
        oracle = sum(isinstance(s.task, OracleTask) for s in self.submitted.values())
        return {"oracle": oracle + len(self.held),
                "surrogate": len(self.submitted) - oracle + len(self.held_surrogate)}

    # -------------------------------------------------------------------------- session

    def close(self, clean: bool = True) -> None:
        """End this session and release the run dir.

        ``clean``: the loop stopped between steps, so the state is consistent: write the
        final checkpoint and the outputs with the trace plot. Otherwise (an exception,
        Ctrl-C at any moment) the last checkpoint stands as it is.
        """
        if self._lock is None:
            return
        try:
            if self._trainer is not None:
                if clean and self._training is not None:  # publish what is being learnt
                    self._training.result()
                    self._trained(self._training, None)
                self._trainer.shutdown(wait=False, cancel_futures=True)
                self._trainer = None
            if clean and self.model is not None and self.trained_on < len(self.evaluations):
                self._train_now()  # the final model has learnt every result
            if clean:
                self.checkpoint()
                self.write_outputs(trace=True)
        finally:
            self._lock.release()
            self._lock = None

    def report(self) -> dict:
        """Figures for the progress display (as ``pesflow status``)."""
        best = min(self.evaluations, key=lambda e: e.energy, default=None)
        figures = {**self._figures(), "evaluations": [] if best is None else [_meta(best)]}
        return summarize(figures, self.config, self.engine, pending=self.pending_counts())


# ------------------------------------------------------------------------------ the loop


def drive(
    runs: Sequence[SearchRun],
    on_progress: Callable[[SearchRun], None] | None = None,
    poll: float = 1.0,
) -> None:
    """Step ``runs`` until each is finished; Parsl must be loaded with their site.

    ``on_progress`` is called after every step of a run (the progress display). On
    KeyboardInterrupt (Ctrl-C, SIGTERM via the CLI) the runs keep their last checkpoint
    and are closed; ``pesflow resume`` continues them.
    """
    events: queue.Queue = queue.Queue()
    active = list(runs)
    clean = False
    try:
        for run in active:
            run.fill(events)
        while active:
            for run, task_id, future in arrived(events, poll):
                run.take(task_id, future, events)
            for run in list(active):
                run.commit(events)
                if run.finished:
                    active.remove(run)
                    run.close()
                    continue
                run.fill(events)
                if on_progress is not None:
                    on_progress(run)
        clean = True
    finally:
        for run in runs:
            run.close(clean=clean)


def arrived(events: queue.Queue, timeout: float) -> list:
    """Everything on ``events``: wait up to ``timeout`` s for the first, then take the
    rest without waiting (the loop then steps each run once for all of them)."""
    try:
        got = [events.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            got.append(events.get_nowait())
        except queue.Empty:
            return got


def run_search(
    config: RunConfig,
    site: SiteConfig,
    run_dir: str | Path,
    deterministic: bool = False,
    on_progress: Callable[[SearchRun], None] | None = None,
    stop: Callable[[Evaluation], bool] | None = None,
    overlap: bool = True,
) -> SearchRun:
    """Start a run in ``run_dir`` and drive it to the end of its budget."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with logging_to(RunDir(run_dir).log):
        run = SearchRun.start(config, site, run_dir, deterministic=deterministic, stop=stop,
                              overlap=overlap)
        _drive_in_session([run], site, on_progress)
    return run


def resume_search(
    run_dir: str | Path,
    site: SiteConfig | None = None,
    on_progress: Callable[[SearchRun], None] | None = None,
    oracle_calls: int | None = None,
    wall_time: float | None = None,
) -> SearchRun:
    """Continue the run in ``run_dir`` to the end of its budget."""
    with logging_to(RunDir(run_dir).require_run().log):
        run = SearchRun.resume(run_dir, site, oracle_calls=oracle_calls, wall_time=wall_time)
        _drive_in_session([run], run.site, on_progress)
    return run


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """pesflow's log records (INFO and up) also go to ``path`` for the block."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("pesflow")
    root.addHandler(handler)
    level = root.level
    if level == logging.NOTSET or level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        handler.close()


def _drive_in_session(runs: Sequence[SearchRun], site: SiteConfig, on_progress) -> None:
    from pesflow.executors import parsl_session

    try:
        with parsl_session(site, runs[0].dir.path):
            drive(runs, on_progress)
    finally:
        for run in runs:  # Parsl failed to start: still release the run dirs
            run.close(clean=False)


# ------------------------------------------------------------------------------ helpers


def _oracle_level(config: RunConfig) -> Any:
    if isinstance(config.oracle, GPAWOracle):
        return config.oracle.gpaw_settings()
    return StandIn(config.oracle.model, config.oracle.delay, config.oracle.busy)


def _new_model(config: RunConfig, problem):
    """The Δ-model a new run starts from (``None`` for a prior-only search)."""
    if not config.model.delta or not ENGINES[config.algorithm.name].uses_surrogate:
        return None
    from pesflow.models.delta import DeltaModel

    prior = prior_calculator(config.prior, config.device)
    if config.model.pretrained is not None:
        model = DeltaModel.load(config.model.pretrained, prior=prior)
        missing = set(problem.species) - set(model.species)
        if missing:
            raise InputError(
                f"model.pretrained {config.model.pretrained} has no {sorted(missing)}, which "
                f"the problem {problem.formula} needs"
            )
        return model
    model = DeltaModel(problem.species, prior, config.model.delta_settings(), seed=config.seed)
    if config.model.pretrain is not None:
        model.add_data(config.pretrain_data(problem))
        model.train()
    return model


def _load_model(run: RunDir, config: RunConfig, version: int):
    """The Δ-model of the checkpoint's ``version``; newer files (trained after the last
    checkpoint, before a kill) are removed, as their data will be recorded again."""
    if not config.model.delta or not ENGINES[config.algorithm.name].uses_surrogate:
        return None
    from pesflow.models.delta import DeltaModel

    for newer in (v for v in run.model_versions() if v > version):
        log.info("%s: removing model v%d, trained after the last checkpoint", run.path, newer)
        run.model_path(newer).unlink()
    prior = prior_calculator(config.prior, config.device)
    return DeltaModel.load(run.model_path(version), prior=prior)


def _meta(evaluation: Evaluation) -> dict:
    """An evaluation's plain-data fields except its structure (stored beside the state)."""
    return {f.name: getattr(evaluation, f.name) for f in fields(evaluation) if f.name != "atoms"}


def _write_site(run: RunDir, site: SiteConfig) -> None:
    import yaml

    data = site.model_dump(mode="json", exclude_defaults=True)
    atomic_write_bytes(run.site, yaml.safe_dump(data, sort_keys=False).encode())


def _write_extxyz(path: Path, frames: list[Atoms]) -> None:
    import io

    from ase.io import write  # here: `pesflow status` need not import every ASE format

    buffer = io.StringIO()
    write(buffer, frames, format="extxyz")
    atomic_write_bytes(path, buffer.getvalue().encode())


def summarize(state: dict, config: RunConfig, engine: Engine | None = None,
              pending: dict | None = None) -> dict:
    """The figures of a run (``summary.json``, ``pesflow status``) from its state."""
    evaluations = state.get("evaluations", [])
    best = min(evaluations, key=lambda e: e["energy"], default=None)
    wall, cores = state.get("elapsed", 0.0), state.get("cores", 1)
    if engine is None:
        engine_report: dict = {}
        in_flight = state.get("engine", {}).get("in_flight", [])
        pending = pending or {
            "oracle": sum(t["kind"] == "oracle" for t in in_flight),
            "surrogate": sum(t["kind"] != "oracle" for t in in_flight),
        }
    else:
        engine_report = engine.report()
    level = config.oracle
    return {
        "name": config.name,
        "problem": config.problem.system,
        "algorithm": config.algorithm.name,
        "prior": config.prior,
        "delta_model": config.model.delta,
        "oracle": level.model if level.kind == "calculator" else level.gpaw_settings()
        .level_of_theory(),
        "deterministic": state.get("deterministic", False),
        "oracle_calls": {
            "done": state.get("n_calls", 0),
            "budget": config.budget.oracle_calls,
            "pending": (pending or {}).get("oracle", 0),
            "failed": len(state.get("failures", [])),
        },
        "surrogate_tasks": {
            "done": state.get("counts", {}).get("surrogate_tasks", 0),
            "dropped": state.get("counts", {}).get("surrogate_failed", 0),
            "pending": (pending or {}).get("surrogate", 0),
        },
        "best": None if best is None else {
            "energy": best["energy"], "call": best["call"], "task_id": best["task_id"],
            "structure": "best.extxyz",
        },
        "model_version": state.get("model_version", 0),
        "engine": engine_report,
        "wall_time": wall,
        "cpu_time": {"cores": cores, "allocated": cores * wall,
                     "used": state.get("cpu_used", 0.0)},
        "failures": state.get("failures", [])[-5:],
        "stop_reason": state.get("stop_reason"),
        "sessions": len(state.get("sessions", [])),
    }


def load_run_model(run_dir: str | Path, version: int | None = None, device: str = "cpu"):
    """The Δ-model of a run directory (its prior rebuilt from ``run.yaml``).

    ``version=None`` takes the checkpoint's version (else the newest file). Raises
    ``InputError`` for a run without a Δ-model or a version that is not there.
    """
    from pesflow.models.delta import DeltaModel

    run = RunDir(run_dir).require_run()
    config = load_run_config(run.config)
    versions = run.model_versions()
    if not config.model.delta or not versions:
        raise InputError(f"run {run.path} has no Δ-model (model.delta is false or no version "
                         "was published)")
    if version is None:
        version = versions[-1]
        if run.checkpoint.exists():
            version = int(read_checkpoint(run.checkpoint).state.get("model_version", version))
    if version not in versions:
        raise InputError(f"run {run.path} has no Δ-model version {version}; it has "
                         f"{', '.join(map(str, versions))} (older ones are pruned)")
    prior = prior_calculator(config.prior, device)
    return DeltaModel.load(run.model_path(version), prior=prior)


def load_status(run_dir: str | Path) -> dict:
    """:func:`summarize` of a run directory's last checkpoint (read-only, no lock)."""
    run = RunDir(run_dir).require_run()
    config = load_run_config(run.config)
    if not run.checkpoint.exists():
        return summarize({}, config)
    saved = read_checkpoint(run.checkpoint)
    state = saved.state
    report = {}
    try:
        engine = engine_from_state(config.problem.build(), state["engine"])
        report = engine.report()
    except Exception as error:  # status must answer even for a state it cannot rebuild
        report = {"error": str(error)}
    summary = summarize(state, config)
    summary["engine"] = report
    return summary


__all__ = [
    "SearchRun",
    "arrived",
    "drive",
    "load_run_model",
    "load_status",
    "logging_to",
    "resume_search",
    "run_search",
    "site_cores",
    "summarize",
]
