"""Scheduler faults on a real SLURM (issue #8): a Parsl block is scancelled under a search.

``pesflow run`` drives an LJ7 REX search whose ``surrogate`` and ``dft`` workers live in
SLURM batch jobs on the private single-node SLURM (tests/slurm_cluster.py). The stand-in
oracle counts its own work in ``oracle/performed.log``. While an oracle evaluation is
running, its block is cancelled with ``scancel``:

- the run recovers by itself: the lost workers' tasks fail with Parsl's ``ManagerLost``
  once their heartbeats stop, the coordinator retries the oracle task (and drops lost
  surrogate tasks with that reason), Parsl starts a new block, and the budget is reached;
- or the coordinator is stopped during the outage (SIGTERM), leaves no job behind, and
  ``pesflow resume`` completes the run.

Either way every oracle result is recorded exactly once and computed exactly once (the
interrupted evaluation never wrote a result, so it runs once more, after the cancel), and
no batch job of the run is left in ``squeue``. The site shortens Parsl's heartbeat and
status polling (``heartbeat_*``, ``poll_interval``) so that the fault is seen in seconds.
"""

from __future__ import annotations

import collections
import json
import math
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from search_runs import LJ7_RUN
from test_search_resume import performed, pesflow
from test_slurm import assert_clean_shutdown

from pesflow.store.checkpoint import read_checkpoint

pytestmark = [pytest.mark.slurm]

BUDGET = 8
DELAY = 1.5  # seconds per oracle evaluation: the window in which a block is cancelled
CONFIG = {
    **LJ7_RUN,
    "name": "lj7-scancel",
    "algorithm": {"name": "rex", "settings": {"n_walkers": 3, "oracle_interval": 1,
                                              "oracle_count": 2, "oracle_from": 3,
                                              "steps": 15}},
    "oracle": {"kind": "calculator", "model": "lj", "delay": DELAY, "retries": 2},
    "budget": {"oracle_calls": BUDGET},
    "seed": 5,
}
PROVIDER = {"type": "slurm", "walltime": "00:10:00", "cores": 1, "poll_interval": 2}
SITE = {
    "name": "slurm-faults",
    "kind": "htex",
    "heartbeat_period": 1,
    "heartbeat_threshold": 5,
    "surrogate": {"workers": 1, "provider": PROVIDER},
    "dft": {"workers": 1, "ranks": 1, "provider": PROVIDER},
}
LOST = "ManagerLost: Task failure due to loss of manager"


