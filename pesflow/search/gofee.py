"""GOFEE: K-means walkers from the oracle pool, LCB relaxations, one oracle step."""

from __future__ import annotations

from dataclasses import dataclass

from ase import Atoms

from pesflow.search.base import Engine, EngineSettings, register, walker_from_dict, walker_to_dict
from pesflow.search.tasks import (
    OracleResult,
    Result,
    SurrogateRelaxResult,
    SurrogateRelaxTask,
    Task,
    from_dict,
    to_dict,
)
from pesflow.structures.generators import kmeans_sample


@dataclass
class GOFEESettings(EngineSettings):
    """GOFEE (paper defaults; AGOX's in brackets).

    ``n_candidates`` candidates per iteration (10) are rattled from walkers chosen by
    K-means on the pool (``n_walkers`` clusters; "agox" cluster rule: 1 + min(9, N // 5)),
    relaxed in LCB = E − κσ for ≤ ``steps`` (100); the lowest LCB goes to the oracle,
    which also takes ``oracle_steps`` (1) BFGS steps: 2 oracle calls per iteration.
    The first ``random_iterations`` (1; AGOX 5) iterations use random structures, later a
    share ``random_fraction`` (0; AGOX 0.2) of candidates are random. Rattles move each
    atom with probability ``rattle_fraction`` (1; AGOX 0.25) within ``amplitude`` (3 Å).
    """

    n_candidates: int = 10
    n_walkers: int = 10
    cluster_rule: str = "paper"
    kappa: float = 2.0
    steps: int = 100
    oracle_steps: int = 1
    amplitude: float = 3.0
    rattle_fraction: float = 1.0
    random_iterations: int = 1
    random_fraction: float = 0.0
    energy_window: float = 5.0

    def check(self) -> list[str]:
        problems = []
        if self.cluster_rule not in ("paper", "agox"):
            problems.append("cluster_rule must be 'paper' or 'agox'")
        if not 0 <= self.random_fraction <= 1 or not 0 < self.rattle_fraction <= 1:
            problems.append("random_fraction must lie in [0, 1] and rattle_fraction in (0, 1]")
        return problems


@register
class GOFEE(Engine):
    """GOFEE: each iteration relaxes candidates in the lower confidence bound E − κσ and
    sends the lowest to the oracle; the oracle-evaluated pool seeds the next walkers.
    """

    name = "gofee"
    settings_class = GOFEESettings
    settings: GOFEESettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pool: list[Atoms] = []  # oracle-evaluated structures (single-point calculators)
        self.iteration = 0
        self._candidates: dict[int, SurrogateRelaxResult | None] = {}  # this iteration's

    def _n_clusters(self) -> int:
        if self.settings.cluster_rule == "agox":
            return 1 + min(self.settings.n_walkers - 1, len(self.pool) // 5)
        return self.settings.n_walkers

    def _propose(self) -> list[Task]:
        if self._in_flight or self._outbox or self._candidates:
            return []
        s = self.settings
        walkers: list[Atoms] = []
        if self.iteration >= s.random_iterations and self.pool:
            energies = [a.get_potential_energy() for a in self.pool]
            chosen = kmeans_sample(
                self.pool, energies, self._n_clusters(), self.rng, energy_window=s.energy_window
            )
            walkers = [self.pool[i] for i in chosen]
        tasks = []
        for c in range(s.n_candidates):
            if not walkers or self.rng.random() < s.random_fraction:
                start = self._random()
            else:
                start = self._rattle(walkers[c % len(walkers)], s.amplitude, s.rattle_fraction)
            task = self._relax_task(start, s.steps, kappa=s.kappa)
            self._candidates[task.id] = None
            tasks.append(task)
        return tasks

    def _on_result(self, task: Task, result: Result) -> None:
        if isinstance(result, SurrogateRelaxResult):
            self._candidates[task.id] = result
            if any(r is None for r in self._candidates.values()):
                return
            good = [r for r in self._candidates.values() if r.error is None]
            self._candidates = {}
            if good:
                best = min(good, key=lambda r: (r.energy, r.task_id))
                self._outbox.append(
                    self._oracle_task(best.atoms, steps=self.settings.oracle_steps, keep="all")
                )
            else:
                self.iteration += 1  # every candidate failed: try again
        elif isinstance(result, OracleResult):
            self.pool.extend(result.frames)
            self.iteration += 1

    def report(self) -> dict:
        return {"iteration": self.iteration, "pool": len(self.pool)}

    def _state(self) -> dict:
        return {
            "iteration": self.iteration,
            "pool": [walker_to_dict(a) for a in self.pool],
            "candidates": [
                [k, None if r is None else to_dict(r)] for k, r in self._candidates.items()
            ],
        }

    def _load_state(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.pool = [walker_from_dict(a) for a in state["pool"]]
        self._candidates = {
            int(k): None if r is None else from_dict(r) for k, r in state["candidates"]
        }


__all__ = ["GOFEE", "GOFEESettings", "SurrogateRelaxTask"]
