"""Run configs (``pesflow run RUN.yaml``): validated once, here, before anything starts.

A run config names the problem, the prior, the Δ-model, the search algorithm, the oracle,
the budget and the seed::

    problem: {system: ag2s_cluster, x: 2, box: 12, confinement: 6}
    prior: chgnet                 # registry names and 'repulsive' joined by '+', or 'none'
    model: {delta: true, settings: {n_inducing: 500}, pretrain: data.extxyz}
    algorithm: {name: rex, settings: {n_walkers: 4, oracle_interval: 5, oracle_count: 2}}
    oracle: {kind: gpaw, settings: fast, retries: 2}
    budget: {oracle_calls: 12, wall_time: 15m}
    seed: 1

:func:`load_run_config` reads YAML and returns a :class:`RunConfig`, or raises
:class:`~pesflow.errors.InputError` with one message that names the file, the key and
what is allowed. :meth:`RunConfig.check` then builds the problem, the engine settings,
the Δ-model settings and the DFT settings and checks that model files exist, so that a
run that starts does not fail on its input later.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from ase.data import atomic_numbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pesflow.errors import InputError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|min|h|d)?\s*$")
_SECONDS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
#: Characters that would reach a shell (bash apps) or break file names.
_UNSAFE = re.compile(r"[;&|`$<>\\\"'\n\r\t*?!{}()\[\]#~]")


def parse_duration(value: Any) -> float:
    """Seconds from a number (seconds) or a string such as ``"90"``, ``"15m"``, ``"2h"``."""
    if isinstance(value, bool):
        raise ValueError("give a duration such as 900, '15m' or '2h'")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"cannot read duration {value!r}; give e.g. 900, '15m' or '2h'")
    return float(match.group(1)) * _SECONDS[match.group(2)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemConfig(BaseModel):
    """A named problem builder (:data:`pesflow.structures.problem.BUILDERS`) and its options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    system: str

    @model_validator(mode="after")
    def _known(self) -> ProblemConfig:
        from pesflow.structures.problem import BUILDERS

        if self.system not in BUILDERS:
            raise ValueError(
                f"unknown system {self.system!r}; choose one of {', '.join(BUILDERS)}"
            )
        allowed = list(inspect.signature(BUILDERS[self.system]).parameters)
        unknown = [key for key in self.options if key not in allowed]
        if unknown:
            raise ValueError(
                f"{self.system} has no option {unknown[0]!r} (its options: {', '.join(allowed)})"
            )
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The keys beyond the known fields: options for the system's builder."""
        return dict(self.model_extra or {})

    def build(self):
        """The :class:`~pesflow.structures.problem.Problem` (raises ``InputError``)."""
        from pesflow.structures.problem import BUILDERS

        try:
            return BUILDERS[self.system](**self.options)
        except InputError as error:
            raise InputError(f"problem: {error}") from None
        except (TypeError, ValueError) as error:
            raise InputError(f"problem {self.system}: {error}") from None


class ModelConfig(Strict):
    """The Δ-model on top of the prior.

    ``delta: false`` searches in the prior alone. ``settings`` are
    :class:`~pesflow.models.delta.DeltaSettings` fields (``soap`` and ``kernel`` as
    mappings). ``pretrain``: structures with energies from the oracle (extxyz) to train on
    before the search; ``pretrained``: a Δ-model file (HDF5) to start from.
    """

    delta: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    pretrain: Path | None = None
    pretrained: Path | None = None

    @model_validator(mode="after")
    def _one_start(self) -> ModelConfig:
        if self.pretrain and self.pretrained:
            raise ValueError("give pretrain (data) or pretrained (a model file), not both")
        if not self.delta and (self.pretrain or self.pretrained or self.settings):
            raise ValueError("settings, pretrain and pretrained need delta: true")
        return self

    def delta_settings(self):
        """``settings`` as :class:`~pesflow.models.delta.DeltaSettings` (InputError if unknown)."""
        from pesflow.models.delta import DeltaSettings

        try:
            return DeltaSettings.from_dict(self.settings)
        except TypeError as error:
            names = ", ".join(DeltaSettings.__dataclass_fields__)
            raise InputError(f"model.settings: {error} (known: {names})") from None


def known_algorithm(name: str) -> str:
    """``name`` if it is a search engine's name (a pydantic validator body), else ValueError."""
    from pesflow.search.engines import ENGINES

    if name not in ENGINES:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ENGINES)}")
    return name


