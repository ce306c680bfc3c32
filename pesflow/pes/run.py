"""In-process slice runs: prepare, evaluate, collect, measure, plot."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pesflow.pes.dft_reference import dft_grid, dft_reference
from pesflow.pes.energies import (
    EnergyModel,
    check_energy_model,
    load_energy_model,
    parse_run_model,
)
from pesflow.pes.metrics import metrics_table
from pesflow.pes.slices import (
    SliceConfig,
    SliceData,
    SliceRun,
    check_identity,
    collect,
    evaluate,
    open_run,
    prepare,
)
from pesflow.store.atomic import atomic_write_json

log = logging.getLogger(__name__)


def displacement_function(run: SliceRun):
    """``f(dq) -> RMS atom displacement (Å)`` for a change of the two slice DOFs."""
    geo = run.geometry
    columns = geo.basis[:, :, list(geo.grid.indices)]  # (N, 3, 2)

    def rms(dq: np.ndarray) -> float:
        cart = np.einsum("nak,k->na", columns, np.asarray(dq, float)) @ geo.cell
        return float(np.sqrt(np.mean(np.sum(cart**2, axis=1))))

    return rms


def check_models(config: SliceConfig, out: str | Path | None = None) -> dict[str, EnergyModel]:
    """Check every model of ``config`` before anything is written; raise ``InputError``.

    Registry names are checked without loading. Run models (``delta:``/``prior:``) are
    loaded (that is their check: run directory, Δ-model, version, the structure's
    elements) and returned by name for reuse, except those whose chunks are all in
    ``out`` already (a finished model needs no run directory to resume, e.g. after
    its version was pruned). A loaded run model that does not match the energies
    already in ``out`` is refused (:func:`pesflow.pes.slices.check_identity`).
    """
    from pesflow.pes.symmetry import read_structure

    existing = open_run(out) if out is not None and (Path(out) / "slice.json").exists() else None
    symbols = None
    loaded = {}
    for name in config.models:
        if existing is not None and parse_run_model(name) and not existing.missing(name):
            continue
        if symbols is None and parse_run_model(name) is not None:
            symbols = sorted(set(read_structure(config.structure).get_chemical_symbols()))
        model = check_energy_model(name, config.batch_atoms, config.device, symbols)
        if model is not None:
            if existing is not None:
                check_identity(existing.out, model)
            loaded[name] = model
    return loaded


def finish(run: SliceRun, models: list[str], plot: bool = True) -> tuple[SliceData, dict]:
    """Collect the chunks, write ``slice.npz``, ``metrics.json`` and the plots."""
    from pesflow.pes.plots import (
        plot_differences,
        plot_energy_vs_distance,
        plot_slices,
        plot_uncertainty,
    )

    data = collect(run, models)
    dft = dft_grid(run)
    if dft is not None:
        data.energies["dft"] = dft
        models = [*models, "dft"]
    reference = run.config.reference_model
    if reference and reference not in data.energies:
        reference = None
    table = metrics_table(data.energies, data.axes, data.reference_point, data.cost,
                          reference, displacement_function(run), data.sigma)
    data.save(run.out / "slice.npz")
    metrics = {"reference_model": reference, "models": table,
               "cost_at_reference": run.meta.get("cost_at_reference")}
    atomic_write_json(run.out / "metrics.json", metrics, indent=2)
    if plot:
        plot_slices(data, run.out / "slice.png", models, shared_scale=run.config.shared_scale)
        plot_energy_vs_distance(data, run.out / "contacts.png", models)
        if reference and len(models) > 1:
            plot_differences(data, reference, run.out / "difference.png", models)
        if data.sigma:
            plot_uncertainty(data, run.out / "uncertainty.png", list(data.sigma))
    return data, table


def run_slice(config: SliceConfig, out: str | Path,
              models: Mapping[str, EnergyModel] | None = None,
              plot: bool = True, progress=None) -> tuple[SliceData, dict]:
    """Prepare (or resume) ``out``, evaluate every model in this process, and finish.

    ``models`` maps names to ready :class:`EnergyModel` objects (any ASE calculator);
    by default each name of ``config.models`` is checked (:func:`check_models`, before
    ``out`` is touched) and loaded: from the model registry, or from a search run
    directory for ``delta:RUN_DIR[@VERSION]`` and ``prior:RUN_DIR``.
    """
    loaded = check_models(config, out) if models is None else {}
    run = prepare(config, out)
    if models is None:
        models = {name: loaded.get(name)
                  or load_energy_model(name, config.batch_atoms, config.device)
                  for name in config.models if run.missing(name)}
    for name, model in models.items():
        model.name = name
    evaluate(run, list(models.values()), progress)
    if config.dft_grid:
        dft_reference(run, config.dft_grid, config.dft_settings, config.dft_ranks)
    names = list(dict.fromkeys([*config.models, *models]))
    return finish(run, names, plot)