def blocks(cluster) -> dict[str, list[str]]:
    """Label -> IDs of the Parsl blocks (jobs ``parsl.LABEL.block-N.*``) SLURM runs now."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for line in cluster.run("squeue", "-h", "-t", "R", "-o", "%i %j").stdout.splitlines():
        job, name = line.split()
        if name.startswith("parsl."):
            found[name.split(".")[1]].append(job)
    return found


def running_evaluation(run: Path, left: float) -> str | None:
    """Hash of an oracle evaluation started so recently that ``left`` s of it remain."""
    for task in (run / "oracle").glob("*/input.extxyz"):
        started = task.stat().st_mtime
        if not (task.parent / "result.json").exists() and time.time() - started < DELAY - left:
            return task.parent.name
    return None


def surrogate_tasks_lost(run: Path) -> int:
    """Tasks a surrogate worker of the first block received and never completed (Parsl's
    worker log ``surrogate/block-0/MANAGER/worker_0.log``)."""
    received, completed = set(), set()
    for log in (run / "parsl").glob("000/surrogate/block-0/*/worker_*.log"):
        for what, task in re.findall(r"(Received|Completed) executor task (\d+)", log.read_text()):
            (received if what == "Received" else completed).add(task)
    return len(received - completed)


def start_and_cancel(tmp_path: Path, cluster, labels: tuple[str, ...]):
    """Start ``pesflow run``; once 3 evaluations are done and one is running (if the
    surrogate block is cancelled too: preferably while a surrogate task runs as well),
    scancel the blocks of ``labels``. Returns (coordinator, run dir, interrupted hash,
    cancel time, hashes recorded before the cancel)."""
    config, site, run = tmp_path / "run.yaml", tmp_path / "site.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(CONFIG))
    site.write_text(yaml.safe_dump(SITE))
    coordinator = pesflow("run", str(config), "--site", str(site), "--out", str(run))
    deadline = time.monotonic() + 180
    jobs: list[str] = []
    prefer_until = math.inf
    while True:
        assert coordinator.poll() is None, coordinator.stdout.read()
        assert time.monotonic() < deadline, "the run made no progress on SLURM"
        if not jobs and sum(performed(run).values()) >= 3:
            running = blocks(cluster)  # asked before, so that scancel follows at once
            jobs = [job for label in labels for job in running[label]]
            assert len(jobs) == len(labels), running  # one block per label
            prefer_until = time.monotonic() + 15
        interrupted = running_evaluation(run, left=1.0) if jobs else None
        # surrogate tasks run in bursts after oracle results: wait a while for one
        wait = "surrogate" in labels and time.monotonic() < prefer_until
        if interrupted and not (wait and surrogate_tasks_lost(run) == 0):
            break
        time.sleep(0.05)
    cluster.run("scancel", *jobs)
    cancelled = time.time()
    assert not (run / "oracle" / interrupted / "result.json").exists(), "cancelled too late"
    recorded = [a.info["oracle_hash"] for a in read_checkpoint(run / "checkpoint.h5").structures]
    assert interrupted not in recorded and len(recorded) < BUDGET
    return coordinator, run, interrupted, cancelled, recorded


def assert_nothing_lost(run: Path, interrupted: str, cancelled: float, recorded: list[str]):
    """Budget reached; each result recorded once and computed once; the interrupted
    evaluation computed (once) after the cancel."""
    final = read_checkpoint(run / "checkpoint.h5")
    assert final.state["n_calls"] == BUDGET
    assert final.state["failures"] == [], final.state["failures"]
    assert final.state["engine"]["in_flight"] == [] or final.state["stop_reason"]
    hashes = [a.info["oracle_hash"] for a in final.structures]
    assert len(hashes) == len(set(hashes)) == BUDGET, "each result recorded exactly once"
    assert set(recorded) <= set(hashes), "a result recorded before the cancel was lost"
    counts = performed(run)
    assert counts == collections.Counter(hashes), "each evaluation computed exactly once"
    assert interrupted in hashes
    lines = [json.loads(x) for x in (run / "oracle" / "performed.log").read_text().splitlines()]
    (again,) = [x for x in lines if x["hash"] == interrupted]
    # computed after the cancel, by a worker of a new block (a new process)
    assert again["time"] > cancelled
    assert again["pid"] not in {x["pid"] for x in lines if x["time"] < cancelled}


def log_reasons(run: Path) -> tuple[list[str], list[str]]:
    """(reasons of oracle retries, reasons of dropped surrogate tasks) in pesflow.log."""
    text = (run / "pesflow.log").read_text()
    retries = re.findall(r"oracle task \d+ failed \(attempt \d of \d\): (.*); retrying", text)
    retries += re.findall(r"oracle task \d+ lost its worker \((.*)\); resubmitting", text)
    dropped = re.findall(r"\w+ task \d+ dropped: (.*)", text)
    return retries, dropped


def assert_lost_in(run: Path, label: str, reasons: list[str]) -> None:
    """Each reason is Parsl's ManagerLost for a manager of ``label``'s first block (the
    cancelled one): HTEx names each manager's log directory ``LABEL/block-N/MANAGER``."""
    managers = {path.name for path in (run / "parsl").glob(f"000/{label}/block-0/*")}
    for reason in reasons:
        assert reason.startswith(LOST), reason
        assert re.search(r"manager (\w+) on host", reason).group(1) in managers, (reason, managers)