class AlgorithmConfig(Strict):
    """The search engine: ``rss``, ``basin_hopping``, ``gofee``, ``rex`` or ``oracle_rss``."""

    name: str
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        return known_algorithm(value)


class _Oracle(Strict):
    retries: int = Field(2, ge=0, le=20, description="extra attempts of a failed evaluation")


class GPAWOracle(_Oracle):
    """GPAW single points under MPI; ranks, launcher and MPI arguments come from the site."""

    kind: Literal["gpaw"]
    settings: str | dict[str, Any] = "fast"
    timeout: float | None = Field(None, gt=0, description="seconds per single point")

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    def gpaw_settings(self):
        """``settings`` (a preset name or a mapping) as GPAW settings (InputError if bad)."""
        from pesflow.dft.settings import get_settings

        try:
            return get_settings(self.settings)
        except InputError as error:
            raise InputError(f"oracle.settings: {error}") from None


class CalculatorOracle(_Oracle):
    """A stand-in oracle: any registry calculator (``lj``, ``emt``, ``morse:rho0=3``, ...).

    ``delay`` seconds are added to each evaluation to imitate DFT cost: spent sleeping,
    or with ``busy: true`` burning one core (for utilization benchmarks).
    """

    kind: Literal["calculator"]
    model: str
    delay: float = Field(0.0, ge=0, le=3600)
    busy: bool = False


OracleConfig = Annotated[GPAWOracle | CalculatorOracle, Field(discriminator="kind")]
#: The tags of the oracle union, which pydantic puts into error locations.
_ORACLE_KINDS = ("gpaw", "calculator")


