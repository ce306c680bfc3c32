"""Surrogate calculators on workers, loaded once per model version and per thread.

A coordinator sends a small :class:`SurrogateRef` with every task (the prior spec and
the path of a published Δ-model version), never the model itself. A worker builds the
prior once and loads each Δ-model version once; calculators are kept per thread, because
an ASE calculator holds the last structure and results and is not safe to share
between threads (a ThreadPoolExecutor runs several tasks in one process).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ase.calculators.calculator import Calculator

#: Δ-model versions kept per thread and run: the newest, and the one before for tasks in
#: flight. Several runs (benchmark repeats) may share the workers, so the cache is per run
#: directory, with an overall cap on the models kept.
KEEP_VERSIONS = 2
MAX_MODELS = 32

_local = threading.local()


@dataclass(frozen=True)
class SurrogateRef:
    """What a worker needs to build the surrogate of one model version.

    ``model_path`` is a Δ-model file (HDF5) or ``None`` for the prior alone.
    """

    prior: str
    version: int = 0
    model_path: str | None = None
    device: str = "cpu"


def _cache() -> dict:
    if not hasattr(_local, "priors"):
        _local.priors, _local.models, _local.loads = {}, {}, 0
    return _local.__dict__


def prior_calculator(spec: str, device: str = "cpu") -> Calculator | None:
    """The prior of ``spec`` (:func:`~pesflow.models.priors.make_prior`), built once."""
    priors = _cache()["priors"]
    key = (spec, device)
    if key not in priors:
        from pesflow.models.priors import make_prior

        priors[key] = make_prior(spec, device=device) if spec.strip().lower() != "none" else None
    return priors[key]


def surrogate_calculator(ref: SurrogateRef, kappa: float = 0.0, skip_fixed: bool = False):
    """The surrogate calculator of ``ref`` on this thread (E or its LCB with ``kappa``)."""
    cache = _cache()
    prior = prior_calculator(ref.prior, ref.device)
    if ref.model_path is None:
        if prior is None:
            raise ValueError("a surrogate needs a prior or a Δ-model")
        return prior
    models = cache["models"]  # path -> model, least recently used first
    model = models.pop(ref.model_path, None)
    if model is None:
        from pesflow.models.delta import DeltaModel

        model = DeltaModel.load(ref.model_path, prior=prior)
        cache["loads"] += 1
        run = os.path.dirname(ref.model_path)
        same_run = [path for path in models if os.path.dirname(path) == run]
        for old in same_run[: max(0, len(same_run) - KEEP_VERSIONS + 1)]:
            del models[old]
        for old in list(models)[: max(0, len(models) - MAX_MODELS + 1)]:
            del models[old]
    models[ref.model_path] = model
    return model.calculator(kappa=kappa, skip_fixed=skip_fixed)


def model_loads() -> int:
    """How many Δ-model files this thread has loaded (tests check: once per version)."""
    return _cache()["loads"]
