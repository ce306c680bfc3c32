"""Energies (eV/atom) of many structures: batched model inference or a plain ASE loop.

Slices need energies only. CHGNet has its own batched energy path
(``CHGNet.predict_structure(..., task="e")``) that skips forces and stress,
which its ASE calculator always computes (SPEC.md §6: 3.7× on CPU). Any other
ASE calculator is evaluated one structure at a time. A structure a model cannot
evaluate (e.g. a graph with an isolated atom) gets NaN, not a crash.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

log = logging.getLogger(__name__)

#: Atoms per CHGNet inference batch (at least one structure). Memory grows with the atoms
#: (and neighbours) in a batch, so batches are sized in atoms. On CPU, batching gains little
#: (benchmarks/s2dpes: 6.3, 9.3, 9.2 energies/s for 1, 5, 10 W2N3 cells per batch on a busy
#: 2-core machine, peak RSS 470-583 MB); on a GPU raise it (e.g. 2000).
DEFAULT_BATCH_ATOMS = 100


def model_slug(name: str) -> str:
    """A file-name-safe key for a model spec, e.g. ``mace:/m/x.model`` -> ``mace-x.model``."""
    base, _, extra = name.partition(":")
    if extra:
        extra = extra.rstrip("/").rsplit("/", 1)[-1]
        base = f"{base}-{extra}"
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", base.lower()) or "model"


class EnergyModel:
    """Energies per atom of a list of structures through one ASE calculator.

    Parameters
    ----------
    calculator : ase.calculators.calculator.Calculator
        Any ASE calculator. A CHGNet calculator (``.model`` is a ``chgnet.model.CHGNet``)
        is evaluated through CHGNet's batched energy-only inference.
    name : str
        Label used in tables and file names.
    batch_atoms : int
        Atoms per inference batch for models with batched inference.
    """

    def __init__(self, calculator: Calculator, name: str = "model",
                 batch_atoms: int = DEFAULT_BATCH_ATOMS) -> None:
        self.calculator = calculator
        self.name = name
        self.batch_atoms = int(batch_atoms)
        self.chgnet = _chgnet_model(calculator)

    @property
    def path(self) -> str:
        """Which inference path is used: ``"chgnet-batched"`` or ``"ase"``."""
        return "chgnet-batched" if self.chgnet is not None else "ase"

    def __call__(self, structures: Sequence[Atoms]) -> np.ndarray:
        """Energies in eV/atom, NaN where the model failed; shape (len(structures),)."""
        if not structures:
            return np.empty(0)
        if self.chgnet is not None:
            return self._chgnet(structures)
        return np.array([self._ase_one(atoms) for atoms in structures])

    def _ase_one(self, atoms: Atoms) -> float:
        atoms = atoms.copy()
        atoms.calc = self.calculator
        try:
            return float(atoms.get_potential_energy()) / len(atoms)
        except Exception as error:  # a model failing on one odd structure must not end a slice
            log.warning("%s failed on one structure: %s", self.name, error)
            return float("nan")

    def _chgnet(self, structures: Sequence[Atoms]) -> np.ndarray:
        import torch
        from pymatgen.io.ase import AseAtomsAdaptor

        batch = max(1, self.batch_atoms // len(structures[0]))
        pmg = [AseAtomsAdaptor.get_structure(a) for a in structures]
        try:
            # predict_graph keeps autograd graphs (weights require grad); energies need none.
            with torch.no_grad():
                out = self.chgnet.predict_structure(pmg, task="e", batch_size=batch)
        except Exception as error:  # one bad graph fails the whole call: retry one by one
            log.info("batched CHGNet call failed (%s); evaluating one by one", error)
            return np.array([self._chgnet_one(s) for s in pmg])
        out = [out] if isinstance(out, dict) else out
        return np.array([float(np.asarray(p["e"]).reshape(-1)[0]) for p in out])

    def _chgnet_one(self, structure) -> float:
        import torch

        try:
            with torch.no_grad():
                return float(np.asarray(self.chgnet.predict_structure(structure, task="e")["e"]))
        except Exception as error:
            log.warning("CHGNet failed on one structure: %s", error)
            return float("nan")


def _chgnet_model(calculator: Calculator):
    """The ``chgnet.model.CHGNet`` behind a calculator, if there is one."""
    model = getattr(calculator, "model", None)
    if model is None or type(model).__module__.split(".")[0] != "chgnet":
        return None
    return model if hasattr(model, "predict_structure") else None


def load_energy_model(name: str, batch_atoms: int = DEFAULT_BATCH_ATOMS,
                      device: str = "auto") -> EnergyModel:
    """An :class:`EnergyModel` for a registry name (``chgnet``, ``sevennet-0``, ``mace:PATH``)."""
    from pesflow.models.registry import get_calculator

    return EnergyModel(get_calculator(name, device=device), name=name, batch_atoms=batch_atoms)