class BudgetConfig(Strict):
    """When the search ends: after ``oracle_calls`` oracle calls and/or ``wall_time``."""

    oracle_calls: int | None = Field(None, ge=1, le=10_000_000)
    wall_time: float | None = Field(None, gt=0, description="seconds, or '15m', '2h'")

    @field_validator("wall_time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _some(self) -> BudgetConfig:
        if self.oracle_calls is None and self.wall_time is None:
            raise ValueError("give oracle_calls and/or wall_time")
        return self


class RunConfig(Strict):
    """A whole search run (see the module docstring for an example)."""

    name: str = Field("", max_length=100)
    problem: ProblemConfig
    prior: str = "none"
    model: ModelConfig = ModelConfig()
    algorithm: AlgorithmConfig
    oracle: OracleConfig
    budget: BudgetConfig
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    @field_validator("name", "prior")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        if _UNSAFE.search(value):
            raise ValueError(
                f"{value!r} contains shell or file-name metacharacters; use letters, digits, "
                "'-', '_', '.', ':', '=', ',', '+' and '/'"
            )
        return value

    def check(self) -> None:
        """Build everything the run needs from this config; raise ``InputError`` if any fails."""
        from pesflow.models.priors import check_prior
        from pesflow.models.registry import check_model
        from pesflow.search.engines import ENGINES

        problem = self.problem.build()
        unknown = [s for s in problem.species if s not in atomic_numbers or s == "X"]
        if unknown:
            raise InputError(
                f"problem {self.problem.system}: unknown element {unknown[0]!r} in its "
                f"composition ({problem.formula}); use chemical symbols such as Cu or Ag"
            )
        engine = ENGINES[self.algorithm.name]
        settings = self.algorithm.settings
        _check_types(engine.settings_class, settings, "algorithm.settings")
        try:
            engine.settings_class.fromdict(settings)
        except InputError as error:
            raise InputError(f"algorithm.settings: {error}") from None
        except (TypeError, ValueError) as error:  # a settings class's own checks
            raise InputError(f"algorithm.settings: {error}") from None
        try:
            check_prior(self.prior)
        except InputError as error:
            message = str(error)
            raise InputError(message if message.startswith("prior") else f"prior: {message}"
                             ) from None
        check_elements(self.prior, problem.species, "prior")
        check_fits(problem)
        if engine.uses_surrogate and self.prior.strip().lower() == "none" and not self.model.delta:
            raise InputError(
                f"algorithm {self.algorithm.name} relaxes in a surrogate: give a prior or "
                "model.delta: true"
            )
        if self.model.delta:
            self.model.delta_settings()
        model = self.model
        for path, what in ((model.pretrain, "pretrain"), (model.pretrained, "pretrained")):
            if path is not None and not Path(path).is_file():
                raise InputError(f"model.{what}: no file at {path}")
        if model.pretrained is not None:
            _check_delta_file(Path(model.pretrained))
        if self.model.pretrain is not None:
            self.pretrain_data(problem)
        if isinstance(self.oracle, GPAWOracle):
            from pesflow.dft.settings import missing_data

            settings = self.oracle.gpaw_settings()
            margin = face_margin(problem)
            if settings.mode == "lcao" and margin < LCAO_MIN_MARGIN:
                raise InputError(
                    f"problem {self.problem.system}: atoms may come {margin:.1f} Å from a "
                    f"non-periodic cell face, and GPAW LCAO needs {LCAO_MIN_MARGIN:g} Å; "
                    "enlarge the cell (box, vacuum) or shrink the confinement"
                )
            missing = missing_data(settings, problem.species)
            if missing:
                raise InputError(
                    f"oracle.settings: GPAW has no {', '.join(missing)} on this machine; choose "
                    "another basis (the gpaw-data package has dzp) or set GPAW_SETUP_PATH"
                )
        else:
            check_model(self.oracle.model)

    def pretrain_data(self, problem) -> list:
        """Structures with energies from ``model.pretrain``, checked against the problem."""
        from ase.io import read

        path = Path(self.model.pretrain)
        try:
            frames = read(path, index=":")
        except Exception as error:  # ASE raises many types for unreadable input
            raise InputError(f"model.pretrain: cannot read {path} ({error})") from None
        species = set(problem.species)
        for i, atoms in enumerate(frames):
            if atoms.calc is None or "energy" not in atoms.calc.results:
                raise InputError(f"model.pretrain: structure {i} of {path} has no energy")
            extra = set(atoms.get_chemical_symbols()) - species
            if extra:
                raise InputError(
                    f"model.pretrain: structure {i} of {path} has {sorted(extra)}, which the "
                    f"problem ({problem.formula}) does not"
                )
        if not frames:
            raise InputError(f"model.pretrain: no structures in {path}")
        return frames


# --------------------------------------------------------------------------- shared helpers


def model_elements(spec: str) -> frozenset[str] | None:
    """Elements a registry model has parameters for; ``None`` when it takes any element.

    Only models whose coverage is known without loading them are listed (EMT); the
    universal potentials cover almost the whole periodic table.
    """
    if spec.partition(":")[0].strip().lower() == "emt":
        from ase.calculators.emt import parameters

        return frozenset(parameters)
    return None


def check_elements(spec: str, symbols: Iterable[str], where: str) -> None:
    """Raise :class:`InputError` if a term of the model ``spec`` (``a+b``) lacks an element."""
    wanted = sorted(set(symbols))
    for term in spec.split("+"):
        known = model_elements(term)
        missing = [s for s in wanted if known is not None and s not in known]
        if missing:
            raise InputError(
                f"{where}: model {term.strip()!r} has no parameters for {', '.join(missing)} "
                f"(it knows {', '.join(sorted(known))}); choose a model that covers "
                f"{', '.join(wanted)}"
            )


def check_fits(problem) -> None:
    """Raise :class:`InputError` if the problem's atoms cannot fit in its confinement.

    A necessary condition only: random structures keep atoms at least 0.3 × the sum of
    covalent radii apart (the paper's bond rule), so spheres of 0.3 r_cov around them are
    disjoint and lie in the confinement grown by the largest such radius.
    """
    import numpy as np
    from ase.data import covalent_radii

    radii = 0.3 * covalent_radii[[atomic_numbers[s] for s in problem.symbols]]
    cell = problem.confinement.cell
    volume = abs(np.linalg.det(cell))
    # heights between opposite faces: each face pushed out by the largest radius
    heights = [volume / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1])) for i in range(3)]
    room = volume * np.prod([1 + 2 * radii.max() / h for h in heights])
    needed = float(np.sum(4 / 3 * np.pi * radii**3))
    if needed > room:
        raise InputError(
            f"problem: {len(problem.symbols)} atoms ({problem.formula}) cannot fit in the "
            f"{volume:.0f} Å³ confinement (their minimum-distance spheres alone take "
            f"{needed:.0f} Å³); place fewer atoms or enlarge the confinement"
        )


#: GPAW LCAO refuses atoms whose basis functions cross a non-periodic cell face; measured
#: here with Ag dzp: 2.5 Å from the face fails (GridBoundsError), 3.0 Å runs.
LCAO_MIN_MARGIN = 3.0


