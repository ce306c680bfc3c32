"""Basin hopping: one walker, Metropolis on oracle energies (paper: k_BT = 0.15 eV, 3 Å)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ase import Atoms

from pesflow.search.base import (
    Engine,
    EngineSettings,
    metropolis,
    register,
    walker_from_dict,
    walker_to_dict,
)
from pesflow.search.tasks import OracleResult, Result, SurrogateRelaxResult, Task


@dataclass
class BasinHoppingSettings(EngineSettings):
    """Basin hopping: one walker, Metropolis at ``kT`` (eV) on oracle energies.

    Each move rattles ``rattle_fraction`` of the atoms by up to ``amplitude`` Å and relaxes
    the result in the surrogate for at most ``steps`` steps.
    """

    kT: float = 0.15
    amplitude: float = 3.0
    rattle_fraction: float = 1.0
    steps: int = 500


@dataclass
class _Walker:
    atoms: Atoms | None = None
    energy: float | None = None
    accepted: list[bool] = field(default_factory=list)


@register
class BasinHopping(Engine):
    """Rattle the walker, relax in the surrogate, evaluate with the oracle, Metropolis.

    Every oracle result enters the training data (the runner's job) whether or not the
    walker accepts it. Strictly sequential: one candidate at a time.
    """

    name = "basin_hopping"
    settings_class = BasinHoppingSettings
    settings: BasinHoppingSettings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.walker = _Walker()

    def _propose(self) -> list[Task]:
        if self._in_flight or self._outbox:
            return []
        if self.walker.atoms is None:
            start = self._random()
        else:
            start = self._rattle(
                self.walker.atoms, self.settings.amplitude, self.settings.rattle_fraction
            )
        return [self._relax_task(start, self.settings.steps)]

    def _on_result(self, task: Task, result: Result) -> None:
        if isinstance(result, SurrogateRelaxResult):
            if result.error is None:
                self._outbox.append(self._oracle_task(result.atoms))
        elif isinstance(result, OracleResult) and result.frames:
            frame = result.frames[-1]
            self.consider(frame, frame.get_potential_energy())

    def consider(self, atoms: Atoms, energy: float) -> bool:
        """Metropolis step of the walker towards ``atoms`` with oracle energy ``energy``."""
        w = self.walker
        accept = w.atoms is None or metropolis(energy - w.energy, self.settings.kT, self.rng)
        if w.atoms is not None:
            w.accepted.append(accept)
        if accept:
            w.atoms, w.energy = atoms, float(energy)
        return accept

    def report(self) -> dict:
        w = self.walker
        recent = w.accepted[-10:]
        return {
            "walkers": [{"kT": self.settings.kT, "amplitude": self.settings.amplitude,
                         "energy": w.energy,
                         "acceptance": sum(recent) / len(recent) if recent else None}],
        }

    def _state(self) -> dict:
        w = self.walker
        return {"atoms": walker_to_dict(w.atoms), "energy": w.energy, "accepted": list(w.accepted)}

    def _load_state(self, state: dict) -> None:
        atoms = walker_from_dict(state["atoms"])
        self.walker = _Walker(atoms, state["energy"], list(state["accepted"]))
