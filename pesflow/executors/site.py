"""Site configs: where and how pesflow's Parsl apps run, validated from YAML.

A site config names, per executor label, how many workers to start and on what
provider. The labels are fixed because the apps are bound to them:

- ``surrogate``: single-core workers for surrogate relaxations (python apps).
- ``dft``: workers that each launch one ``ranks``-rank MPI job (``mpiexec``/``srun``) from a
  bash app; a plain HighThroughputExecutor, not Parsl's MPIExecutor, so that several
  jobs can share a node.
- ``gpu``: one worker per accelerator (optional).

With ``dft: {shared: true}`` oracle tasks run on the ``surrogate`` workers instead.

``kind: threads`` runs every label in a ThreadPoolExecutor inside this process (laptops,
tests); ``kind: htex`` starts HighThroughputExecutor workers on a local or SLURM provider.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pesflow.errors import InputError

LABELS = ("surrogate", "dft", "gpu")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSettings(_Strict):
    """Where a label's workers run: this machine (``local``) or SLURM blocks (``slurm``).

    ``provider: local`` is short for ``provider: {type: local}``. For SLURM, ``cores`` and
    ``mem_gb`` are per node; ``scheduler_options`` is added verbatim to the batch script
    (``#SBATCH ...`` lines) and ``worker_init`` runs before the workers start (e.g.
    ``module load openmpi``).
    """

    type: Literal["local", "slurm"] = "local"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    walltime: str = "01:00:00"
    nodes: int = Field(1, ge=1, description="nodes per block")
    cores: int | None = Field(None, ge=1, description="cores per node")
    mem_gb: int | None = Field(None, ge=1, description="memory per node (GB)")
    gpus: int | None = Field(None, ge=1, description="GPUs per node")
    init_blocks: int = Field(1, ge=0)
    # 1: Parsl would otherwise stop a pool idle for 2 minutes (a dft pool while the walkers
    # relax), and the next task waits for a new block (on SLURM, in the queue)
    min_blocks: int = Field(1, ge=0)
    max_blocks: int = Field(1, ge=1)
    exclusive: bool = False
    scheduler_options: str = ""
    worker_init: str = ""
    poll_interval: int | None = Field(
        None, ge=1, description="seconds between block status queries (slurm; default 60)"
    )

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str) -> str:
        if not _WALLTIME.match(value):
            raise ValueError("give SLURM's format HH:MM:SS, MM:SS or D-HH:MM:SS, e.g. '02:00:00'")
        return value

    @model_validator(mode="after")
    def _slurm_only(self) -> ProviderSettings:
        slurm_only = ("partition", "account", "qos", "constraint", "cores", "mem_gb", "gpus",
                      "poll_interval")
        given = [name for name in slurm_only if getattr(self, name) is not None]
        if self.type == "local" and (given or self.scheduler_options):
            names = ", ".join(given + (["scheduler_options"] if self.scheduler_options else []))
            raise ValueError(f"{names} only apply to 'type: slurm'")
        if self.init_blocks > self.max_blocks or self.min_blocks > self.max_blocks:
            raise ValueError("need min_blocks <= max_blocks and init_blocks <= max_blocks")
        return self


class _Label(_Strict):
    provider: ProviderSettings = ProviderSettings()

    @field_validator("provider", mode="before")
    @classmethod
    def _short_provider(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value


class SurrogateSettings(_Label):
    """Single-core workers for surrogate relaxations."""

    workers: int = Field(1, ge=1, description="workers per node")


class DFTSettings(_Label):
    """Workers that each launch one MPI job of ``ranks`` ranks.

    ``shared: true`` runs oracle tasks on the surrogate workers instead of a pool of their
    own (one machine, a serial oracle): whichever work there is fills every core; tasks
    run in the order the engine proposed them (a round's surrogate tasks first), so no
    oracle task waits more than a round. ``workers`` and ``provider`` are then unused.
    """

    workers: int = Field(1, ge=1, description="concurrent MPI jobs per node")
    ranks: int = Field(10, ge=1, description="MPI ranks per DFT job")
    launcher: Literal["mpiexec", "srun"] = "mpiexec"
    mpi_args: list[str] = Field(default_factory=list, description="extra launcher arguments")
    shared: bool = Field(
        False, description="run oracle tasks on the surrogate workers, one core each (ranks: 1)"
    )

    @model_validator(mode="after")
    def _shared_is_serial(self) -> DFTSettings:
        if self.shared and self.ranks != 1:
            raise ValueError(
                f"shared: true runs each oracle task on one surrogate worker's core, but ranks "
                f"is {self.ranks}: set 'ranks: 1', or drop 'shared' to give DFT workers of "
                "their own"
            )
        return self


class GPUSettings(_Label):
    """One worker per accelerator: a count, or device IDs (``["0", "1"]``)."""

    accelerators: int | list[str] = 1

    @field_validator("accelerators")
    @classmethod
    def _some(cls, value: int | list[str]) -> int | list[str]:
        if (value if isinstance(value, int) else len(value)) < 1:
            raise ValueError("give at least one accelerator")
        return value

    @property
    def workers(self) -> int:
        return self.accelerators if isinstance(self.accelerators, int) else len(self.accelerators)


class SiteConfig(_Strict):
    """A whole site: the executor kind, the labels, and Parsl-wide options."""

    name: str = ""
    description: str = ""
    kind: Literal["threads", "htex"] = "htex"
    surrogate: SurrogateSettings = SurrogateSettings()
    dft: DFTSettings = DFTSettings()
    gpu: GPUSettings | None = None
    address: str | None = Field(
        None, description="address workers use to reach this process (htex on SLURM)"
    )
    retries: int = Field(0, ge=0)
    heartbeat_period: int = Field(
        30, ge=1, description="seconds between heartbeats of HTEx workers and interchange"
    )
    heartbeat_threshold: int = Field(
        120, ge=2,
        description="seconds without a heartbeat after which a block's workers count as lost: "
        "their tasks fail (ManagerLost) and pesflow retries the oracle tasks among them",
    )
    cores: int | None = Field(
        None, ge=1,
        description="cores the run occupies, for CPU time = cores x wall time (default: "
        "surrogate workers + dft workers x ranks, at most this machine's cores where every "
        "label is local)",
    )

    @model_validator(mode="after")
    def _heartbeat(self) -> SiteConfig:
        if self.heartbeat_period >= self.heartbeat_threshold:
            raise ValueError(
                f"heartbeat_period ({self.heartbeat_period} s) must be shorter than "
                f"heartbeat_threshold ({self.heartbeat_threshold} s)"
            )
        return self

    @model_validator(mode="after")
    def _threads_are_local(self) -> SiteConfig:
        if self.kind == "threads":
            remote = [label for label, cfg in self.labels().items() if cfg.provider.type != "local"]
            if remote:
                raise ValueError(
                    f"kind 'threads' runs everything in this process; {', '.join(remote)} "
                    "cannot use a slurm provider (use kind: htex)"
                )
        return self

    def labels(self) -> dict[str, SurrogateSettings | DFTSettings | GPUSettings]:
        """The executors this site starts, by label, and their settings (``dft`` with
        ``shared: true`` has none: its tasks run on the ``surrogate`` executor)."""
        dft = None if self.dft.shared else self.dft
        found = {"surrogate": self.surrogate, "dft": dft, "gpu": self.gpu}
        return {label: cfg for label, cfg in found.items() if cfg is not None}

    @property
    def oracle_workers(self) -> int:
        """How many oracle tasks may run at once (per block)."""
        return self.surrogate.workers if self.dft.shared else self.dft.workers

    def resource_specification(self, priority: int | None = None) -> dict:
        """The ``parsl_resource_specification`` for an app call on this site.

        HighThroughputExecutor accepts only ``priority`` (lower runs first); the
        ThreadPoolExecutor rejects any non-empty specification, so threads get ``{}``.
        """
        if self.kind == "threads" or priority is None:
            return {}
        return {"priority": priority}

    def summary(self) -> list[str]:
        """What this site would start, one line per item (``pesflow site check``)."""
        executor = "ThreadPoolExecutor" if self.kind == "threads" else "HighThroughputExecutor"
        lines = [f"site {self.name or '(unnamed)'}: {executor} per label, retries={self.retries}"]
        if self.kind == "htex":
            lines[0] += f", workers lost after {self.heartbeat_threshold} s without a heartbeat"
        for label, cfg in self.labels().items():
            if label == "surrogate":
                what = f"{cfg.workers} single-core worker(s)"
            elif label == "dft":
                args = " ".join(cfg.mpi_args)
                what = (
                    f"{cfg.workers} worker(s), each launching {cfg.ranks}-rank MPI jobs with "
                    f"{cfg.launcher}{' ' + args if args else ''}"
                )
            else:
                what = f"{cfg.workers} worker(s), one per accelerator ({cfg.accelerators})"
            if self.kind == "htex" and cfg.provider.nodes > 1:
                what += f" per node x {cfg.provider.nodes} nodes"
            lines.append(f"  {label}: {what}; {_describe_provider(self.kind, cfg.provider)}")
            cores = cfg.provider.cores if self.kind == "htex" else None
            if label == "dft" and cores and cfg.workers * cfg.ranks > cores:
                lines.append(
                    f"  note: dft runs {cfg.workers} x {cfg.ranks} ranks on {cores} cores per "
                    "node: ranks will share cores"
                )
        if self.dft.shared:
            lines.append("  dft: oracle tasks on the surrogate workers (shared), in the order "
                         "the engine proposed them")
        if "gpu" not in self.labels():
            lines.append("  gpu: not configured (apps on 'gpu' cannot run on this site)")
        return lines


def _describe_provider(kind: str, p: ProviderSettings) -> str:
    if kind == "threads":
        return "threads in this process"
    if p.type == "local":
        return f"local provider, blocks {p.init_blocks} initial / {p.max_blocks} max"
    parts = [f"partition={p.partition or '(default)'}"]
    parts += [
        f"{name}={getattr(p, name)}"
        for name in ("account", "qos", "constraint", "cores", "mem_gb", "gpus")
        if getattr(p, name) is not None
    ]
    parts += [f"nodes={p.nodes}", f"walltime={p.walltime}", f"exclusive={p.exclusive}"]
    blocks = f"blocks {p.init_blocks} initial / {p.max_blocks} max"
    return f"slurm provider ({', '.join(parts)}), {blocks}"


def _format_errors(error: ValidationError, source: str) -> str:
    from pesflow.config import allowed_keys

    messages = []
    for item in error.errors():
        loc = tuple(item["loc"])
        where = ".".join(str(part) for part in loc)
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(allowed_keys(SiteConfig, loc[:-1]))
            messages.append(f"unknown key '{where}' (allowed here: {allowed})")
        else:
            got = item.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            # a whole-site check has no location of its own: its message names the keys
            messages.append(f"{where}: {item['msg']}{shown}" if where
                            else item["msg"].removeprefix("Value error, "))
    return f"site config {source}: " + "; ".join(messages)


def parse_site(data: Any, source: str = "<dict>") -> SiteConfig:
    """Validate an already-loaded site config mapping; raise :class:`InputError` if bad."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(
            f"site config {source}: expected a mapping of keys (kind, surrogate, dft, gpu, ...), "
            f"got {type(data).__name__}"
        )
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as error:
        raise InputError(_format_errors(error, source)) from None


def load_site(path: str | Path) -> SiteConfig:
    """Read and validate a YAML site config.

    Raises
    ------
    InputError
        The file cannot be read, is not YAML, or has an unknown key or a wrong value; the
        message names the file, the key and what is allowed.
    """
    from pesflow.config import read_yaml  # binary files, directories, keys given twice

    path = Path(path)
    site = parse_site(read_yaml(path, "site config"), str(path))
    return site if site.name else site.model_copy(update={"name": path.stem})
