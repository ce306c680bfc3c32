"""A slice run directory: set up once, evaluate resumably, collect.

Layout of ``OUT/``::

    slice.json                 what the slice is (structure, DOFs, grid, D_min table, cost at
                               the reference); written once, compared on every resume
    reference.extxyz           the standardized reference cell
    geometry.npz               affine DOF -> cell map and grid axes (workers need only numpy)
    cost.npz                   distance cost and shortest distance per grid point
    energies/<model>/NNNNN.npy energies (eV/atom) of chunk NNNNN, written atomically
    energies/<model>/model.json  what a run model's energies come from (run, version, prior)
    sigma/<model>/NNNNN.npy    σ (eV/atom) of a ``delta:`` model's chunk, written before its
                               energies (so an energy file means both are there)
    slice.npz, metrics.json    collected raw data and metrics (derived; rebuilt from the above)

A chunk file, once written, is never recomputed or overwritten, so a killed run
resumes where it stopped; a different slice in an existing ``OUT`` is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pesflow.errors import InputError
from pesflow.pes.energies import DEFAULT_BATCH_ATOMS, EnergyModel, has_uncertainty, model_slug
from pesflow.pes.radii import DEFAULT_SCALE, dmin_matrix
from pesflow.pes.solver import DEFAULT_MEMORY_BYTES, Grid, StructureSolver, make_grid
from pesflow.pes.symmetry import SymmetryAnalysis, analyze, read_structure
from pesflow.store.atomic import atomic_write, atomic_write_json

log = logging.getLogger(__name__)


class SliceConfig(BaseModel):
    """Everything that defines a slice run (the CLI flags or a YAML file).

    ``ranges`` default to (0, 1) for both DOFs; ``steps`` is one int or two.
    ``radii`` (element -> Å) and ``dmin`` (``"A-B"`` -> Å) override the Wigner–Seitz table.
    """

    model_config = ConfigDict(extra="forbid")

    structure: str
    dofs: list[str] = Field(min_length=2, max_length=2)
    ranges: list[tuple[float, float]] | None = None
    steps: int | list[int] = 50
    models: list[str] = Field(default_factory=lambda: ["chgnet"])
    symprec: float = 1e-3
    radius_scale: float = DEFAULT_SCALE
    radii: dict[str, float] = Field(default_factory=dict)
    dmin: dict[str, float] = Field(default_factory=dict)
    chunk_points: int = Field(250, ge=1)
    batch_atoms: int = Field(DEFAULT_BATCH_ATOMS, ge=1)
    memory_mb: int = Field(DEFAULT_MEMORY_BYTES // 2**20, ge=1)
    reference_model: str | None = None
    shared_scale: bool = False
    device: str = "auto"
    dft_grid: int = Field(0, ge=0)
    dft_settings: str = "fast"
    dft_ranks: int = Field(1, ge=1)

    @field_validator("models")
    @classmethod
    def _models(cls, models: list[str]) -> list[str]:
        if not models:
            raise ValueError("give at least one model")
        slugs = [model_slug(m) for m in models]
        if len(set(models)) != len(models):
            raise ValueError(f"models must differ: {models}")
        if len(set(slugs)) != len(slugs):
            twins = [m for m, s in zip(models, slugs, strict=True) if slugs.count(s) > 1]
            raise ValueError(f"models {twins} would share one file name ({model_slug(twins[0])}); "
                             "give each run directory its own name")
        return models

    @classmethod
    def from_yaml(cls, path: str | Path) -> SliceConfig:
        """Read a YAML slice file; relative ``structure`` paths are relative to the file."""
        import yaml
        from pydantic import ValidationError

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"cannot read slice file {str(path)!r}: {error}") from None
        if not isinstance(data, dict):
            raise InputError(f"slice file {str(path)!r} must be a mapping of settings")
        if "structure" in data and not Path(str(data["structure"])).is_absolute():
            data["structure"] = str(path.parent / str(data["structure"]))
        try:
            return cls(**data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(f"slice file {str(path)!r}: {where}: {first['msg']}") from None


@dataclass
class SliceGeometry:
    """What a worker needs to build any grid point's cell: numpy only, no spglib."""

    grid: Grid
    cell: np.ndarray
    numbers: np.ndarray
    offset: np.ndarray
    basis: np.ndarray

    def structures(self, start: int, stop: int) -> list[Atoms]:
        """ASE Atoms of flat grid points ``start:stop``."""
        q = self.grid.values(start, stop)
        frac = self.offset + np.einsum("nad,md->mna", self.basis, q)
        return [Atoms(numbers=self.numbers, cell=self.cell, scaled_positions=f, pbc=True)
                for f in frac]

    def save(self, path: Path) -> None:
        atomic_write(path, lambda f: np.savez(
            f, cell=self.cell, numbers=self.numbers, offset=self.offset, basis=self.basis,
            reference=self.grid.reference, axis0=self.grid.axes[0], axis1=self.grid.axes[1],
            indices=np.array(self.grid.indices), names=np.array(self.grid.names)))

    @classmethod
    def load(cls, path: Path) -> SliceGeometry:
        with np.load(path) as d:
            grid = Grid(tuple(str(n) for n in d["names"]), tuple(int(i) for i in d["indices"]),
                        (d["axis0"], d["axis1"]), d["reference"])
            return cls(grid, d["cell"], d["numbers"], d["offset"], d["basis"])


