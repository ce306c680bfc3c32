"""Turn a model name into an ASE calculator: uMLIPs and cheap stand-ins.

Names (``pesflow models`` lists them):

- ``chgnet``: CHGNet 0.3.0, weights shipped in the ``chgnet`` wheel.
- ``sevennet-0``: SevenNet-0 (11Jul2024), weights shipped in the ``sevenn`` wheel.
- ``mace-mp-0``, ``mace-mpa-0``: need a model file (``mace-mp-0:/path/model``); pesflow never
  downloads, but ``allow_download=True`` hands over to MACE's own downloader.
- ``mace:PATH``: any MACE model file.
- ``emt``, ``lj``, ``morse``: stand-ins with parameters, e.g. ``morse:rho0=3,epsilon=1``.

A spec after ``:`` is a path for file-based models and ``key=value`` pairs for stand-ins.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from pesflow.errors import ModelUnavailableError

#: LJ stand-in defaults: σ = 2.5 Å, ε = 1 eV, unshifted in practice (r_c = 20σ, SPEC.md §6).
LJ_DEFAULTS = {"sigma": 2.5, "epsilon": 1.0, "rc": 50.0}
#: Morse stand-in defaults: minimum at 2^(1/6)σ of the LJ stand-in, ρ0 = 6 (close to LJ).
MORSE_DEFAULTS = {"epsilon": 1.0, "r0": 2 ** (1 / 6) * 2.5, "rho0": 6.0}


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model name."""

    name: str
    description: str
    package: str | None
    needs_file: bool = False

    def installed(self) -> bool:
        return self.package is None or importlib.util.find_spec(self.package) is not None

    def offline_status(self) -> str:
        """One line: can this model be used on this machine without a download?"""
        if not self.installed():
            return f"no: package {self.package!r} not installed"
        if self.needs_file:
            return "with a model file you give (name:PATH)"
        return "yes"


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("chgnet", "CHGNet 0.3.0 (weights in the chgnet wheel)", "chgnet"),
        ModelInfo("sevennet-0", "SevenNet-0 11Jul2024 (weights in the sevenn wheel)", "sevenn"),
        ModelInfo("mace-mp-0", "MACE-MP-0 (large); model file required", "mace", True),
        ModelInfo("mace-mpa-0", "MACE-MPA-0 (medium); model file required", "mace", True),
        ModelInfo("mace", "any MACE model file: mace:PATH", "mace", True),
        ModelInfo("emt", "ASE EMT (Al, Cu, Ag, Au, Ni, Pd, Pt; stand-in)", None),
        ModelInfo("lj", "Lennard-Jones stand-in: lj:sigma=2.5,epsilon=1,rc=50", None),
        ModelInfo("morse", "Morse stand-in: morse:rho0=6,epsilon=1,r0=2.806", None),
    )
}

#: Names MACE's own downloader knows, for the explicit opt-in.
_MACE_DOWNLOAD_NAMES = {"mace-mp-0": "large", "mace-mpa-0": "medium-mpa-0"}