def face_margin(problem) -> float:
    """Smallest distance (Å) from a non-periodic cell face to a template atom or to the
    confinement region; ``inf`` for a fully periodic cell."""
    import itertools

    import numpy as np

    cell = problem.template.cell
    pbc = problem.template.pbc
    if pbc.all():
        return float("inf")
    conf = problem.confinement
    corners = np.array([conf.corner + np.array(k) @ conf.cell
                        for k in itertools.product((0, 1), repeat=3)])
    points = np.vstack([problem.template.positions, corners])
    frac = np.linalg.solve(cell.array.T, points.T).T
    volume = abs(cell.volume)
    margin = float("inf")
    for i in np.flatnonzero(~pbc):
        height = volume / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1]))
        margin = min(margin, float(np.min(frac[:, i]) * height),
                     float(np.min(1 - frac[:, i]) * height))
    return margin


def _check_types(cls: type, data: dict[str, Any], where: str) -> None:
    """Raise :class:`InputError` for a value of ``data`` that is not of its field's type.

    Engine settings are plain dataclasses, which do not check types themselves; strict
    validation refuses ``"3"`` for an int, as the engine would fail on it later.
    """
    from pydantic import TypeAdapter

    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in hints:
            continue  # fromdict names unknown settings with the list of known ones
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError as error:
            message = error.errors()[0]["msg"]
            raise InputError(f"{where}.{key}: {message} (got {value!r})") from None


def _check_delta_file(path: Path) -> None:
    """Raise :class:`InputError` unless ``path`` is a Δ-model file written by pesflow."""
    import h5py

    from pesflow.models.delta import FORMAT

    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("format")
    except OSError:
        raise InputError(
            f"model.pretrained: {path} is not an HDF5 file; give a Δ-model file written by "
            "pesflow (a run's models/vNNNNN.h5)"
        ) from None
    if found != FORMAT:
        raise InputError(
            f"model.pretrained: {path} is not a pesflow Δ-model file (format {found!r}); give "
            "a run's models/vNNNNN.h5"
        )



def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            if (model := _model_of(arg)) is not None:
                return model
    return None


def allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model that the path ``loc`` (to a bad key's parent) leads to."""
    model = root
    for part in loc:
        if not isinstance(part, str):
            continue
        field = model.model_fields.get(part)
        sub = _model_of(field.annotation) if field else None
        if sub is None:
            # a discriminated union member appears as its tag ('gpaw', 'calculator')
            members = {
                m.model_fields["kind"].annotation.__args__[0]: m
                for m in (GPAWOracle, CalculatorOracle)
            }
            sub = members.get(part)
            if sub is None:
                break
        model = sub
    return list(model.model_fields)


def format_validation_error(error: ValidationError, root: type[BaseModel], what: str) -> str:
    """One line naming every problem: the key, what is wrong, what is allowed."""
    messages = []
    for item in error.errors():
        loc = tuple(item["loc"])
        shown_loc = [p for i, p in enumerate(loc) if not (i and loc[i - 1] == "oracle"
                                                          and p in _ORACLE_KINDS)]
        where = ".".join(str(part) for part in shown_loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(allowed_keys(root, loc[:-1]))
            messages.append(f"unknown key '{where}' (allowed here: {allowed})")
        elif item["type"] == "missing":
            messages.append(f"{where}: missing (required)")
        else:
            got = item.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            message = item["msg"].removeprefix("Value error, ")
            messages.append(f"{where}: {message}{shown}")
    return f"{what}: " + "; ".join(messages)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    Plain YAML keeps the last value silently, so a setting written twice would be ignored.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, what: str) -> Any:
    """Parsed YAML of a user file, or ``InputError`` naming the file and the line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{what} {path}: is a directory, not a YAML file") from None
    except OSError as error:
        raise InputError(f"{what} {path}: cannot read it ({error.strerror})") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise InputError(f"{what} {path}: not a text file (binary content)") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        detail = f" ({problem})" if problem and "twice" in problem else ""
        raise InputError(f"{what} {path}: not valid YAML{where}{detail}") from None


def parse_run_config(data: Any, source: str = "<dict>") -> RunConfig:
    """Validate an already-loaded run config mapping; raise :class:`InputError` if bad."""
    if not isinstance(data, dict):
        raise InputError(
            f"run config {source}: expected a mapping with problem, prior, model, algorithm, "
            f"oracle, budget, seed; got {type(data).__name__ if data is not None else 'nothing'}"
        )
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        message = format_validation_error(error, RunConfig, f"run config {source}")
        raise InputError(message) from None


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run config (see the module docstring)."""
    config = parse_run_config(read_yaml(path, "run config"), str(path))
    return config if config.name else config.model_copy(update={"name": Path(path).stem})


def dump_run_config(config: RunConfig) -> str:
    """YAML text of ``config`` that :func:`load_run_config` reads back to an equal config."""
    data = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
