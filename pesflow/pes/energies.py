"""Energies (eV/atom) of many structures: batched model inference or a plain ASE loop.

Slices need energies only. CHGNet has its own batched energy path
(``CHGNet.predict_structure(..., task="e")``) that skips forces and stress,
which its ASE calculator always computes (SPEC.md §6: 3.7× on CPU). Any other
ASE calculator is evaluated one structure at a time. A structure a model cannot
evaluate (e.g. a graph with an isolated atom) gets NaN, not a crash; running out of
memory or a failing device is no property of the structure, so it raises instead (its
chunk is then not written, and a rerun computes it).

Two names read a search run directory (``pesflow run ... --out RUN_DIR``):
``delta:RUN_DIR[@VERSION]`` is its Δ-corrected model E_prior + E_Δ (the checkpoint's
version, or VERSION from ``RUN_DIR/models/vNNNNN.h5``) with its uncertainty σ, and
``prior:RUN_DIR`` is the run's prior alone, so one slice can show how active learning
reshaped the prior's landscape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from pesflow.errors import InputError, out_of_resources

log = logging.getLogger(__name__)

#: Atoms per CHGNet inference batch (at least one structure). Memory grows with the atoms
#: (and neighbours) in a batch, so batches are sized in atoms. On CPU, batching gains little
#: (benchmarks/s2dpes: 6.3, 9.3, 9.2 energies/s for 1, 5, 10 W2N3 cells per batch on a busy
#: 2-core machine, peak RSS 470-583 MB); on a GPU raise it: on an H100, 5000 atoms (250
#: cells) gave 62.6 energies/s against 37.5 for one cell, at 2.1 GB of GPU memory.
DEFAULT_BATCH_ATOMS = 100


#: Name prefixes that read a search run directory (see the module docstring).
RUN_MODEL_KINDS = ("delta", "prior")


def model_slug(name: str) -> str:
    """A file-name-safe key for a model spec, e.g. ``mace:/m/x.model`` -> ``mace-x.model``.

    Run models keep their kind, the run directory's name and the version:
    ``delta:runs/cu6@3`` -> ``delta-cu6-v3``, ``prior:runs/cu6`` -> ``prior-cu6``.
    """
    base, _, extra = name.partition(":")
    if base in RUN_MODEL_KINDS and extra:
        path, version = _split_version(extra)
        run = Path(path.rstrip("/") or "/").name
        if run in ("", ".", ".."):
            run = Path(path).resolve().name or "run"
        base = f"{base}-{run}" + (f"-v{version}" if version is not None else "")
    elif extra:
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
        #: What the energies come from where a name alone does not say it (run models).
        self.identity: dict | None = None

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

    def evaluate(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray | None]:
        """Energies (eV/atom) and their σ (eV/atom), or None for models without σ."""
        return self(structures), None

    def _ase_one(self, atoms: Atoms) -> float:
        atoms = atoms.copy()
        atoms.calc = self.calculator
        try:
            return float(atoms.get_potential_energy()) / len(atoms)
        except Exception as error:  # a model failing on one odd structure must not end a slice
            if out_of_resources(error):
                raise
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
            if out_of_resources(error):
                raise
            log.warning("CHGNet failed on one structure: %s", error)
            return float("nan")


def _chgnet_model(calculator: Calculator):
    """The ``chgnet.model.CHGNet`` behind a calculator, if there is one."""
    model = getattr(calculator, "model", None)
    if model is None or type(model).__module__.split(".")[0] != "chgnet":
        return None
    return model if hasattr(model, "predict_structure") else None


def has_uncertainty(name: str) -> bool:
    """True for model names whose slices carry σ per point (``delta:RUN_DIR``)."""
    return name.partition(":")[0] == "delta"


def _split_version(text: str) -> tuple[str, int | None]:
    """``RUN_DIR@3`` (or ``@v00003``) -> (``RUN_DIR``, 3); no ``@NUMBER`` -> (text, None)."""
    head, at, tail = text.rpartition("@")
    digits = tail.strip().lower().removeprefix("v")
    if at and head and digits.isdigit():
        return head, int(digits)
    return text, None


@dataclass(frozen=True)
class RunModelSpec:
    """A parsed ``delta:RUN_DIR[@VERSION]`` or ``prior:RUN_DIR`` name."""

    kind: str
    run_dir: str
    version: int | None = None


def parse_run_model(name: str) -> RunModelSpec | None:
    """The run-model parts of ``name``, or None for a registry name.

    Raises
    ------
    InputError
        No run directory, a version that is not a number, or a version on ``prior:``.
    """
    kind, sep, rest = name.partition(":")
    if not sep or kind not in RUN_MODEL_KINDS:
        return None
    if not rest.strip():
        raise InputError(f"model {name!r} names no run directory; write {kind}:RUN_DIR")
    path, version = _split_version(rest)
    if version is None and "@" in rest and not Path(rest).exists():
        raise InputError(f"cannot read the version in model {name!r}; write {kind}:RUN_DIR@3 "
                         "(a number N of RUN_DIR/models/vNNNNN.h5)")
    if kind == "prior" and version is not None:
        raise InputError(f"model {name!r}: a run's prior has no versions; write prior:{path}")
    return RunModelSpec(kind, path, version)


class DeltaEnergyModel(EnergyModel):
    """E_prior + E_Δ per atom, and σ per atom, of a search run's Δ-model.

    Energies only: the prior goes through :class:`EnergyModel` (CHGNet's batched energy
    path where the prior is CHGNet), the Δ through ``DeltaModel.predict_delta(forces=False)``;
    the sum is what ``DeltaModel.predict`` returns.

    Parameters
    ----------
    model : pesflow.models.delta.DeltaModel
        A loaded Δ-model with its prior (``pesflow.workflows.search.load_run_model``).
    name : str
        Label used in tables and file names.
    batch_atoms : int
        Atoms per inference batch of the prior.
    identity : dict, optional
        What the energies come from (run directory, version, prior), recorded beside the
        chunk files so that a resumed slice never mixes versions.
    """

    def __init__(self, model, name: str = "delta", batch_atoms: int = DEFAULT_BATCH_ATOMS,
                 identity: dict | None = None) -> None:
        super().__init__(model.calculator(), name=name, batch_atoms=batch_atoms)
        self.delta = model
        self.prior = (EnergyModel(model.prior, f"{name} prior", batch_atoms)
                      if model.prior is not None else None)
        self.identity = identity

    @property
    def path(self) -> str:
        """Inference path: the Δ-model's SOAP GPR on top of the prior's path."""
        return f"delta on {self.prior.path if self.prior is not None else 'no prior'}"

    def __call__(self, structures: Sequence[Atoms]) -> np.ndarray:
        """Energies in eV/atom, NaN where the model failed; shape (len(structures),)."""
        return self.evaluate(structures)[0]

    def evaluate(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray | None]:
        """Energies and σ in eV/atom (σ NaN where the model has no uncertainty)."""
        n = len(structures)
        prior = self.prior(structures) if self.prior is not None else np.zeros(n)
        delta, sigma = np.full(n, np.nan), np.full(n, np.nan)
        for k, atoms in enumerate(structures):
            try:
                prediction = self.delta.predict_delta(atoms, forces=False)
            except Exception as error:  # one odd structure must not end a slice
                if out_of_resources(error):
                    raise
                log.warning("%s failed on one structure: %s", self.name, error)
                continue
            delta[k] = prediction.energy / len(atoms)
            if prediction.sigma is not None:
                sigma[k] = prediction.sigma / len(atoms)
        return prior + delta, sigma


def _run_identity(spec: RunModelSpec, run_dir, prior: str, version: int | None) -> dict:
    return {"kind": spec.kind, "run": str(run_dir), "prior": prior, "version": version}


def load_run_energy_model(name: str, batch_atoms: int = DEFAULT_BATCH_ATOMS,
                          device: str = "auto",
                          symbols: Sequence[str] | None = None) -> EnergyModel:
    """The :class:`EnergyModel` of ``delta:RUN_DIR[@VERSION]`` or ``prior:RUN_DIR``.

    Parameters
    ----------
    name : str
        A run-model name (:func:`parse_run_model`).
    batch_atoms, device
        As for :func:`load_energy_model`.
    symbols : sequence of str, optional
        Elements of the structure to slice: a ``delta:`` model must know all of them.

    Raises
    ------
    InputError
        Not a run directory, no Δ-model, unknown version, no prior, unknown elements.
    """
    from pesflow.config import load_run_config
    from pesflow.store.rundir import RunDir

    spec = parse_run_model(name)
    if spec is None:
        raise InputError(f"model {name!r} is not a run model; write delta:RUN_DIR or "
                         "prior:RUN_DIR")
    try:
        run = RunDir(spec.run_dir).require_run()
        prior_spec = load_run_config(run.config).prior
        if spec.kind == "prior":
            from pesflow.models.loaded import prior_calculator

            calculator = prior_calculator(prior_spec, device)
            if calculator is None:
                raise InputError(f"run {run.path} has no prior (prior: none); slice "
                                 f"delta:{spec.run_dir} alone")
            model = EnergyModel(calculator, name=name, batch_atoms=batch_atoms)
            model.identity = _run_identity(spec, run.path, prior_spec, None)
            return model
        from pesflow.workflows.search import load_run_model

        try:
            delta = load_run_model(run.path, spec.version, device=device)
        except OSError as error:  # a truncated or foreign HDF5 file
            raise InputError(f"cannot read the Δ-model of run {run.path}: {error}") from None
    except InputError as error:
        raise InputError(f"model {name!r}: {error}") from None
    unknown = sorted(set(symbols or ()) - set(delta.species))
    if unknown:
        raise InputError(
            f"model {name!r}: the slice structure has element(s) {', '.join(unknown)} that the "
            f"Δ-model does not know (it was trained on {', '.join(delta.species)}); slice a "
            "structure of those elements or use a run of this chemistry")
    identity = _run_identity(spec, run.path, prior_spec, delta.version)
    return DeltaEnergyModel(delta, name=name, batch_atoms=batch_atoms, identity=identity)


def load_energy_model(name: str, batch_atoms: int = DEFAULT_BATCH_ATOMS,
                      device: str = "auto") -> EnergyModel:
    """An :class:`EnergyModel` for a registry name (``chgnet``, ``sevennet-0``, ``mace:PATH``)
    or a run model (``delta:RUN_DIR[@VERSION]``, ``prior:RUN_DIR``)."""
    if parse_run_model(name) is not None:
        return load_run_energy_model(name, batch_atoms, device)
    from pesflow.models.registry import get_calculator

    return EnergyModel(get_calculator(name, device=device), name=name, batch_atoms=batch_atoms)


def check_energy_model(name: str, batch_atoms: int = DEFAULT_BATCH_ATOMS, device: str = "auto",
                       symbols: Sequence[str] | None = None) -> EnergyModel | None:
    """Raise :class:`InputError` if ``name`` cannot be used on ``symbols``.

    A registry model is checked without loading (None is returned); a run model is
    loaded, since that is its check, and returned for reuse.
    """
    if parse_run_model(name) is not None:
        return load_run_energy_model(name, batch_atoms, device, symbols)
    from pesflow.models.registry import check_model

    check_model(name)
    return None
