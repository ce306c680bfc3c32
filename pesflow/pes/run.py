"""In-process slice runs: prepare, evaluate, collect, measure, plot."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pesflow.pes.dft_reference import dft_grid, dft_reference
from pesflow.pes.energies import EnergyModel, load_energy_model
from pesflow.pes.metrics import metrics_table
from pesflow.pes.slices import SliceConfig, SliceData, SliceRun, collect, evaluate, prepare
from pesflow.pes.slices import write_json_atomic as _write_json

log = logging.getLogger(__name__)


def displacement_function(run: SliceRun):
    """``f(dq) -> RMS atom displacement (Å)`` for a change of the two slice DOFs."""
    geo = run.geometry
    columns = geo.basis[:, :, list(geo.grid.indices)]  # (N, 3, 2)

    def rms(dq: np.ndarray) -> float:
        cart = np.einsum("nak,k->na", columns, np.asarray(dq, float)) @ geo.cell
        return float(np.sqrt(np.mean(np.sum(cart**2, axis=1))))

    return rms


def finish(run: SliceRun, models: list[str], plot: bool = True) -> tuple[SliceData, dict]:
    """Collect the chunks, write ``slice.npz``, ``metrics.json`` and the plots."""
    from pesflow.pes.plots import plot_differences, plot_energy_vs_distance, plot_slices

    data = collect(run, models)
    dft = dft_grid(run)
    if dft is not None:
        data.energies["dft"] = dft
        models = [*models, "dft"]
    reference = run.config.reference_model
    if reference and reference not in data.energies:
        reference = None
    table = metrics_table(data.energies, data.axes, data.reference_point, data.cost,
                          reference, displacement_function(run))
    data.save(run.out / "slice.npz")
    _write_json(run.out / "metrics.json", {"reference_model": reference, "models": table,
                                           "cost_at_reference": run.meta.get("cost_at_reference")})
    if plot:
        plot_slices(data, run.out / "slice.png", models, shared_scale=run.config.shared_scale)
        plot_energy_vs_distance(data, run.out / "contacts.png", models)
        if reference and len(models) > 1:
            plot_differences(data, reference, run.out / "difference.png", models)
    return data, table


def run_slice(config: SliceConfig, out: str | Path,
              models: Mapping[str, EnergyModel] | None = None,
              plot: bool = True, progress=None) -> tuple[SliceData, dict]:
    """Prepare (or resume) ``out``, evaluate every model in this process, and finish.

    ``models`` maps names to ready :class:`EnergyModel` objects (any ASE calculator);
    by default each name of ``config.models`` is loaded from the model registry.
    """
    run = prepare(config, out)
    if models is None:
        models = {name: load_energy_model(name, config.batch_atoms, config.device)
                  for name in config.models if run.missing(name)}
    for name, model in models.items():
        model.name = name
    evaluate(run, list(models.values()), progress)
    if config.dft_grid:
        dft_reference(run, config.dft_grid, config.dft_settings, config.dft_ranks)
    names = list(dict.fromkeys([*config.models, *models]))
    return finish(run, names, plot)
