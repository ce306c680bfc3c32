"""Reading structures from user files with errors meant for people."""

from __future__ import annotations

from pathlib import Path

from ase import Atoms
from ase.io import read

from pesflow.errors import InputError


def read_structure(path: str | Path, index: int | str = -1) -> Atoms:
    """Read one structure with ASE (any format it knows), or raise :class:`InputError`.

    Empty, binary, unreadable files and files without atoms all get one clear message.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"structure file not found: {file}")
    if file.stat().st_size == 0:
        raise InputError(f"structure file is empty: {file}")
    try:
        atoms = read(file, index=index)
    except Exception as error:  # ASE raises many types for unreadable input
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"cannot read a structure from {file} ({reason}); give a file ASE reads "
            "(extxyz, CIF, POSCAR, ...), with the right extension"
        ) from None
    if isinstance(atoms, list):
        atoms = atoms[-1] if atoms else None
    if atoms is None or len(atoms) == 0:
        raise InputError(f"no atoms in {file}")
    return atoms
