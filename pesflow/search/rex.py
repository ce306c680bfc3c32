"""Replica exchange X (REX): basin-hopping walkers on a temperature ladder (SPEC.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from pesflow.search.base import (
    Engine,
    EngineSettings,
    metropolis,
    register,
    swap_probability,
    walker_from_dict,
    walker_to_dict,
)
from pesflow.search.tasks import (
    Result,
    SurrogateEnergyResult,
    SurrogateRelaxResult,
    Task,
    from_dict,
    to_dict,
)


@dataclass
class REXSettings(EngineSettings):
    """REX (paper defaults; AGOX scripts' in brackets).

    ``n_walkers`` (10) walkers with k_BT on a geometric ladder ``kT_min``–``kT_max``
    (0.1–1 eV; AGOX 0.02–2) and amplitudes starting linear ``amplitude_min``–
    ``amplitude_max`` (0.1–5 Å), adapted every iteration toward ``target_acceptance``
    (0.5) over the last ``adapt_window`` (10) Metropolis tests: × ``adapt_down`` (0.99)
    below target, × ``adapt_up`` (1.01) otherwise, clamped to the initial range. The
    hottest walker proposes random structures (``random_top``). Surrogate relaxations
    ≤ ``steps`` (30). Swaps every ``swap_interval`` (10) iterations; every
    ``oracle_interval`` (30–50) iterations ``oracle_count`` (5) walkers chosen at random
    among the ``oracle_from`` (9) coldest go to the oracle.
    """

    n_walkers: int = 10
    kT_min: float = 0.1
    kT_max: float = 1.0
    amplitude_min: float = 0.1
    amplitude_max: float = 5.0
    target_acceptance: float = 0.5
    adapt_window: int = 10
    adapt_down: float = 0.99
    adapt_up: float = 1.01
    random_top: bool = True
    rattle_fraction: float = 1.0
    steps: int = 30
    swap_interval: int = 10
    oracle_interval: int = 30
    oracle_count: int = 5
    oracle_from: int = 9

    def check(self) -> list[str]:
        problems = []
        if self.n_walkers < 2:
            problems.append("n_walkers must be at least 2")
        if not self.kT_min <= self.kT_max:
            problems.append("kT_min must not exceed kT_max")
        if not self.amplitude_min <= self.amplitude_max:
            problems.append("amplitude_min must not exceed amplitude_max")
        if self.oracle_count > self.oracle_from:
            problems.append("oracle_count must not exceed oracle_from")
        if not 0 < self.target_acceptance < 1:
            problems.append("target_acceptance must lie between 0 and 1")
        return problems


@dataclass
class Walker:
    """One temperature slot; structures move between slots when swaps are accepted."""

    kT: float
    amplitude: float
    atoms: Atoms | None = None
    energy: float | None = None
    energy_version: int = 0
    history: list[bool] = field(default_factory=list)

    def todict(self) -> dict:
        return {
            "kT": self.kT, "amplitude": self.amplitude, "atoms": walker_to_dict(self.atoms),
            "energy": self.energy, "energy_version": self.energy_version,
            "history": list(self.history),
        }

    @classmethod
    def fromdict(cls, d: dict) -> Walker:
        return cls(
            d["kT"], d["amplitude"], walker_from_dict(d["atoms"]), d["energy"],
            int(d["energy_version"]), list(d["history"]),
        )

    def acceptance(self, window: int) -> float | None:
        recent = self.history[-window:]
        return sum(recent) / len(recent) if recent else None


@register
class REX(Engine):
    """Replica exchange of basin-hopping walkers sharing one surrogate.

    Iteration: every walker rattles (the hottest draws a random structure), relaxes in
    the surrogate and accepts by Metropolis on surrogate energies (paper Eq. 4). Walkers
    whose energies come from an older model version get surrogate single points in the
    same batch, so both sides of every Metropolis test use one model version. Oracle
    tasks do not hold the walkers up.
    """

    name = "rex"
    settings_class = REXSettings
    settings: REXSettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s = self.settings
        kTs = np.geomspace(s.kT_min, s.kT_max, s.n_walkers)
        amps = np.linspace(s.amplitude_min, s.amplitude_max, s.n_walkers)
        self.walkers = [Walker(float(t), float(a)) for t, a in zip(kTs, amps, strict=True)]
        self.iteration = 0
        self.n_swaps = [0] * (s.n_walkers - 1)  # accepted swaps per neighbour pair
        self._batch: dict[int, list] = {}  # task id -> [walker index, kind, result or None]

    @property
    def initialized(self) -> bool:
        return all(w.atoms is not None for w in self.walkers)

    def _propose(self) -> list[Task]:
        if self._batch:
            return []
        s = self.settings
        tasks: list[Task] = []
        for i, w in enumerate(self.walkers):
            if w.atoms is None or (s.random_top and i == s.n_walkers - 1):
                start = self._random()
            else:
                start = self._rattle(w.atoms, w.amplitude, s.rattle_fraction)
            task = self._relax_task(start, s.steps)
            self._batch[task.id] = [i, "relax", None]
            tasks.append(task)
            if w.atoms is not None and w.energy_version < self.model_version:
                task = self._energy_task(w.atoms)
                self._batch[task.id] = [i, "energy", None]
                tasks.append(task)
        return tasks

    def _on_result(self, task: Task, result: Result) -> None:
        if task.id not in self._batch:
            return  # an oracle result: the runner trains the model with it
        self._batch[task.id][2] = result
        if all(entry[2] is not None for entry in self._batch.values()):
            self._finish_iteration()

    def _finish_iteration(self) -> None:
        batch, self._batch = self._batch, {}
        starting = not self.initialized
        for i, kind, result in batch.values():
            if kind == "energy" and isinstance(result, SurrogateEnergyResult):
                w = self.walkers[i]
                if result.error is None:
                    w.energy, w.energy_version = result.energy, result.model_version
                else:  # keep the walker comparable: take the next candidate outright
                    w.energy = np.inf
        for i, kind, result in sorted(batch.values(), key=lambda e: e[0]):
            if kind != "relax" or not isinstance(result, SurrogateRelaxResult):
                continue
            if result.error is not None:
                continue
            w = self.walkers[i]
            if w.atoms is None:
                w.atoms, w.energy = result.atoms, result.energy
                w.energy_version = result.model_version
                continue
            self.metropolis_step(i, result.atoms, result.energy, result.model_version)
        if starting or not self.initialized:
            return
        self.iteration += 1
        s = self.settings
        if self.iteration % s.swap_interval == 0:
            self.swap()
        if self.iteration % s.oracle_interval == 0:
            coldest = min(s.oracle_from, s.n_walkers)
            picks = self.rng.choice(coldest, size=min(s.oracle_count, coldest), replace=False)
            for i in sorted(picks):
                self._outbox.append(self._oracle_task(self.walkers[i].atoms))

    def metropolis_step(self, i: int, atoms: Atoms, energy: float, version: int) -> bool:
        """Metropolis test of walker ``i`` toward a candidate, then amplitude adaptation."""
        s, w = self.settings, self.walkers[i]
        accept = metropolis(energy - w.energy, w.kT, self.rng)
        if accept:
            w.atoms, w.energy, w.energy_version = atoms, float(energy), version
        w.history.append(accept)
        w.history = w.history[-s.adapt_window :]
        rate = w.acceptance(s.adapt_window)
        factor = s.adapt_down if rate < s.target_acceptance else s.adapt_up
        w.amplitude = float(np.clip(w.amplitude * factor, s.amplitude_min, s.amplitude_max))
        return accept

    def swap(self) -> None:
        """Swap attempts between neighbouring temperatures, from the hottest pair down."""
        for i in range(len(self.walkers) - 2, -1, -1):
            a, b = self.walkers[i], self.walkers[i + 1]
            p = swap_probability(1 / a.kT, 1 / b.kT, a.energy, b.energy)
            if self.rng.random() < p:
                a.atoms, b.atoms = b.atoms, a.atoms
                a.energy, b.energy = b.energy, a.energy
                a.energy_version, b.energy_version = b.energy_version, a.energy_version
                self.n_swaps[i] += 1

    def report(self) -> dict:
        window = self.settings.adapt_window
        return {
            "iteration": self.iteration,
            "swaps": list(self.n_swaps),
            "walkers": [
                {"kT": w.kT, "amplitude": w.amplitude, "energy": w.energy,
                 "acceptance": w.acceptance(window)}
                for w in self.walkers
            ],
        }

    def _state(self) -> dict:
        return {
            "iteration": self.iteration,
            "walkers": [w.todict() for w in self.walkers],
            "n_swaps": list(self.n_swaps),
            "batch": [
                [k, i, kind, None if r is None else to_dict(r)]
                for k, (i, kind, r) in self._batch.items()
            ],
        }

    def _load_state(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.walkers = [Walker.fromdict(d) for d in state["walkers"]]
        self.n_swaps = list(state["n_swaps"])
        self._batch = {
            int(k): [int(i), kind, None if r is None else from_dict(r)]
            for k, i, kind, r in state["batch"]
        }