def submitted_blocks(run: Path, label: str) -> set[str]:
    """Block IDs Parsl submitted for ``label`` (from its submit scripts)."""
    scripts = (run / "parsl").glob(f"*/submit_scripts/parsl.{label}.block-*")
    return {path.name.split(".")[2] for path in scripts}


def test_a_block_squeue_no_longer_knows_counts_as_ended(slurm_cluster):
    """Without accounting, Parsl asks ``squeue --job IDS``, which fails for IDs that left
    the queue (``MinJobAge`` after a scancel); Parsl's own provider then keeps the block
    as it was forever and starts no new one. pesflow's counts it as ended."""
    from parsl.jobs.states import JobState, JobStatus
    from parsl.providers import SlurmProvider

    from pesflow.executors.factory import SlurmBlocks, build_provider
    from pesflow.executors.site import ProviderSettings

    gone = str(slurm_cluster.ports["SlurmctldPort"] * 100 - 1)  # below its FirstJobId
    assert "Invalid job id" in slurm_cluster.run("squeue", "-j", gone, check=False).stderr
    ours = build_provider(ProviderSettings(type="slurm", cores=1), init="")
    assert isinstance(ours, SlurmBlocks)
    for provider, after in ((SlurmProvider(cores_per_node=1), JobState.RUNNING),
                            (ours, JobState.COMPLETED)):
        assert provider._cmd.startswith("squeue")  # no accounting on the test cluster
        provider.resources[gone] = {"job_id": gone, "status": JobStatus(JobState.RUNNING),
                                    "job_stdout_path": None, "job_stderr_path": None}
        assert provider.status([gone])[0].state == after, type(provider).__name__


def test_scancelled_blocks_are_replaced_and_the_run_completes(slurm_cluster, tmp_path: Path):
    coordinator, run, interrupted, cancelled, recorded = start_and_cancel(
        tmp_path, slurm_cluster, ("dft", "surrogate")
    )
    output, _ = coordinator.communicate(timeout=240)
    assert coordinator.returncode == 0, output
    assert_clean_shutdown(slurm_cluster, tmp_path)

    assert_nothing_lost(run, interrupted, cancelled, recorded)
    retries, dropped = log_reasons(run)
    assert retries, "the interrupted oracle task was not retried"
    assert_lost_in(run, "dft", retries)
    assert_lost_in(run, "surrogate", dropped)
    # every surrogate task that a worker of the cancelled block never finished was dropped
    assert len(dropped) >= surrogate_tasks_lost(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["surrogate_tasks"]["dropped"] == len(dropped)
    assert summary["stop_reason"] == "oracle budget spent"
    # Parsl started a second block for each label
    # the dft block was replaced (the interrupted evaluation ran in it, checked above); the
    # surrogate label gets a new block when it has work again, which a run that spends its
    # budget on already chosen candidates may not need
    assert submitted_blocks(run, "dft") == {"block-0", "block-1"}
    assert submitted_blocks(run, "surrogate") <= {"block-0", "block-1"}


@pytest.mark.slow  # two coordinator sessions on SLURM: about 80 s on 2 busy cores
def test_stopped_during_the_outage_then_resumed(slurm_cluster, tmp_path: Path):
    coordinator, run, interrupted, cancelled, recorded = start_and_cancel(
        tmp_path, slurm_cluster, ("dft",)
    )
    time.sleep(1.0)  # the coordinator waits on the lost oracle task
    coordinator.send_signal(signal.SIGTERM)  # stops as Ctrl-C does
    output, _ = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 130, output
    assert_clean_shutdown(slurm_cluster, tmp_path)  # the surrogate block was cancelled too
    stopped = read_checkpoint(run / "checkpoint.h5").state
    assert stopped["n_calls"] < BUDGET

    resumed = pesflow("resume", str(run))
    output, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, output
    assert_clean_shutdown(slurm_cluster, tmp_path)
    assert_nothing_lost(run, interrupted, cancelled, recorded)
    final = read_checkpoint(run / "checkpoint.h5").state
    assert len(final["sessions"]) == 2
