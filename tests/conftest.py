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
