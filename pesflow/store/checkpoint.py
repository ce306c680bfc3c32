"""Run state checkpoints in HDF5: written atomically, verified on reading, no pickle.

Layout (format ``pesflow-checkpoint``, version 1)::

    /state_json            the run state (engine, pending tasks, RNG states, ...) as JSON
    /structures/n_atoms    atoms per structure; numbers, positions, forces concatenated
    /structures/cells, pbc, energies (NaN where absent), info_json
    /arrays/<name>         any extra numeric arrays
    attrs: format, version, digest (SHA-256 over every dataset, in name order)

A checkpoint whose digest does not match (tampered, or written by something else) or
that h5py cannot open (truncated) raises :class:`CheckpointError` with the reason; it is
never half-loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pesflow.errors import InputError
from pesflow.store.atomic import atomic_write_bytes

FORMAT = "pesflow-checkpoint"
VERSION = 1


class CheckpointError(InputError):
    """A checkpoint cannot be trusted: unreadable, truncated, tampered or foreign."""


@dataclass
class Checkpoint:
    """What a checkpoint holds."""

    state: dict[str, Any]
    structures: list[Atoms] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _pack_structures(structures: Sequence[Atoms]) -> dict[str, np.ndarray]:
    n = len(structures)
    energies = np.full(n, np.nan)
    forces = []
    for i, atoms in enumerate(structures):
        results = atoms.calc.results if atoms.calc is not None else {}
        if "energy" in results:
            energies[i] = results["energy"]
        f = results.get("forces")
        forces.append(np.full((len(atoms), 3), np.nan) if f is None else np.asarray(f, float))
    info = [json.dumps(atoms.info, default=str) for atoms in structures]
    return {
        "n_atoms": np.array([len(a) for a in structures], dtype=np.int64),
        "numbers": np.concatenate([a.numbers for a in structures]).astype(np.int64)
        if n else np.zeros(0, np.int64),
        "positions": np.concatenate([a.positions for a in structures]) if n else np.zeros((0, 3)),
        "forces": np.concatenate(forces) if n else np.zeros((0, 3)),
        "cells": np.array([a.cell.array for a in structures]).reshape(n, 3, 3),
        "pbc": np.array([a.pbc for a in structures], dtype=bool).reshape(n, 3),
        "energies": energies,
        "info_json": np.array(info, dtype=object),
    }


def _unpack_structures(data: dict[str, np.ndarray]) -> list[Atoms]:
    structures = []
    offsets = np.concatenate([[0], np.cumsum(data["n_atoms"])])
    for i in range(len(data["n_atoms"])):
        part = slice(offsets[i], offsets[i + 1])
        atoms = Atoms(numbers=data["numbers"][part], positions=data["positions"][part],
                      cell=data["cells"][i], pbc=data["pbc"][i])
        atoms.info.update(json.loads(data["info_json"][i]))
        energy, forces = data["energies"][i], data["forces"][part]
        if np.isfinite(energy):
            atoms.calc = SinglePointCalculator(
                atoms, energy=float(energy), forces=None if np.isnan(forces).all() else forces
            )
        structures.append(atoms)
    return structures


def _digest(datasets: dict[str, np.ndarray]) -> str:
    sha = hashlib.sha256()
    for name in sorted(datasets):
        value = datasets[name]
        sha.update(name.encode())
        if value.dtype == object:
            for item in value:
                sha.update(item.encode() if isinstance(item, str) else bytes(item))
                sha.update(b"\0")
        else:
            sha.update(str(value.dtype).encode() + str(value.shape).encode())
            sha.update(np.ascontiguousarray(value).tobytes())
    return sha.hexdigest()


def _datasets(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    datasets = {"state_json": np.array([json.dumps(checkpoint.state)], dtype=object)}
    for name, value in _pack_structures(checkpoint.structures).items():
        datasets[f"structures/{name}"] = value
    for name, value in checkpoint.arrays.items():
        datasets[f"arrays/{name}"] = np.asarray(value)
    return datasets


def write_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temp file in the same dir + rename)."""
    datasets = _datasets(checkpoint)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.attrs.update(format=FORMAT, version=VERSION, digest=_digest(datasets))
        text = h5py.string_dtype()
        for name, value in datasets.items():
            h5.create_dataset(name, data=value, dtype=text if value.dtype == object else None)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`write_checkpoint`.

    Raises
    ------
    CheckpointError
        Missing, not HDF5, truncated, of another format or version, or digest mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a pesflow checkpoint")
            if int(h5.attrs.get("version", -1)) != VERSION:
                raise CheckpointError(
                    f"{path}: checkpoint version {h5.attrs.get('version')} is not supported "
                    f"(this pesflow reads version {VERSION})"
                )
            datasets: dict[str, np.ndarray] = {}
            h5.visititems(lambda name, obj: datasets.__setitem__(name, obj[()])
                          if isinstance(obj, h5py.Dataset) else None)
            digest = h5.attrs.get("digest")
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or not HDF5: {error}); "
            "it was not loaded"
        ) from None
    for name, value in datasets.items():
        if value.dtype == object:
            datasets[name] = np.array(
                [v.decode() if isinstance(v, bytes) else v for v in value], dtype=object
            )
    if _digest(datasets) != digest:
        raise CheckpointError(
            f"checkpoint {path} failed its integrity check (contents changed after writing); "
            "it was not loaded"
        )
    structures = _unpack_structures(
        {k.split("/", 1)[1]: v for k, v in datasets.items() if k.startswith("structures/")}
    )
    arrays = {k.split("/", 1)[1]: v for k, v in datasets.items() if k.startswith("arrays/")}
    return Checkpoint(json.loads(datasets["state_json"][0]), structures, arrays)
