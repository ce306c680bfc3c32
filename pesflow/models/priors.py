"""Priors for the Δ-model: any ASE calculator, the repulsive wall, sums of them, or none.

A prior spec is a string such as ``"chgnet"``, ``"repulsive:ratio=0.7,cutoff=3"``,
``"chgnet+repulsive"`` (sum of calculators) or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator

from pesflow.errors import InputError
from pesflow.models.repulsive import RepulsivePrior


def sum_prior(calculators: Sequence[Calculator]) -> Calculator:
    """One calculator whose energy and forces are the sums of those of ``calculators``."""
    calculators = list(calculators)
    if not calculators:
        raise InputError("a sum prior needs at least one calculator")
    if len(calculators) == 1:
        return calculators[0]
    return SumCalculator(calculators)


def _repulsive(text: str | None) -> RepulsivePrior:
    params: dict[str, float] = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("ratio", "cutoff"):
            raise InputError(
                f"cannot read repulsive prior option {item!r}; use repulsive:ratio=0.7,cutoff=3"
            )
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"repulsive prior option {item!r} is not a number") from None
    return RepulsivePrior(**params)


def make_prior(
    spec: str | Calculator | Sequence[Calculator] | None, **options
) -> Calculator | None:
    """Build a prior from a spec string, a calculator, a list of calculators (summed) or None.

    Parameters
    ----------
    spec
        ``None``/``"none"`` (no prior), a calculator, a list of calculators, or a string of
        registry names and ``repulsive[:options]`` joined by ``+``.
    **options
        Passed to :func:`pesflow.models.registry.get_calculator` (e.g. ``device``).
    """
    if spec is None or isinstance(spec, Calculator):
        return spec
    if not isinstance(spec, str):
        return sum_prior(spec)
    if spec.strip().lower() in ("", "none"):
        return None
    from pesflow.models.registry import get_calculator

    parts = []
    for term in spec.split("+"):
        term = term.strip()
        name, _, extra = term.partition(":")
        if name == "repulsive":
            parts.append(_repulsive(extra))
        elif not term:
            raise InputError(f"empty term in prior spec {spec!r}; write e.g. 'chgnet+repulsive'")
        else:
            parts.append(get_calculator(term, **options))
    return sum_prior(parts)


def check_prior(spec: str) -> None:
    """Raise :class:`InputError` if the prior spec names an unknown or unavailable model.

    Nothing is loaded: model files must exist and packages be installed.
    """
    from pesflow.models.registry import check_model

    if spec.strip().lower() in ("", "none"):
        return
    for term in spec.split("+"):
        term = term.strip()
        name, _, extra = term.partition(":")
        if not term:
            raise InputError(f"empty term in prior spec {spec!r}; write e.g. 'chgnet+repulsive'")
        if name == "repulsive":
            _repulsive(extra)
        else:
            try:
                check_model(term)
            except InputError as error:
                raise InputError(f"prior: {error}") from None
