"""s2DPES chunks as a Parsl python app (executor label ``gpu``).

One task evaluates one chunk of a slice's grid for one model and writes the
chunk file in the slice directory (atomically); it returns that file's path.
The worker rebuilds the chunk's cells from ``geometry.npz`` (numpy only) and
loads each model once per worker process.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from parsl import python_app


@lru_cache(maxsize=8)
def _cached_model(name: str, batch_atoms: int, device: str, thread: int):
    from pesflow.pes.energies import load_energy_model

    return load_energy_model(name, batch_atoms, device)


def _energy_model(name: str, batch_atoms: int, device: str):
    # One load per worker and model (loading CHGNet costs ~1 s, a chunk seconds); per
    # thread too, because ASE calculators keep state and are not thread-safe.
    return _cached_model(name, batch_atoms, device, threading.get_ident())


def evaluate_slice_chunk(out: str, model: str, index: int, batch_atoms: int = 100,
                         device: str = "auto") -> str:
    """Evaluate chunk ``index`` of the slice in ``out`` with ``model``; return the file path."""
    from pesflow.pes.slices import evaluate_chunk, open_run

    energy_model = _energy_model(model, batch_atoms, device)
    energy_model.name = model
    return str(evaluate_chunk(open_run(out), energy_model, index))


@python_app(executors=["gpu"], ignore_for_cache=["parsl_resource_specification"])
def slice_chunk_app(out: str, model: str, index: int, batch_atoms: int = 100,
                    device: str = "auto", parsl_resource_specification: dict | None = None) -> str:
    """Parsl app around :func:`evaluate_slice_chunk`."""
    from pesflow.apps.pes import evaluate_slice_chunk

    return evaluate_slice_chunk(out, model, index, batch_atoms, device)
