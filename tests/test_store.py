"""Checkpoints, atomic writes and the run-dir lock."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pesflow.store import (
    Checkpoint,
    CheckpointError,
    RunDirLock,
    RunDirLocked,
    atomic_write,
    atomic_write_json,
    read_checkpoint,
    write_checkpoint,
)


def structures() -> list[Atoms]:
    rng = np.random.default_rng(3)
    out = []
    for n in (3, 5):
        atoms = Atoms(f"Ag{n}", positions=rng.normal(size=(n, 3)), cell=np.eye(3) * 9, pbc=n == 5)
        atoms.calc = SinglePointCalculator(atoms, energy=-n * 1.1, forces=rng.normal(size=(n, 3)))
        atoms.info["origin"] = f"test-{n}"
        out.append(atoms)
    out.append(Atoms("S", positions=[[1, 2, 3]]))  # no energy yet
    return out


def test_round_trip(tmp_path) -> None:
    state = {"engine": {"walkers": [1, 2]}, "rng": {"state": 12345678901234567890}}
    path = tmp_path / "checkpoint.h5"
    write_checkpoint(path, Checkpoint(state, structures(), {"best": np.arange(4.0)}))
    back = read_checkpoint(path)
    assert back.state == state
    np.testing.assert_array_equal(back.arrays["best"], np.arange(4.0))
    for a, b in zip(structures(), back.structures, strict=True):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_array_equal(a.positions, b.positions)
        assert list(a.pbc) == list(b.pbc) and a.info == b.info
        if a.calc is None:
            assert b.calc is None
        else:
            assert b.get_potential_energy() == a.get_potential_energy()
            np.testing.assert_array_equal(b.get_forces(), a.get_forces())


def test_truncated_and_tampered_checkpoints_are_refused(tmp_path) -> None:
    path = tmp_path / "checkpoint.h5"
    write_checkpoint(path, Checkpoint({"n": 1}, structures()))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        read_checkpoint(truncated)
    import h5py

    with h5py.File(path, "r+") as h5:
        h5["structures/energies"][0] = 0.0  # a quiet edit: the file stays valid HDF5
    with pytest.raises(CheckpointError, match="integrity"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path / "missing.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = 1
    with pytest.raises(CheckpointError, match="not a pesflow checkpoint"):
        read_checkpoint(foreign)


def test_run_dir_lock_excludes_a_second_process(tmp_path) -> None:
    with RunDirLock(tmp_path):
        code = (
            "import sys; from pesflow.store import RunDirLock, RunDirLocked\n"
            f"try:\n    RunDirLock({str(tmp_path)!r}).acquire()\n"
            "except RunDirLocked as e:\n    print(e); sys.exit(7)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 7 and "in use by pid" in done.stdout
    RunDirLock(tmp_path).acquire()  # released: free again
    with pytest.raises(RunDirLocked):
        RunDirLock(tmp_path).acquire()  # a second handle in the same process is refused too


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "energies.npy"  # parents are made
    atomic_write(path, lambda handle: np.save(handle, np.arange(3.0)))
    assert np.load(path).tolist() == [0.0, 1.0, 2.0]

    def half_then_fail(handle) -> None:
        handle.write(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert np.load(path).tolist() == [0.0, 1.0, 2.0]
    assert [p.name for p in path.parent.iterdir()] == ["energies.npy"]
    atomic_write_json(path.with_suffix(".json"), {"a": [1, 2]}, indent=2)
    assert path.with_suffix(".json").read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}'