@dataclass
class SliceRun:
    """A prepared slice directory (``config`` is None when opened by a worker)."""

    out: Path
    geometry: SliceGeometry
    meta: dict = field(default_factory=dict)
    config: SliceConfig | None = None

    def chunks(self) -> list[tuple[int, int, int]]:
        """(index, start, stop) of every chunk of flat grid points."""
        size, step = self.geometry.grid.size, int(self.meta["chunk_points"])
        return [(k, s, min(s + step, size)) for k, s in enumerate(range(0, size, step))]

    def chunk_path(self, model: str, index: int) -> Path:
        return self.out / "energies" / model_slug(model) / f"{index:05d}.npy"

    def sigma_path(self, model: str, index: int) -> Path:
        return self.out / "sigma" / model_slug(model) / f"{index:05d}.npy"

    def chunk_done(self, model: str, index: int) -> bool:
        """Whether chunk ``index`` of ``model`` is on disk (with its σ where it has one)."""
        if not self.chunk_path(model, index).exists():
            return False
        return not has_uncertainty(model) or self.sigma_path(model, index).exists()

    def missing(self, model: str) -> list[tuple[int, int, int]]:
        """Chunks of ``model`` not yet on disk."""
        return [c for c in self.chunks() if not self.chunk_done(model, c[0])]


def _identity(meta: dict) -> dict:
    """The part of slice.json that must match for a resume."""
    keys = ("structure_sha256", "dofs", "axes", "symprec", "dmin_table", "chunk_points")
    return {k: meta[k] for k in keys}


