"""Minimum allowed interatomic distances for the distance cost (paper Eq. 1).

D_min(i, j) = scale · (r_i + r_j), with r the Wigner–Seitz radius of the element:
the radius of the sphere whose volume is the volume per atom of the elemental
solid, r = (3 V_m / (4 π N_A))^(1/3), from the molar volumes that pymatgen ships
(``pymatgen.core.Element.molar_volume``, WebElements data).

These radii are large for elements whose standard state is molecular (N, O, S:
1.75, 1.90, 1.83 Å), so the default ``scale`` of 0.35 keeps common bonds (S–O
1.47 Å, N–N 1.25 Å, Ti–O 1.95 Å) free of cost while flagging overlaps.

The s2DPES paper lists its pairs in the figure captions (W2N3: N–N 1.1115, N–W
1.647, W–W 2.1825 Å; AlTiN3: Ti–Ti 1.98, Ti–N 1.55, Ti–Al 2.04, N–N 1.112, N–Al
1.61, Al–Al 2.10 Å). Those equal 0.75 × the RWIGS values of the VASP PAW
potentials, which are licensed and not shipped here; reproduce them with
explicit per-pair values (``pair_overrides``, CLI ``--dmin N-W=1.647``) or
per-element radii (``radius_overrides``, CLI ``--radius N=0.556``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from pesflow.errors import InputError

DEFAULT_SCALE = 0.35
AVOGADRO = 6.02214076e23


def wigner_seitz_radius(symbol: str) -> float:
    """Wigner–Seitz radius (Å) of an element from its molar volume (pymatgen data)."""
    from pymatgen.core import Element

    try:
        volume = Element(symbol).molar_volume  # cm^3/mol
    except ValueError:
        raise InputError(f"unknown element {symbol!r}") from None
    if volume is None:
        raise InputError(
            f"no molar volume for {symbol} in pymatgen's element data; give its radius "
            f"explicitly (--radius {symbol}=R)"
        )
    per_atom = float(volume) * 1e24 / AVOGADRO  # Å^3
    return (3 * per_atom / (4 * math.pi)) ** (1 / 3)


def parse_pair(key: str) -> tuple[str, str]:
    """``"N-W"`` -> ``("N", "W")`` (order-free)."""
    parts = [p.strip() for p in key.split("-")]
    if len(parts) != 2 or not all(parts):
        raise InputError(f"pair {key!r} must be written A-B, e.g. N-W")
    return parts[0], parts[1]


def dmin_matrix(
    symbols: Sequence[str],
    scale: float = DEFAULT_SCALE,
    radius_overrides: Mapping[str, float] | None = None,
    pair_overrides: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """D_min for every atom pair, and the per-element-pair table actually used.

    Parameters
    ----------
    symbols : sequence of str
        Chemical symbols of the cell's atoms.
    scale : float
        Factor on r_i + r_j (not applied to explicit pair values).
    radius_overrides : mapping, optional
        Element -> radius in Å, replacing the Wigner–Seitz table.
    pair_overrides : mapping, optional
        ``"A-B"`` -> D_min in Å, used as given.

    Returns
    -------
    dmin : numpy.ndarray
        Shape (N, N).
    table : dict
        ``"A-B"`` (alphabetical) -> D_min in Å for the elements present.
    """
    if scale <= 0:
        raise InputError(f"radius scale must be positive, got {scale}")
    elements = sorted(set(symbols))
    radii = {e: wigner_seitz_radius(e) for e in elements if e not in (radius_overrides or {})}
    radii.update({e: float(r) for e, r in (radius_overrides or {}).items() if e in elements})
    pairs = {}
    for key, value in (pair_overrides or {}).items():
        a, b = sorted(parse_pair(key))
        pairs[(a, b)] = float(value)
    table = {}
    for a in elements:
        for b in elements:
            if a <= b:
                table[f"{a}-{b}"] = pairs.get((a, b), scale * (radii[a] + radii[b]))
    index = {e: i for i, e in enumerate(elements)}
    small = np.array([[table["-".join(sorted((a, b)))] for b in elements] for a in elements])
    ids = np.array([index[s] for s in symbols])
    return small[np.ix_(ids, ids)], table
