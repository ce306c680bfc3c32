"""GPAW settings for oracle single points, with the two named presets."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pesflow.errors import InputError


class GPAWSettings(BaseModel):
    """Everything that defines a GPAW single point (and nothing about where it runs).

    Attributes
    ----------
    mode
        ``"lcao"`` (atomic basis, cheap) or ``"pw"`` (plane waves, the paper's choice).
    ecut
        Plane-wave cutoff in eV (``pw`` only).
    basis
        LCAO basis set name (``dzp``, ``szp``, ``sz``, or ``sz(dzp)``: the single-zeta part
        of the dzp file, when only dzp is installed); PAW setups and basis sets come from
        the ``gpaw-data`` package.
    xc
        Exchange–correlation functional.
    h
        Real-space grid spacing in Å (LCAO density grid).
    smearing
        Fermi–Dirac width in eV. Ag/S clusters with zero width did not converge in 333
        iterations; 0.1 eV converged in 9 (SPEC.md §6).
    kpts
        Monkhorst–Pack grid; ``None`` for Γ only (clusters).
    spin
        Spin-polarized calculation.
    maxiter
        SCF iteration cap; exceeding it is reported as ``scf_not_converged``.
    timeout
        Wall-time limit in seconds for the whole single point (``None``: no limit).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["lcao", "pw"] = "lcao"
    ecut: float = Field(500.0, gt=0)
    basis: str = "dzp"
    xc: str = "PBE"
    h: float = Field(0.2, gt=0.05, le=0.5)
    smearing: float = Field(0.1, ge=0)
    kpts: tuple[int, int, int] | None = None
    spin: bool = False
    charge: float = 0.0
    maxiter: int = Field(333, ge=1)
    timeout: float | None = Field(None, gt=0)

    @field_validator("kpts", mode="before")
    @classmethod
    def _kpts(cls, value: Any) -> Any:
        if isinstance(value, int):
            return (value, value, 1)
        return value

    def level_of_theory(self) -> str:
        """Short label to print beside every result, e.g. ``"GPAW LCAO dzp PBE, Γ"``."""
        what = f"PW {self.ecut:g} eV" if self.mode == "pw" else f"LCAO {self.basis}"
        k = "Γ" if self.kpts is None else "×".join(map(str, self.kpts)) + " k"
        return f"GPAW {what} {self.xc}, FD {self.smearing:g} eV, {k}"

    def gpaw_parameters(self) -> dict[str, Any]:
        """Keyword arguments for ``gpaw.GPAW`` (without ``txt``)."""
        from gpaw import PW, FermiDirac

        params: dict[str, Any] = {
            "xc": self.xc,
            "occupations": FermiDirac(self.smearing),
            "maxiter": self.maxiter,
            "spinpol": self.spin,
            "charge": self.charge,
            "kpts": self.kpts or (1, 1, 1),
        }
        if self.mode == "pw":
            params["mode"] = PW(self.ecut)
        else:
            params.update(mode="lcao", basis=self.basis, h=self.h)
        return params


#: ``paper``: plane waves 500 eV, PBE (the paper's settings; set kpts per system, e.g. 6×6 for
#: Ag(111)-√7). ``fast``: LCAO dzp PBE, for demos, tests and small machines.
PRESETS: dict[str, GPAWSettings] = {
    "paper": GPAWSettings(mode="pw", ecut=500.0),
    "fast": GPAWSettings(mode="lcao", basis="dzp"),
}


def get_settings(settings: str | dict | GPAWSettings = "fast", **overrides: Any) -> GPAWSettings:
    """Resolve a preset name, a dict or a :class:`GPAWSettings`, with overrides applied.

    Raises
    ------
    InputError
        Unknown preset or invalid field.
    """
    if isinstance(settings, GPAWSettings):
        base = settings.model_dump()
    elif isinstance(settings, str):
        if settings not in PRESETS:
            raise InputError(
                f"unknown DFT settings {settings!r}; choose one of {', '.join(PRESETS)} "
                "or give the fields (mode, basis, ecut, xc, kpts, ...)"
            )
        base = PRESETS[settings].model_dump()
    else:
        base = PRESETS["fast"].model_dump() | dict(settings)
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GPAWSettings(**base)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise InputError(f"DFT settings: {where}: {first['msg']}") from None


def missing_data(settings: GPAWSettings, symbols: list[str]) -> list[str]:
    """PAW datasets and LCAO basis files GPAW would not find for ``symbols`` (file names)."""
    from gpaw.setup_data import search_for_file

    wanted = [f"{s}.{settings.xc}" for s in sorted(set(symbols))]
    if settings.mode == "lcao":
        # "sz(dzp)" is GPAW's sz part of the dzp file: the file is the name in parentheses
        stored = settings.basis.rstrip(")").split("(")[-1]
        wanted += [f"{s}.{stored}.basis" for s in sorted(set(symbols))]
    missing = []
    for name in wanted:
        try:
            search_for_file(name)
        except (FileNotFoundError, RuntimeError):
            missing.append(name)
    return missing
