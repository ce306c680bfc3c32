"""The Parsl apps with real parts: EMT relaxations and 2-rank GPAW single points.

``exercise_apps`` is shared with test_slurm.py: it runs one surrogate relaxation and one
2-rank GPAW single point on a loaded site and checks them against in-process references.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.cluster import Octahedron
from conftest import ag2
from parsl.dataflow.dflow import DataFlowKernel

from pesflow.apps.dft import dft_result, submit_dft
from pesflow.apps.surrogate import relax_app
from pesflow.dft import OracleResult, prepare_task, read_result
from pesflow.executors import SiteConfig, load_site, parse_site, parsl_session
from pesflow.models.registry import get_calculator
from pesflow.search.relax import relax

SITE_CONFIGS = Path(__file__).resolve().parents[1] / "site-configs"
#: The serial and the 2-rank GPAW energy of one structure agree to this (eV).
MPI_TOLERANCE = 1e-4


def cu_cluster() -> Atoms:
    """A rattled 6-atom Cu octahedron: a few BFGS steps in EMT."""
    atoms = Octahedron("Cu", 2)
    atoms.center(vacuum=5.0)
    atoms.rattle(0.1, seed=3)
    return atoms


def exercise_apps(
    site: SiteConfig,
    run_dir: Path,
    reference: OracleResult,
    while_loaded: Callable[[DataFlowKernel], None] | None = None,
) -> None:
    """Run both apps on ``site`` and check them against in-process references.

    ``while_loaded(dfk)`` runs after both results are in, before Parsl shuts down.
    """
    start = cu_cluster()
    expected = relax(start, get_calculator("emt"), fmax=0.05)
    task = prepare_task(ag2(), "fast", run_dir / "dft")
    with parsl_session(site, run_dir) as dfk:
        spec = site.resource_specification(priority=1)
        relaxed = relax_app(start, "emt", fmax=0.05, parsl_resource_specification=spec)
        single_point = submit_dft(task, site.dft, spec)
        relaxation = relaxed.result(timeout=300)
        oracle = dft_result(single_point, task)
        if while_loaded:
            while_loaded(dfk)

    # The worker ran the same deterministic relaxation as this process.
    assert relaxation.converged
    assert relaxation.steps == expected.steps > 0
    assert relaxation.energy == pytest.approx(expected.energy, abs=1e-10)
    np.testing.assert_allclose(relaxation.atoms.positions, expected.atoms.positions, atol=1e-10)

    # The single point really ran on 2 MPI ranks and agrees with the serial run.
    assert oracle.ok, oracle.message
    assert oracle.info["ranks"] == site.dft.ranks == 2
    assert oracle.energy == pytest.approx(reference.energy, abs=MPI_TOLERANCE)
    np.testing.assert_allclose(oracle.forces, reference.forces, atol=1e-3)
    assert (task / "gpaw.txt").stat().st_size > 0
    assert site.dft.launcher in (task / "mpi.err").read_text()  # Parsl logs the command there


@pytest.mark.mpi
def test_apps_on_threads(tmp_path: Path, ag2_serial):
    site = load_site(SITE_CONFIGS / "local-threads.yaml")
    exercise_apps(site, tmp_path, ag2_serial)


@pytest.mark.mpi
def test_apps_on_local_htex(tmp_path: Path, ag2_serial):
    site = load_site(SITE_CONFIGS / "local-htex.yaml")
    exercise_apps(site, tmp_path, ag2_serial)
    # Parsl's logs went under the caller's run dir.
    assert list((tmp_path / "parsl").glob("*/parsl.log"))


@pytest.mark.mpi
def test_dft_failures_are_structured(tmp_path: Path):
    """A crash and a timeout come back as OracleResults, not exceptions."""
    site = parse_site({"kind": "threads", "dft": {"ranks": 1}})
    crash = prepare_task(ag2(), "fast", tmp_path / "crash")
    settings = json.loads((crash / "settings.json").read_text())
    (crash / "settings.json").write_text(json.dumps(settings | {"mode": "no-such-mode"}))
    slow = prepare_task(ag2(), {"basis": "dzp", "maxiter": 300}, tmp_path / "slow")
    with parsl_session(site, tmp_path):
        crashed = dft_result(submit_dft(crash, site.dft), crash)
        timed_out = dft_result(submit_dft(slow, site.dft, timeout=0.5), slow)
    assert crashed.status == "crashed"
    assert crashed.message.startswith("exit status ")
    assert "ValidationError" in crashed.message  # the bad mode, from mpi.err
    assert timed_out.status == "timeout"
    assert read_result(slow).status == "missing"