def _help() -> str:
    return (
        f"available: {', '.join(MODELS)}; file-based models take a path as NAME:PATH "
        "(e.g. mace:/models/mace-mpa-0-medium.model); stand-ins take parameters as "
        "NAME:key=value,... (e.g. morse:rho0=3)"
    )


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"name:extra"`` into ``("name", "extra")``; the name is lower-cased."""
    name, _, extra = spec.partition(":")
    return name.strip().lower(), (extra.strip() or None)


def _parameters(name: str, text: str | None) -> dict[str, float]:
    if not text:
        return {}
    params: dict[str, float] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        try:
            if not eq:
                raise ValueError
            params[key.strip()] = float(value)
        except ValueError:
            raise ModelUnavailableError(
                f"model {name!r}: cannot read parameter {item!r}; write key=value pairs, "
                f"e.g. {name}:epsilon=1,sigma=2.5"
            ) from None
    return params


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_file(name: str, path: str | Path | None) -> Path:
    if path is None:
        raise ModelUnavailableError(
            f"model {name!r} needs a model file and pesflow does not download weights; "
            f"pass its path as {name}:PATH (or allow_download=True on a connected machine)"
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelUnavailableError(
            f"model file for {name!r} not found: {file}; check the path given as {name}:PATH"
        )
    return file


def _chgnet(device: str, **_: Any) -> Calculator:
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.load(model_name="0.3.0", use_device=_device(device), verbose=False)
    return CHGNetCalculator(model=model, use_device=_device(device))


def _sevennet(device: str, **_: Any) -> Calculator:
    import torch

    # sevenn 0.10.4 checkpoints hold a `slice`; torch >= 2.6 loads weights_only by default.
    torch.serialization.add_safe_globals([slice])
    from sevenn.sevennet_calculator import SevenNetCalculator

    return SevenNetCalculator("7net-0", device=_device(device))


def _mace(name: str, path: str | None, device: str, allow_download: bool, dtype: str) -> Calculator:
    if path is None and allow_download and name in _MACE_DOWNLOAD_NAMES:
        from mace.calculators import mace_mp

        model = _MACE_DOWNLOAD_NAMES[name]
        return mace_mp(model=model, device=_device(device), default_dtype=dtype)
    file = _model_file(name, path)
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(file), device=_device(device), default_dtype=dtype)


def _standin(name: str, params: dict[str, float]) -> Calculator:
    if name == "emt":
        from ase.calculators.emt import EMT

        if params:
            raise ModelUnavailableError("model 'emt' takes no parameters")
        return EMT()
    if name == "lj":
        from ase.calculators.lj import LennardJones

        allowed, factory = LJ_DEFAULTS, LennardJones
    else:
        from ase.calculators.morse import MorsePotential

        allowed, factory = MORSE_DEFAULTS, MorsePotential
    unknown = set(params) - set(allowed)
    if unknown:
        raise ModelUnavailableError(
            f"model {name!r} has no parameter {sorted(unknown)[0]!r}; "
            f"it takes {', '.join(allowed)}"
        )
    return factory(**(allowed | params))


def get_calculator(
    name: str,
    path: str | Path | None = None,
    device: str = "cpu",
    allow_download: bool = False,
    dtype: str = "float64",
    **parameters: float,
) -> Calculator:
    """An ASE calculator for a model name.

    Parameters
    ----------
    name
        A registry name, optionally with ``:PATH`` (file-based models) or
        ``:key=value,...`` (stand-ins); see the module docstring.
    path
        Model file for ``mace-mp-0``, ``mace-mpa-0``, ``mace`` (instead of ``:PATH``).
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"`` for torch models.
    allow_download
        Let MACE download ``mace-mp-0``/``mace-mpa-0`` itself (needs a network).
    dtype
        Float type of MACE models.
    **parameters
        Stand-in parameters (``sigma``, ``epsilon``, ``rho0``, ...).

    Raises
    ------
    ModelUnavailableError
        Unknown name, package not installed, or model file missing (an ``InputError``).
    """
    key, extra = parse_model_spec(name)
    info = MODELS.get(key)
    if info is None:
        raise ModelUnavailableError(f"unknown model {name!r}; {_help()}")
    if not info.installed():
        raise ModelUnavailableError(
            f"model {key!r} needs the Python package {info.package!r}, which is not installed; "
            "install pesflow with the matching extra (e.g. pip install 'pesflow[mace]')"
        )
    makers: dict[str, Callable[[], Calculator]] = {
        "chgnet": lambda: _chgnet(device),
        "sevennet-0": lambda: _sevennet(device),
    }
    if key in makers:
        if extra or path:
            raise ModelUnavailableError(f"model {key!r} ships its weights and takes no path")
        return makers[key]()
    if info.needs_file:
        return _mace(key, extra or path, device, allow_download, dtype)
    return _standin(key, _parameters(key, extra) | parameters)


def check_model(name: str, path: str | Path | None = None) -> None:
    """Raise :class:`ModelUnavailableError` if ``name`` could not be loaded (without loading)."""
    key, extra = parse_model_spec(name)
    info = MODELS.get(key)
    if info is None:
        raise ModelUnavailableError(f"unknown model {name!r}; {_help()}")
    if not info.installed():
        raise ModelUnavailableError(f"model {key!r} needs the package {info.package!r}")
    if info.needs_file:
        _model_file(key, extra or path)
    elif info.package is None:
        _parameters(key, extra)
