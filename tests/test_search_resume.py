"""SIGKILL a coordinator on local HTEx mid-run and resume it (issue #5 acceptance).

The stand-in oracle counts its own work: one line per evaluation it computed in
``oracle/performed.log``. After the resume, every oracle result is recorded exactly
once; results recorded before the kill were never computed again; any evaluation done
twice belongs to a task that was in flight when the coordinator died.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from search_runs import LJ7_RUN

from pesflow.dft.runner import task_hash
from pesflow.executors.leftovers import leftover_processes
from pesflow.search.tasks import OracleTask, from_dict
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
HTEX = {"name": "htex", "kind": "htex", "surrogate": {"workers": 1, "provider": "local"},
        "dft": {"workers": 1, "ranks": 1, "provider": "local"}}


def performed(run: Path) -> collections.Counter:
    log = run / "oracle" / "performed.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return collections.Counter(json.loads(x)["hash"] for x in lines
                               if json.loads(x)["status"] == "ok")


def pesflow(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "pesflow.cli", *args, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path):
    config, site, run = tmp_path / "run.yaml", tmp_path / "site.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(CONFIG))
    site.write_text(yaml.safe_dump(HTEX))
    coordinator = pesflow("run", str(config), "--site", str(site), "--out", str(run))
    deadline = time.monotonic() + 300
    while sum(performed(run).values()) < 4:
        assert coordinator.poll() is None, coordinator.stdout.read()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.2)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()

    at_kill = read_checkpoint(run / "checkpoint.h5")  # readable after a SIGKILL
    recorded_before = [a.info["oracle_hash"] for a in at_kill.structures]
    assert len(recorded_before) < BUDGET
    in_flight = [from_dict(t) for t in at_kill.state["engine"]["in_flight"]]
    interruptible = {task_hash(t.atoms, {"standin": "lj"}, f"task{t.id}")
                     for t in in_flight if isinstance(t, OracleTask)}
    assert leftover_processes(run), "a SIGKILLed coordinator leaves its HTEx processes"

    resumed = pesflow("resume", str(run))
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "stopped" in (run / "pesflow.log").read_text()  # the leftovers were stopped
    assert not leftover_processes(run)

    final = read_checkpoint(run / "checkpoint.h5")
    assert final.state["n_calls"] == BUDGET
    hashes = [a.info["oracle_hash"] for a in final.structures]
    assert len(hashes) == len(set(hashes)) == BUDGET, "each result recorded exactly once"
    assert set(recorded_before) <= set(hashes), "no recorded result was lost"
    counts = performed(run)
    assert all(counts[h] >= 1 for h in hashes)
    assert all(counts[h] == 1 for h in recorded_before), "a recorded result was recomputed"
    repeated = {h for h, n in counts.items() if n > 1}
    assert repeated <= interruptible, "only tasks in flight at the kill may run twice"
    assert sum(counts.values()) - len(hashes) <= len(interruptible)
    assert set(counts) == set(hashes), "every evaluation the oracle computed is recorded"
    assert final.state["engine"]["in_flight"] == [] or final.state["stop_reason"]
