"""s2DPES on Parsl: split a slice's grid into chunks on the ``gpu`` executor.

The slice directory is prepared in this process (symmetry, grid, distance cost);
every (model, missing chunk) pair becomes one :func:`pesflow.apps.pes.slice_chunk_app`
task, so GPU workers share the grid; finished chunks are files, so a rerun submits
only what is missing. Collecting, metrics and plots happen here when all are done.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from pesflow.errors import InputError
from pesflow.pes.slices import SliceConfig, SliceData, SliceRun, prepare

log = logging.getLogger(__name__)


def submit_slice(run: SliceRun, models: list[str], batch_atoms: int = 100,
                 device: str = "auto") -> list:
    """Submit every missing chunk of every model; returns the futures (Parsl must be loaded)."""
    from pesflow.apps.pes import slice_chunk_app

    futures = []
    for model in models:
        for index, _, _ in run.missing(model):
            futures.append(slice_chunk_app(str(run.out), model, index, batch_atoms, device))
    return futures


def run_slice_parsl(config: SliceConfig, out: str | Path, plot: bool = True
                    ) -> tuple[SliceData, dict]:
    """Prepare ``out``, evaluate all chunks through the loaded Parsl config, and finish."""
    from pesflow.pes.run import finish

    run = prepare(config, out)
    futures = submit_slice(run, config.models, config.batch_atoms, config.device)
    log.info("submitted %d chunk tasks to the gpu executor", len(futures))
    for future in futures:
        future.result()
    return finish(run, config.models, plot)


def run_slice_on_site(config: SliceConfig, out: str | Path, site: str | Path,
                      plot: bool = True) -> tuple[SliceData, dict]:
    """:func:`run_slice_parsl` inside a Parsl session for a site config with a ``gpu`` label."""
    from pesflow.executors.factory import parsl_session
    from pesflow.executors.site import load_site

    site_config = load_site(site)
    if "gpu" not in site_config.labels():
        raise InputError(f"site {str(site)!r} has no 'gpu' executor; add a gpu: section "
                         "(accelerators: N) or run without --site")
    prepare(config, out)  # validate and set up before starting workers
    with warnings.catch_warnings():
        # Parsl starts interchanges and worker pools by fork + exec (subprocess); JAX on a
        # GPU (the solver ran in this process) warns at any fork as if the child used JAX.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                category=RuntimeWarning)
        with parsl_session(site_config, out):
            return run_slice_parsl(config, out, plot)
