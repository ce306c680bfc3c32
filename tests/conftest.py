"""Shared test configuration.

In CI (``CI=true``) a test that uses the real parts (marked ``mpi`` or ``slurm``) must run:
a skip there is turned into a failure, so a missing install step cannot hide behind it.
"""

from __future__ import annotations

import os

import pytest

REAL_PART_MARKERS = ("mpi", "slurm")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if in_ci and report.skipped and any(item.get_closest_marker(m) for m in REAL_PART_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where the real parts must run: {report.longrepr}"


# --- private single-node SLURM (tests/slurm_cluster.py) ----------------------------------


@pytest.fixture(scope="session")
def slurm_cluster():
    """A private single-node SLURM for this test session, with ``SLURM_CONF`` exported.

    Skips with the reason when the host cannot run one (not root, slurm-wlm or munge
    missing). Its own ports and directories keep parallel test runs apart.
    """
    from slurm_cluster import SlurmCluster, SlurmUnavailable, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"single-node SLURM: {reason}")
    # Its root is a fresh /tmp/pesflow-slurm-*, not pytest's tmp dir: that one is mode 0700
    # and a private munged runs as user munge.
    cluster = SlurmCluster()
    try:
        cluster.start()
    except SlurmUnavailable as error:
        pytest.fail(f"single-node SLURM did not start: {error}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster
    cluster.stop()


# --- apps: a serial GPAW reference (tests/test_apps.py, tests/test_slurm.py) -------------


def ag2():
    """Ag2 in an 8 Å box: a GPAW single point of a few seconds with the ``fast`` settings."""
    from ase import Atoms

    atoms = Atoms("Ag2", positions=[[0, 0, 0], [2.6, 0, 0]], cell=[8.0, 8.0, 8.0])
    atoms.center()
    return atoms


@pytest.fixture(scope="session")
def ag2_serial(tmp_path_factory: pytest.TempPathFactory):
    """Ag2 with the ``fast`` settings on one rank, outside Parsl: the MPI runs' reference."""
    from pesflow.dft import run_single_point

    result = run_single_point(ag2(), "fast", ranks=1, root=tmp_path_factory.mktemp("serial"))
    assert result.ok, result.message
    return result


# --- a finished LJ7 search run directory (tests/search_runs.py) --------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run directory of an LJ7 search that ran to the end of its budget (seconds)."""
    from search_runs import make_finished_run

    return make_finished_run(tmp_path_factory.mktemp("finished") / "run")
