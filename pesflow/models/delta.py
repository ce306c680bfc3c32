"""Δ-model: a SOAP sparse GPR on top of any prior, and the ASE calculator that serves it.

E_model = E_prior + E_Δ, E_Δ = Σ_atoms k(x_i, X_m) α + n_atoms μ (SPEC.md §1).

Uncertainty is either the paper's ensemble (K members trained on targets with artificial
noise, all from one factorisation with K+1 right-hand sides) or the projected-process
variance. Either way the lower confidence bound E − κσ and its forces cost one kernel
gradient: ∇σ is a linear combination of the members' gradients (ensemble) or a kernel
gradient plus a self-kernel term (projected process).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixAtoms

from pesflow.errors import InputError
from pesflow.models.gpr import (
    SELECTORS,
    Kernel,
    SparseGPRFit,
    fit_sparse_gpr,
    prior_variance,
    projected_variance,
)
from pesflow.models.soap import SoapDescriptor, SoapSettings

FORMAT = "pesflow-delta-model"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DeltaSettings:
    """Settings of the Δ-model (defaults: the paper's, SPEC.md §1).

    Attributes
    ----------
    soap
        SOAP hyperparameters.
    kernel
        Gaussian kernel amplitude θ0 and length scale ℓ.
    noise_energy
        σ_E (eV): a structure's energy noise variance is σ_E² n_atoms.
    n_inducing
        Number of inducing environments.
    inducing_selection
        ``"cur"`` (leverage-score sampling) or ``"random"``.
    reselect_every
        Re-select inducing points after this many trainings ...
    reselect_growth
        ... or once the number of environments grew by this fraction since the last
        selection (0 re-selects on every training, as AGOX does below 10·M environments).
    jitter
        Relative diagonal jitter on K_mm.
    ensemble_size, sigma_prior, sigma_label
        K, σ_p (eV/atom) and σ_l (eV/atom) of the ensemble uncertainty.
    uncertainty
        ``"ensemble"``, ``"projected"`` or ``"none"``.
    mean
        Constant part μ of the Δ: ``"per_atom"`` (mean residual per atom, the default),
        ``"per_structure"`` (AGOX's mean residual per structure) or ``"zero"``.
    periodic_derivatives
        SOAP derivatives for periodic structures: ``"auto"``, ``"images"``, ``"numerical"``.
    """

    soap: SoapSettings = field(default_factory=SoapSettings)
    kernel: Kernel = field(default_factory=Kernel)
    noise_energy: float = 0.01
    n_inducing: int = 1000
    inducing_selection: str = "cur"
    reselect_every: int = 25
    reselect_growth: float = 0.5
    jitter: float = 1e-8
    ensemble_size: int = 10
    sigma_prior: float = 0.001
    sigma_label: float = 0.025
    uncertainty: str = "ensemble"
    mean: str = "per_atom"
    periodic_derivatives: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.noise_energy > 0, "noise_energy must be > 0 (eV)"),
            (self.n_inducing >= 1, "n_inducing must be >= 1"),
            (self.inducing_selection in SELECTORS, "inducing_selection must be 'cur' or 'random'"),
            (self.reselect_every >= 1, "reselect_every must be >= 1"),
            (self.reselect_growth >= 0, "reselect_growth must be >= 0"),
            (self.jitter >= 0, "jitter must be >= 0"),
            (self.uncertainty in ("ensemble", "projected", "none"),
             "uncertainty must be 'ensemble', 'projected' or 'none'"),
            (self.uncertainty != "ensemble" or self.ensemble_size >= 2,
             "an ensemble needs ensemble_size >= 2"),
            (self.mean in ("per_atom", "per_structure", "zero"),
             "mean must be 'per_atom', 'per_structure' or 'zero'"),
            (self.kernel.amplitude > 0 and self.kernel.length_scale > 0,
             "kernel amplitude and length_scale must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"Δ-model settings: {message}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DeltaSettings:
        data = dict(data)
        soap = SoapSettings(**data.pop("soap", {}))
        kernel = Kernel(**data.pop("kernel", {}))
        return cls(soap=soap, kernel=kernel, **data)


@dataclass
class _Prediction:
    energy: float  # Δ energy (mean member), eV
    sigma: float | None
    forces: np.ndarray | None  # −∇(E_Δ − κσ)


class DeltaModel:
    """Sparse-GPR Δ-model on top of a prior calculator.

    Parameters
    ----------
    species
        All chemical symbols of the problem.
    prior
        ASE calculator for E_prior, or None (pure GPR).
    settings
        Model settings.
    seed
        Seed or generator for inducing-point selection and ensemble noise.
    """

    def __init__(
        self,
        species: Sequence[str],
        prior: Calculator | None = None,
        settings: DeltaSettings | None = None,
        seed: int | np.random.Generator = 0,
    ) -> None:
        self.settings = settings or DeltaSettings()
        self.species = sorted(set(species))
        self.prior = prior
        self.descriptor = SoapDescriptor(
            self.species, self.settings.soap, self.settings.periodic_derivatives
        )
        self.kernel = self.settings.kernel
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        k = self.settings.ensemble_size if self.settings.uncertainty == "ensemble" else 0
        # Ensemble: per-atom prior offsets μ_k, drawn once so retraining keeps members.
        self._member_offset = self.rng.normal(0.0, self.settings.sigma_prior, size=k)
        # Training data cache (one entry per structure).
        self._structures: list[Atoms] = []
        self._x: list[np.ndarray] = []
        self._energy: list[float] = []
        self._prior_energy: list[float] = []
        self._label_noise: list[np.ndarray] = []
        # Inducing points and the L K_nm rows computed against them.
        self._xm: np.ndarray | None = None
        self._all_inducing = False  # True while every environment is an inducing point
        self._lk = np.zeros((0, 0))
        self._n_env_at_selection = 0
        self._trains_since_selection = 0
        self.fit: SparseGPRFit | None = None
        self.mu = 0.0
        self.version = 0

    # ------------------------------------------------------------------ data
    @property
    def n_train(self) -> int:
        """Number of training structures."""
        return len(self._structures)

    @property
    def n_trained(self) -> int:
        """Number of training structures in the current fit."""
        return self._lk.shape[0] if self.fit is not None else 0

    def add_data(
        self, structures: Sequence[Atoms], energies: Sequence[float] | None = None
    ) -> None:
        """Add oracle-labelled structures; their prior energies and SOAP vectors are cached.

        Parameters
        ----------
        structures
            Structures; without ``energies`` each must carry a calculator with its energy
            (e.g. a SinglePointCalculator).
        energies
            Target energies (eV), one per structure.
        """
        structures = list(structures)
        if energies is not None and len(energies) != len(structures):
            raise InputError(
                f"add_data got {len(structures)} structures but {len(energies)} energies"
            )
        k = len(self._member_offset)
        for index, atoms in enumerate(structures):
            if energies is not None:
                energy = float(energies[index])
            else:
                try:
                    energy = float(atoms.get_potential_energy())
                except RuntimeError:
                    raise InputError(
                        f"training structure {index} ({atoms.get_chemical_formula()}) has no "
                        "energy; attach a SinglePointCalculator or pass energies="
                    ) from None
            clean = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            x = self.descriptor.create(clean)
            n = len(clean)
            self._structures.append(clean)
            self._x.append(x)
            self._energy.append(energy)
            self._prior_energy.append(self._prior_energy_of(clean))
            self._label_noise.append(self.rng.normal(0.0, self.settings.sigma_label * n, size=k))

    def _prior_energy_of(self, atoms: Atoms) -> float:
        return prior_energy_forces(self.prior, atoms, forces=False)[0]

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Fit the GPR to all data added so far, reusing what did not change."""
        if self.n_train == 0:
            raise InputError("the Δ-model has no training data; call add_data first")
        s = self.settings
        n_atoms = np.array([len(a) for a in self._structures], dtype=float)
        n_env = int(n_atoms.sum())
        self._update_inducing(n_env)
        self._extend_lk()
        residual = np.array(self._energy) - np.array(self._prior_energy)
        if s.mean == "per_atom":
            self.mu = float(residual.sum() / n_env)
            y = residual - self.mu * n_atoms
        elif s.mean == "per_structure":
            self.mu = float(residual.mean())
            y = residual - self.mu
        else:
            self.mu = 0.0
            y = residual
        columns = [y[:, None]]
        if len(self._member_offset):
            noise = np.array(self._label_noise)
            columns.append(y[:, None] + noise - n_atoms[:, None] * self._member_offset[None, :])
        targets = np.concatenate(columns, axis=1)
        noise_var = s.noise_energy**2 * n_atoms
        self.fit = fit_sparse_gpr(self.kernel, self._xm, self._lk, targets, noise_var, s.jitter)
        self._trains_since_selection += 1
        self.version += 1

    def _update_inducing(self, n_env: int) -> None:
        s = self.settings
        if n_env <= s.n_inducing:
            if not self._all_inducing:  # first training, or coming from a sparse selection
                self._lk = np.zeros((0, 0))
            self._xm = np.concatenate(self._x)  # new environments are appended at the end
            self._all_inducing = True
            self._n_env_at_selection = n_env
            return
        due = (
            self._all_inducing
            or self._xm is None
            or self._trains_since_selection >= s.reselect_every
            or n_env >= (1.0 + s.reselect_growth) * self._n_env_at_selection
        )
        if due:
            environments = np.concatenate(self._x)
            chosen = SELECTORS[s.inducing_selection](environments, s.n_inducing, self.rng)
            self._xm = environments[chosen]
            self._all_inducing = False
            self._lk = np.zeros((0, 0))
            self._n_env_at_selection = n_env
            self._trains_since_selection = 0

    def _extend_lk(self) -> None:
        """Bring L K_nm up to date: new columns (new inducing points), then new rows."""
        m = self._xm.shape[0]
        rows, cols = self._lk.shape
        if rows and cols < m:  # inducing points were appended (all-environment mode)
            old = np.concatenate(self._x[:rows])
            extra = self._sum_rows(self.kernel(old, self._xm[cols:]), self._x[:rows])
            self._lk = np.concatenate([self._lk, extra], axis=1)
        if rows < self.n_train:
            new = self._x[rows:]
            block = self._sum_rows(self.kernel(np.concatenate(new), self._xm), new)
            self._lk = block if rows == 0 else np.concatenate([self._lk, block], axis=0)

    @staticmethod
    def _sum_rows(k: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
        starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return np.add.reduceat(k, starts, axis=0)

    # ------------------------------------------------------------ prediction
    def _mean_offset(self, n: int) -> float:
        return self.mu * (n if self.settings.mean == "per_atom" else 1.0)

    def predict_delta(
        self,
        atoms: Atoms,
        forces: bool = True,
        kappa: float = 0.0,
        include: Sequence[int] | None = None,
    ) -> _Prediction:
        """Δ energy, its σ and the forces of E_Δ − κσ (no prior)."""
        s = self.settings
        want_sigma = s.uncertainty != "none"
        if forces:
            x, dx = self.descriptor.derivatives(atoms, include)
        else:
            x, dx = self.descriptor.create(atoms), None
        n = len(atoms)
        if self.fit is None:
            var, dvar = prior_variance(self.kernel, x, gradient=forces and kappa != 0)
            sigma = np.sqrt(var) if want_sigma else None
            grad = None
            if dvar is not None and want_sigma:
                grad = -kappa * dvar / (2.0 * max(sigma, 1e-300))
            return _Prediction(0.0, sigma, self._forces(grad, dx, n) if forces else None)
        fit = self.fit
        k = self.kernel(x, fit.xm)
        member_energy = k.sum(axis=0) @ fit.alpha  # (r,)
        energy = float(member_energy[0]) + self._mean_offset(n)
        coef = fit.alpha[:, 0]
        sigma = None
        extra_grad = None
        if s.uncertainty == "ensemble":
            e_k = member_energy[1:] + n * self._member_offset
            sigma = float(np.std(e_k))
            if forces and kappa != 0 and sigma > 0:
                # ∇σ = Σ_k (E_k − Ē) ∇E_k / (K σ): one combined coefficient vector.
                weights = (e_k - e_k.mean()) / (len(e_k) * sigma)
                coef = coef - kappa * (fit.alpha[:, 1:] @ weights)
        elif s.uncertainty == "projected":
            need = forces and kappa != 0
            var, dvar = projected_variance(fit, self.kernel, x, k, gradient=need)
            sigma = float(np.sqrt(max(var, 0.0)))
            if need and sigma > 0:
                extra_grad = -kappa * dvar / (2.0 * sigma)
        if not forces:
            return _Prediction(energy, sigma, None)
        grad = self.kernel.gradient(k, x, fit.xm, coef)
        if extra_grad is not None:
            grad = grad + extra_grad
        return _Prediction(energy, sigma, self._forces(grad, dx, n))

    @staticmethod
    def _forces(grad: np.ndarray | None, dx: np.ndarray, n: int) -> np.ndarray:
        if grad is None:
            return np.zeros((n, 3))
        # F_a = −Σ_i Σ_f (∂E/∂x_if)(∂x_if/∂r_a)
        return -np.einsum("iacf,if->ac", dx, grad, optimize=True)

    def predict(self, atoms: Atoms) -> tuple[float, float | None]:
        """Model energy E_prior + E_Δ and its σ (None with uncertainty='none')."""
        prediction = self.predict_delta(atoms, forces=False)
        return self._prior_energy_of(atoms) + prediction.energy, prediction.sigma

    def calculator(self, kappa: float = 0.0, skip_fixed: bool = False) -> DeltaCalculator:
        """An ASE calculator for E_prior + E_Δ − κσ (see :class:`DeltaCalculator`)."""
        return DeltaCalculator(self, kappa=kappa, skip_fixed=skip_fixed)

    # ------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> None:
        """Write everything needed to predict and to keep training to an HDF5 file.

        Refuses to overwrite an existing file. Nothing is pickled.
        """
        import h5py

        path = Path(path)
        if path.exists():
            raise InputError(f"{path} exists; the Δ-model does not overwrite files")
        tmp = path.with_name(path.name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["model_version"] = self.version
            f.attrs["settings"] = json.dumps(self.settings.to_dict())
            f.attrs["species"] = json.dumps(self.species)
            f.attrs["prior"] = _describe(self.prior)
            f.attrs["rng_state"] = json.dumps(self.rng.bit_generator.state)
            f.attrs["mu"] = self.mu
            f.attrs["all_inducing"] = self._all_inducing
            f.attrs["n_env_at_selection"] = self._n_env_at_selection
            f.attrs["trains_since_selection"] = self._trains_since_selection
            f["member_offset"] = self._member_offset
            d = f.create_group("data")
            d["n_atoms"] = np.array([len(a) for a in self._structures], dtype=np.int64)
            if self._structures:
                d["numbers"] = np.concatenate([a.numbers for a in self._structures])
                d["positions"] = np.concatenate([a.positions for a in self._structures])
                d["cells"] = np.array([a.cell.array for a in self._structures])
                d["pbc"] = np.array([a.pbc for a in self._structures])
                d["descriptors"] = np.concatenate(self._x)
                d["label_noise"] = np.array(self._label_noise)
            d["energy"] = np.array(self._energy)
            d["prior_energy"] = np.array(self._prior_energy)
            g = f.create_group("gpr")
            g["lk"] = self._lk
            if self._xm is not None:
                g["xm"] = self._xm
            if self.fit is not None:
                g["alpha"] = self.fit.alpha
                g["chol_mm"] = self.fit.chol_mm
                g["chol_b"] = self.fit.chol_b
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, prior: Calculator | None = None) -> DeltaModel:
        """Read a model written by :meth:`save`; ``prior`` must be the prior it was trained on."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise InputError(f"no Δ-model file at {path}")
        try:
            f = h5py.File(path, "r")
        except OSError as error:
            raise InputError(f"{path} is not a readable Δ-model file (not HDF5 or truncated: "
                             f"{error})") from None
        with f:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"{path} is not a pesflow Δ-model file")
            if int(f.attrs["format_version"]) > FORMAT_VERSION:
                raise InputError(
                    f"{path} has Δ-model format {f.attrs['format_version']}; this pesflow reads "
                    f"up to {FORMAT_VERSION}: upgrade pesflow"
                )
            if f.attrs["prior"] != _describe(prior):
                raise InputError(
                    f"{path} was trained on prior {f.attrs['prior']!r} but load got "
                    f"{_describe(prior)!r}; pass the same prior"
                )
            settings = DeltaSettings.from_dict(json.loads(f.attrs["settings"]))
            model = cls(json.loads(f.attrs["species"]), prior, settings)
            model.rng.bit_generator.state = json.loads(f.attrs["rng_state"])
            model.version = int(f.attrs["model_version"])
            model.mu = float(f.attrs["mu"])
            model._all_inducing = bool(f.attrs["all_inducing"])
            model._n_env_at_selection = int(f.attrs["n_env_at_selection"])
            model._trains_since_selection = int(f.attrs["trains_since_selection"])
            model._member_offset = f["member_offset"][()]
            d = f["data"]
            n_atoms = d["n_atoms"][()]
            if len(n_atoms):
                split = np.cumsum(n_atoms)[:-1]
                numbers = np.split(d["numbers"][()], split)
                positions = np.split(d["positions"][()], split)
                model._structures = [
                    Atoms(z, p, cell=c, pbc=b)
                    for z, p, c, b in zip(numbers, positions, d["cells"][()], d["pbc"][()],
                                          strict=True)
                ]
                model._x = np.split(d["descriptors"][()], split)
                model._label_noise = list(d["label_noise"][()])
            model._energy = list(d["energy"][()])
            model._prior_energy = list(d["prior_energy"][()])
            g = f["gpr"]
            model._lk = g["lk"][()]
            model._xm = g["xm"][()] if "xm" in g else None
            if "alpha" in g:
                model.fit = SparseGPRFit(
                    model._xm, g["alpha"][()], g["chol_mm"][()], g["chol_b"][()]
                )
        return model


def _describe(prior: Calculator | None) -> str:
    if prior is None:
        return "none"
    calcs = getattr(prior, "mixer", None)
    if calcs is not None:  # ASE SumCalculator / LinearCombinationCalculator
        return "+".join(_describe(c) for c in calcs.calcs)
    return type(prior).__name__


class DeltaCalculator(Calculator):
    """ASE calculator for E_prior + E_Δ (κ = 0) or the lower confidence bound E − κσ.

    ``results["uncertainty"]`` holds σ of the energy (None-free: 0.0 without uncertainty),
    ``results["prior_energy"]`` and ``results["delta_energy"]`` the two parts.

    Parameters
    ----------
    model
        A (trained or empty) :class:`DeltaModel`; an empty one gives the prior alone.
    kappa
        LCB weight κ (GOFEE uses 2); 0 gives the mean model.
    skip_fixed
        Do not differentiate the SOAP vectors with respect to atoms held by ``FixAtoms``:
        their Δ forces are then left out (set to zero), which optimizers ignore anyway.
        Saves most of the derivative cost for slabs with fixed layers.
    """

    implemented_properties = ("energy", "free_energy", "forces", "uncertainty")

    def __init__(self, model: DeltaModel, kappa: float = 0.0, skip_fixed: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.kappa = float(kappa)
        self.skip_fixed = skip_fixed

    def calculate(
        self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_forces = "forces" in properties
        include = _free_atoms(atoms) if (want_forces and self.skip_fixed) else None
        prediction = self.model.predict_delta(
            atoms, forces=want_forces, kappa=self.kappa, include=include
        )
        sigma = prediction.sigma if prediction.sigma is not None else 0.0
        e_prior, f_prior = prior_energy_forces(self.model.prior, atoms, forces=want_forces)
        energy = e_prior + prediction.energy - self.kappa * sigma
        self.results["energy"] = self.results["free_energy"] = energy
        self.results["uncertainty"] = sigma
        self.results["prior_energy"] = e_prior
        self.results["delta_energy"] = prediction.energy
        if want_forces:
            self.results["forces"] = f_prior + prediction.forces


_PRIOR_LOCKS: dict[int, threading.Lock] = {}
_PRIOR_LOCKS_GUARD = threading.Lock()


def prior_energy_forces(
    prior: Calculator | None, atoms: Atoms, forces: bool = True
) -> tuple[float, np.ndarray | None]:
    """E_prior of ``atoms`` and (with ``forces``) its forces, safe across threads.

    ASE calculators keep their results on the instance, so two threads sharing one prior
    (a coordinator's Δ-models training in the background, two runs in one process) can
    read each other's results or none ("energy not present"). Each prior therefore gets
    a lock, held while it computes on a private copy of ``atoms``; in a thread that owns
    its prior the lock is never contended.
    """
    if prior is None:
        return 0.0, np.zeros((len(atoms), 3)) if forces else None
    with _PRIOR_LOCKS_GUARD:
        lock = _PRIOR_LOCKS.setdefault(id(prior), threading.Lock())
    work = atoms.copy()
    with lock:
        energy = float(prior.get_potential_energy(work))
        f = np.array(prior.get_forces(work)) if forces else None
    return energy, f


def _free_atoms(atoms: Atoms) -> np.ndarray | None:
    fixed = [c.get_indices() for c in atoms.constraints if isinstance(c, FixAtoms)]
    if not fixed:
        return None
    return np.setdiff1d(np.arange(len(atoms)), np.concatenate(fixed))