def prepare(config: SliceConfig, out: str | Path) -> SliceRun:
    """Analyse the structure, build the grid and the cost map, and set up ``out``.

    An existing ``out`` is resumed if it holds the same slice, refused otherwise.
    """
    out = Path(out)
    atoms = read_structure(config.structure)
    analysis = analyze(atoms, symprec=config.symprec)
    grid = make_grid(analysis, config.dofs, config.ranges, config.steps)
    from pesflow.config import check_elements

    for name in config.models:  # a model lacking an element would give NaN at every point
        check_elements(name, atoms.get_chemical_symbols(), "--model")
    dmin, table = dmin_matrix(analysis.atoms.get_chemical_symbols(), config.radius_scale,
                              config.radii, config.dmin)
    meta = describe(analysis, grid, table, config)
    meta["structure_sha256"] = hashlib.sha256(Path(config.structure).read_bytes()).hexdigest()
    meta["chunk_points"] = config.chunk_points
    geometry = SliceGeometry(grid, np.array(analysis.atoms.cell), analysis.atoms.numbers.copy(),
                             analysis.offset, analysis.basis)
    existing = out / "slice.json"
    if existing.exists():
        old = json.loads(existing.read_text())
        if _identity(old) != _identity(meta):
            raise InputError(
                f"{out} already holds a different slice (structure, DOFs, grid, D_min or chunk "
                "size differ); pass a new --out, or the same settings to resume"
            )
        log.info("resuming slice in %s", out)
        return SliceRun(out, SliceGeometry.load(out / "geometry.npz"), old, config)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not a slice directory; pass a new --out")
    solver = StructureSolver(analysis, dmin, memory_bytes=config.memory_mb * 2**20)
    cost, nearest = solver.grid_cost(grid)
    ref_cost, ref_nearest = solver.cost(analysis.reference[None, :])
    meta["cost_at_reference"] = float(ref_cost[0])
    meta["nearest_at_reference"] = float(ref_nearest[0])
    meta["cost_free_fraction"] = float(np.mean(cost <= 0))
    out.mkdir(parents=True, exist_ok=True)
    analysis.atoms.write(out / "reference.extxyz")
    geometry.save(out / "geometry.npz")
    atomic_write(out / "cost.npz", lambda f: np.savez(f, cost=cost, nearest=nearest))
    atomic_write_json(existing, meta, indent=2)  # last: its presence marks a complete setup
    if meta["cost_at_reference"] > 0:
        log.warning("the reference structure has distance cost %.3g Å: D_min is larger than "
                    "some of its bonds; lower --radius-scale or set --dmin",
                    meta["cost_at_reference"])
    return SliceRun(out, geometry, meta, config)


def open_run(out: str | Path) -> SliceRun:
    """A slice directory prepared earlier (what a worker needs: geometry and chunking)."""
    out = Path(out)
    if not (out / "slice.json").exists():
        raise InputError(f"{out} is not a prepared slice directory (no slice.json)")
    meta = json.loads((out / "slice.json").read_text())
    return SliceRun(out, SliceGeometry.load(out / "geometry.npz"), meta)


def describe(analysis: SymmetryAnalysis, grid: Grid, table: dict, config: SliceConfig) -> dict:
    """JSON metadata of a slice."""
    return {
        "structure": str(config.structure),
        "label": analysis.label,
        "spacegroup": analysis.spacegroup,
        "international": analysis.international,
        "hall_number": analysis.hall_number,
        "natoms": len(analysis.atoms),
        "formula": analysis.atoms.get_chemical_formula(),
        "symprec": config.symprec,
        "orbits": analysis.table(),
        "dofs": list(grid.names),
        "axes": [a.tolist() for a in grid.axes],
        "reference_point": list(grid.reference_point()),
        "dmin_table": {k: round(v, 6) for k, v in table.items()},
        "radius_scale": config.radius_scale,
        "grid_order": "flat index k = i * n2 + j; arrays have shape (n1, n2) indexed [i, j]",
        "energy_unit": "eV/atom",
    }


def _identity_path(out: Path, name: str) -> Path:
    return Path(out) / "energies" / model_slug(name) / "model.json"


def check_identity(out: str | Path, model: EnergyModel, record: bool = False) -> None:
    """Refuse a run model whose chunks in ``out`` came from another run or version.

    ``delta:RUN_DIR`` follows the run's checkpoint, so a slice resumed after the search
    went on would otherwise mix two versions. With ``record`` the identity is written
    when there is none yet. Models without an ``identity`` pass.
    """
    identity = getattr(model, "identity", None)
    if identity is None:
        return
    path = _identity_path(Path(out), model.name)
    if path.exists():
        old = json.loads(path.read_text())
        if old != identity:
            hint = (f"pass delta:{identity['run']}@{old['version']} to resume with the "
                    "energies already there, or a new --out"
                    if old.get("kind") == "delta" and old.get("version") is not None
                    else "pass a new --out")
            raise InputError(
                f"{out} holds {model.name} energies from run {old.get('run')} version "
                f"{old.get('version')}, but {model.name} is now run {identity['run']} "
                f"version {identity['version']}; {hint}")
    elif record:
        atomic_write_json(path, identity, indent=2)


