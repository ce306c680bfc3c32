"""GPAW single points: real GPAW, real MPI ranks, structured failures."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from pesflow.cli import main
from pesflow.dft import get_settings, mpi_command, prepare_task, run_single_point
from pesflow.dft.runner import mpi_launch
from pesflow.errors import InputError

pytestmark = pytest.mark.skipif(
    shutil.which("mpiexec") is None, reason="needs Open MPI (apt-get install openmpi-bin)"
)


def ag2s() -> Atoms:
    atoms = Atoms("Ag2S", positions=[[0, 0, 0], [2.7, 0, 0], [1.35, 1.7, 0]], cell=[9.0] * 3)
    atoms.center()
    return atoms


@pytest.mark.mpi
def test_two_ranks_agree_with_serial(tmp_path) -> None:
    serial = run_single_point(ag2s(), "fast", ranks=1, root=tmp_path / "serial")
    parallel = run_single_point(ag2s(), "fast", ranks=2, root=tmp_path / "mpi")
    assert serial.ok and parallel.ok, (serial.message, parallel.message)
    assert parallel.info["ranks"] == 2 and serial.info["ranks"] == 1
    assert abs(parallel.energy - serial.energy) < 1e-4
    np.testing.assert_allclose(parallel.forces, serial.forces, atol=1e-3)
    assert np.abs(serial.forces).max() > 0.01  # an unrelaxed geometry: forces are real numbers
    # GPAW's own log is kept in the task directory.
    assert "Energy contributions" in (tmp_path / "mpi" / parallel.task_dir.split("/")[-1] /
                                      "gpaw.txt").read_text()


@pytest.mark.mpi
def test_finished_task_is_not_recomputed(tmp_path) -> None:
    first = run_single_point(ag2s(), "fast", ranks=1, root=tmp_path)
    stamp = (tmp_path / first.task_dir.split("/")[-1] / "result.json").stat().st_mtime_ns
    again = run_single_point(ag2s(), "fast", ranks=1, root=tmp_path)
    assert again.energy == first.energy
    assert (tmp_path / first.task_dir.split("/")[-1] / "result.json").stat().st_mtime_ns == stamp


@pytest.mark.mpi
def test_scf_failure_and_timeout_are_structured(tmp_path) -> None:
    failed = run_single_point(ag2s(), get_settings("fast", maxiter=2), ranks=1, root=tmp_path)
    assert failed.status == "scf_not_converged", failed.message
    timed_out = run_single_point(ag2s(), "fast", ranks=2, root=tmp_path / "t", timeout=0.5)
    assert timed_out.status == "timeout"


def test_task_dir_is_named_by_inputs(tmp_path) -> None:
    a = prepare_task(ag2s(), "fast", tmp_path)
    assert prepare_task(ag2s(), "fast", tmp_path) == a
    assert prepare_task(ag2s(), "paper", tmp_path) != a
    moved = ag2s()
    moved.positions[0, 0] += 0.01
    assert prepare_task(moved, "fast", tmp_path) != a
    assert json.loads((a / "settings.json").read_text())["basis"] == "dzp"


def test_mpi_command_shapes(tmp_path) -> None:
    argv = mpi_command(tmp_path, ranks=10)
    assert argv[0] == "mpiexec" and "-n" in argv and argv[argv.index("-n") + 1] == "10"
    assert argv[-4:] == ["python", "-m", "pesflow.dft.singlepoint", str(tmp_path)]
    assert mpi_command(tmp_path, 4, launcher="srun")[:3] == ["srun", "-n", "4"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_mpi_jobs_started_side_by_side_are_not_bound_to_one_core(tmp_path) -> None:
    """Open MPI binds each mpiexec's ranks from core 0 on: two 1-rank GPAW jobs of two
    dft workers shared core 0 and took twice as long. Each job must see every core."""
    import subprocess
    import sys

    report = "import os, sys; print(sorted(os.sched_getaffinity(0)), file=sys.stderr)"
    argv = [*mpi_launch(1), sys.executable, "-c", report]
    jobs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    seen = [job.communicate(timeout=120)[1].strip().splitlines()[-1] for job in jobs]
    assert all(job.returncode == 0 for job in jobs)
    mine = sorted(os.sched_getaffinity(0))
    assert seen == [str(mine)] * 2, seen


def test_bad_settings_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown DFT settings"):
        get_settings("cheap")
    with pytest.raises(InputError, match="h"):
        get_settings("fast", h=5.0)


@pytest.mark.mpi
def test_dft_command(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    structure = tmp_path / "ag2s.xyz"
    write(structure, ag2s())
    assert main(["dft", str(structure), "--ranks", "2", "--out", str(tmp_path / "t"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "ok" and result["energy"] < 0
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    assert main(["dft", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err


def test_a_reduced_basis_is_looked_up_in_the_file_it_is_cut_from() -> None:
    """`sz(dzp)`: GPAW's single-zeta part of the dzp file (gpaw-data ships dzp only)."""
    from pesflow.dft.settings import missing_data

    assert missing_data(get_settings("fast", basis="sz(dzp)"), ["Ag", "S", "Ag"]) == []
    assert missing_data(get_settings("fast", basis="qzp"), ["Ag"]) == ["Ag.qzp.basis"]
