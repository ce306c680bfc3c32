"""Surrogate relaxation as a Parsl python app (executor label ``surrogate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parsl import python_app

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from pesflow.search.relax import RelaxResult
    from pesflow.structures.problem import Confinement


@python_app(executors=["surrogate"], ignore_for_cache=["parsl_resource_specification"])
def relax_app(
    atoms: Atoms,
    calculator: str | Calculator,
    calculator_options: dict[str, Any] | None = None,
    fmax: float = 0.05,
    steps: int = 500,
    fixed: int | list[int] | None = None,
    confinement: Confinement | None = None,
    maxstep: float = 0.2,
    parsl_resource_specification: dict | None = None,
) -> RelaxResult:
    """Relax ``atoms`` on a surrogate worker with :func:`pesflow.search.relax.relax`.

    Parameters
    ----------
    atoms
        Starting structure (sent to the worker; not modified).
    calculator
        A model name for :func:`pesflow.models.registry.get_calculator` (built on the
        worker, so nothing heavy travels), or a picklable ASE calculator.
    calculator_options
        Keyword arguments for ``get_calculator`` (e.g. ``{"sigma": 2.5}`` for ``lj``).
    fmax, steps, fixed, confinement, maxstep
        As in :func:`~pesflow.search.relax.relax`.
    parsl_resource_specification
        For Parsl only (``SiteConfig.resource_specification``).

    Returns
    -------
    RelaxResult
        The relaxed structure (with a SinglePointCalculator), energy, fmax, steps.
    """
    from pesflow.models.registry import get_calculator
    from pesflow.search.relax import relax

    if isinstance(calculator, str):
        calculator = get_calculator(calculator, **(calculator_options or {}))
    return relax(
        atoms, calculator, fmax=fmax, steps=steps, fixed=fixed, confinement=confinement,
        maxstep=maxstep,
    )