def evaluate_chunk(run: SliceRun, model: EnergyModel, index: int) -> Path:
    """Energies (and σ) of one chunk, written to their files unless they exist already."""
    path = run.chunk_path(model.name, index)
    if run.chunk_done(model.name, index):
        return path
    check_identity(run.out, model, record=True)
    _, start, stop = run.chunks()[index]
    energies, sigma = model.evaluate(run.geometry.structures(start, stop))
    if has_uncertainty(model.name):
        # σ first: an energy file then always has its σ beside it.
        sigma = np.full(len(energies), np.nan) if sigma is None else np.asarray(sigma, float)
        atomic_write(run.sigma_path(model.name, index), lambda f: np.save(f, sigma))
    atomic_write(path, lambda f: np.save(f, energies))
    return path


def evaluate(run: SliceRun, models: Sequence[EnergyModel], progress=None) -> None:
    """Evaluate every missing chunk of every model in this process."""
    for model in models:
        todo = run.missing(model.name)
        log.info("%s: %d of %d chunks to do (%s path)", model.name, len(todo),
                 len(run.chunks()), model.path)
        for index, _, _ in todo:
            evaluate_chunk(run, model, index)
            if progress is not None:
                progress(model.name, index)


@dataclass
class SliceData:
    """Collected arrays of a slice (all of shape ``grid.shape`` where 2D)."""

    axes: tuple[np.ndarray, np.ndarray]
    dofs: tuple[str, str]
    reference_point: tuple[float, float]
    cost: np.ndarray
    nearest: np.ndarray
    energies: dict[str, np.ndarray]
    meta: dict
    #: σ (eV/atom) per point of the models that have one (``delta:RUN_DIR``).
    sigma: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        arrays = {f"energy/{k}": v for k, v in self.energies.items()}
        arrays.update({f"sigma/{k}": v for k, v in self.sigma.items()})
        atomic_write(path, lambda f: np.savez(
            f, axis0=self.axes[0], axis1=self.axes[1], cost=self.cost, nearest=self.nearest,
            reference_point=np.array(self.reference_point), **arrays))

    @classmethod
    def load(cls, out: str | Path) -> SliceData:
        """Read ``slice.npz`` and ``slice.json`` of a finished run (to redraw plots)."""
        out = Path(out)
        meta = json.loads((out / "slice.json").read_text())
        with np.load(out / "slice.npz") as d:
            energies = {k.split("/", 1)[1]: d[k] for k in d.files if k.startswith("energy/")}
            sigma = {k.split("/", 1)[1]: d[k] for k in d.files if k.startswith("sigma/")}
            return cls((d["axis0"], d["axis1"]), tuple(meta["dofs"]),
                       tuple(d["reference_point"]), d["cost"], d["nearest"], energies, meta,
                       sigma)


def collect(run: SliceRun, models: Sequence[str]) -> SliceData:
    """Assemble chunk files into arrays (NaN where a chunk is missing)."""
    grid = run.geometry.grid
    with np.load(run.out / "cost.npz") as d:
        cost, nearest = d["cost"], d["nearest"]

    def assemble(path_of) -> np.ndarray:
        flat = np.full(grid.size, np.nan)
        for index, start, stop in run.chunks():
            path = path_of(index)
            if path.exists():
                flat[start:stop] = np.load(path)
        return flat.reshape(grid.shape)

    energies, sigma = {}, {}
    for name in models:
        energies[name] = assemble(lambda i, n=name: run.chunk_path(n, i))
        if has_uncertainty(name):
            sigma[name] = assemble(lambda i, n=name: run.sigma_path(n, i))
    return SliceData(grid.axes, grid.names, grid.reference_point(), cost, nearest, energies,
                     run.meta, sigma)
