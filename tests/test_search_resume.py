"""SIGKILL a coordinator on local HTEx mid-run and resume it (issue #5 acceptance).

The stand-in oracle counts its own work: one line per evaluation it computed in
``oracle/performed.log``. After the resume, every oracle result is recorded exactly
once; results recorded before the kill were never computed again; any evaluation done
twice belongs to a task that was in flight when the coordinator died.
(Random kills, also during checkpoint writes, are in tests/test_kill_trials.py.)
"""

from __future__ import annotations

import signal
import time

import yaml
from search_runs import (
    HTEX_SITE,
    LJ7_RUN,
    assert_nothing_lost_or_repeated,
    performed,
    pesflow,
    recorded_and_in_flight,
)

from pesflow.executors.leftovers import leftover_processes
from pesflow.store.checkpoint import read_checkpoint

BUDGET = 12
CONFIG = {
    **LJ7_RUN,
    "name": "lj7-kill",
    "algorithm": {"name": "rex", "settings": {"n_walkers": 3, "oracle_interval": 1,
                                              "oracle_count": 2, "oracle_from": 3,
                                              "steps": 15}},
    "oracle": {"kind": "calculator", "model": "lj", "delay": 0.7},
    "budget": {"oracle_calls": BUDGET},
    "seed": 5,
}


def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path):
    config, site, run = tmp_path / "run.yaml", tmp_path / "site.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(CONFIG))
    site.write_text(yaml.safe_dump(HTEX_SITE))
    coordinator = pesflow("run", str(config), "--site", str(site), "--out", str(run))
    deadline = time.monotonic() + 300
    while sum(performed(run).values()) < 4:
        assert coordinator.poll() is None, coordinator.stdout.read()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.2)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()

    at_kill = read_checkpoint(run / "checkpoint.h5")  # readable after a SIGKILL
    recorded_before, interruptible = recorded_and_in_flight(at_kill, {"standin": "lj"})
    assert len(recorded_before) < BUDGET
    left = [" ".join(proc.cmdline()) for proc in leftover_processes(run)]
    assert left, "a SIGKILLed coordinator leaves its HTEx processes"
    # the pools' worker processes too: their command lines name no run path
    assert any("multiprocessing" in cmdline for cmdline in left), left

    resumed = pesflow("resume", str(run))
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "stopped" in (run / "pesflow.log").read_text()  # the leftovers were stopped
    assert not leftover_processes(run)
    assert_nothing_lost_or_repeated(run, BUDGET, set(recorded_before), interruptible)
