"""The structured outcome of an oracle single point."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

Status = Literal["ok", "scf_not_converged", "crashed", "timeout", "missing"]


@dataclass
class OracleResult:
    """Energy and forces of one single point, or why there are none.

    ``status`` is ``"ok"``, ``"scf_not_converged"``, ``"crashed"`` (non-zero exit or an
    exception), ``"timeout"`` or ``"missing"`` (never ran). Callers decide on retries.
    """

    status: Status
    energy: float | None = None
    forces: np.ndarray | None = None
    message: str = ""
    wall_time: float | None = None
    task_dir: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["forces"] = None if self.forces is None else np.asarray(self.forces).tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> OracleResult:
        data = dict(data)
        if data.get("forces") is not None:
            data["forces"] = np.asarray(data["forces"], dtype=float)
        return cls(**data)

    def atoms(self, structure: Atoms) -> Atoms:
        """``structure`` with this result attached as a SinglePointCalculator."""
        if not self.ok:
            raise ValueError(f"no energy: single point {self.status}: {self.message}")
        atoms = structure.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=self.energy, forces=self.forces)
        return atoms
