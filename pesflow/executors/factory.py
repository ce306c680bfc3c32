"""Build a ``parsl.Config`` from a :class:`~pesflow.executors.site.SiteConfig`.

Everything happens inside functions: building a SlurmProvider already shells out
(``sacct``), so nothing here may run at import time.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import parsl
from parsl.config import Config
from parsl.dataflow.dflow import DataFlowKernel
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
from parsl.executors.base import ParslExecutor
from parsl.launchers import SingleNodeLauncher, SrunLauncher
from parsl.providers import LocalProvider, SlurmProvider
from parsl.providers.base import ExecutionProvider

from pesflow.executors.site import (
    DFTSettings,
    GPUSettings,
    ProviderSettings,
    SiteConfig,
    SurrogateSettings,
)

#: Worker processes are single-threaded: parallelism comes from workers and MPI ranks.
INTERCHANGE_MODULE = "parsl.executors.high_throughput.interchange"
SINGLE_THREAD = "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1"


def worker_init(provider: ProviderSettings, single_threaded: bool = True) -> str:
    """Shell lines run before the workers start.

    This Python's ``bin`` directory goes first on ``PATH`` so that Parsl's worker pool and
    ``gpaw`` are the ones of this environment; the site's own ``worker_init`` runs after
    and may override it (``module load``, ``source .../activate``).
    """
    lines = [f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH"]
    if single_threaded:
        lines.append(SINGLE_THREAD)
    if provider.worker_init.strip():
        lines.append(provider.worker_init.strip())
    return "\n".join(lines)


class SlurmBlocks(SlurmProvider):
    """Parsl's SlurmProvider, with two changes for blocks that end under a running search.

    - A block that left ``squeue`` counts as ended. Without accounting Parsl polls
      ``squeue --job IDS``, which fails ("Invalid job id specified") once none of the IDs
      is known any more (``MinJobAge`` after a ``scancel`` or a walltime end); Parsl then
      keeps the block as pending forever and never starts a new one (Parsl issue #1588).
    - ``status_interval``: seconds between status queries (Parsl fixes 60).
    """

    status_interval: int = 60

    @property
    def status_polling_interval(self) -> int:
        return self.status_interval

    def execute_wait(self, cmd: str, timeout: float | None = None) -> tuple[int, str, str]:
        retcode, stdout, stderr = super().execute_wait(cmd, timeout)
        if retcode != 0 and "Invalid job id" in stderr:
            status_query = getattr(self, "_cmd", "").split("{0}")[0]  # set after sacct -X
            if status_query.startswith("squeue") and cmd.startswith(status_query):
                return 0, "", ""  # Parsl marks the jobs it did not see as completed
        return retcode, stdout, stderr


def build_provider(provider: ProviderSettings, init: str) -> ExecutionProvider:
    """A LocalProvider or SlurmProvider for one label (SLURM: runs ``sacct`` once)."""
    launcher = SrunLauncher() if provider.nodes > 1 else SingleNodeLauncher()
    blocks = {
        "init_blocks": provider.init_blocks,
        "min_blocks": provider.min_blocks,
        "max_blocks": provider.max_blocks,
    }
    if provider.type == "local":
        return LocalProvider(nodes_per_block=1, launcher=launcher, worker_init=init, **blocks)
    slurm = SlurmBlocks(
        partition=provider.partition,
        account=provider.account,
        qos=provider.qos,
        constraint=provider.constraint,
        nodes_per_block=provider.nodes,
        cores_per_node=provider.cores,
        mem_per_node=provider.mem_gb,
        gpus_per_node=provider.gpus,
        walltime=provider.walltime,
        scheduler_options=provider.scheduler_options,
        exclusive=provider.exclusive,
        worker_init=init,
        launcher=launcher,
        **blocks,
    )
    if provider.poll_interval is not None:
        slurm.status_interval = provider.poll_interval
    return slurm


def build_executor(
    label: str,
    settings: SurrogateSettings | DFTSettings | GPUSettings,
    site: SiteConfig,
) -> ParslExecutor:
    """The executor for one label of ``site``."""
    if site.kind == "threads":
        return ThreadPoolExecutor(label=label, max_threads=settings.workers)
    provider = settings.provider
    init = worker_init(provider, single_threaded=label != "gpu")
    # Local blocks talk over loopback; SLURM workers need an address of this host.
    address = "127.0.0.1" if provider.type == "local" else site.address
    options: dict = {
        "label": label,
        "provider": build_provider(provider, init),
        "address": address,
        "cores_per_worker": 1.0,
        # A block that ends (scancel, walltime, node failure) is noticed by the missing
        # heartbeats: its tasks then fail with ManagerLost, and new tasks start a new block.
        "heartbeat_period": site.heartbeat_period,
        "heartbeat_threshold": site.heartbeat_threshold,
        # This Python's Parsl, whether or not its bin directory is on PATH.
        "interchange_launch_cmd": [sys.executable, "-m", INTERCHANGE_MODULE],
    }
    if isinstance(settings, GPUSettings):
        options["available_accelerators"] = settings.accelerators
    else:
        # DFT workers only launch MPI jobs: one core each in Parsl's count, whatever
        # the rank count, so a 10-rank site still starts its worker on a 2-core laptop.
        options["max_workers_per_node"] = settings.workers
    return HighThroughputExecutor(**options)


def build_config(site: SiteConfig, run_dir: str | Path) -> Config:
    """A ``parsl.Config`` with one executor per configured label.

    Parameters
    ----------
    site
        A validated site config (:func:`~pesflow.executors.site.load_site`).
    run_dir
        Directory the caller owns (e.g. a pesflow run directory); Parsl's run dir
        (logs, submit scripts, worker logs) is ``run_dir/parsl``.
    """
    parsl_dir = Path(run_dir).resolve() / "parsl"
    parsl_dir.mkdir(parents=True, exist_ok=True)
    executors = [
        build_executor(label, settings, site)
        for label, settings in site.labels().items()
    ]
    return Config(
        executors=executors,
        run_dir=str(parsl_dir),
        # Parsl starts a site's initial blocks at its first strategy tick, not at load:
        # with its default 5 s, every run began with the workers not yet started.
        strategy_period=1,
        retries=site.retries,
        usage_tracking=0,
    )


@contextmanager
def parsl_session(site: SiteConfig, run_dir: str | Path) -> Iterator[DataFlowKernel]:
    """Load ``site`` into Parsl for the ``with`` block, then shut it down.

    On exit, Parsl cancels the blocks it submitted (``scancel`` on SLURM), stops its
    workers and interchanges, and forgets the config so another can be loaded.
    """
    dfk = parsl.load(build_config(site, run_dir))
    try:
        yield dfk
    finally:
        dfk.cleanup()
        parsl.clear()
