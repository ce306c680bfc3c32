"""SIGKILL the search coordinator at random moments, then resume it (issue #8, item 1).

One trial starts ``pesflow run`` on a small LJ7 REX stand-in search, SIGKILLs the
coordinator 1 to 3 times (each later session is a ``pesflow resume``), lets the last
resume finish, and checks that nothing was lost or repeated: the budget is complete,
each oracle result is recorded exactly once, results recorded before a kill were never
computed again, only tasks in flight at a kill ran twice, every checkpoint left by a kill
reads back, and no process of the run is left (``search_runs``).

Kill modes (each kill of a trial uses the trial's mode):

``random``
    a time drawn from the trial's seeded generator after the session's anchor (the run
    directory appearing for ``pesflow run``, the run-dir lock taken for ``resume``);
``checkpoint``
    during a checkpoint write: the first ``n`` writes of the session pass (``n`` drawn
    from the generator, so kills spread over the session however fast the machine is),
    then as soon as a new ``.checkpoint.h5.*.tmp`` exists the coordinator is stopped
    (SIGSTOP), and if the temporary file is still there, SIGKILLed; otherwise it goes on
    (SIGCONT) and the next write is taken. So each such kill lands between the temporary
    file's creation and its rename.
``first-checkpoint``
    the same with ``n = 0``: the session's first checkpoint write, before any
    ``checkpoint.h5`` exists (the resume then starts the run afresh);
``startup``
    the first session within 0.25 s of its run directory appearing, which on this
    machine is nearly always before it wrote ``run.yaml``; that directory holds nothing
    to resume, so the next session is ``pesflow run`` again (later kills: ``random``);
``site-write``
    the first session while it writes ``site.yaml`` (after ``run.yaml``), caught like a
    checkpoint write (later kills: ``random``). Not in :func:`trial_plan`: a plain
    ``pesflow resume`` cannot continue such a run yet (it needs ``--site``).

Run as a script for a few trials: ``python tests/kill_trials.py --trials 3``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: search_runs

from search_runs import (
    HTEX_SITE,
    LJ7_RUN,
    THREADS_SITE,
    assert_nothing_lost_or_repeated,
    performed,
    pesflow,
    recorded_and_in_flight,
)

MODES = ("random", "checkpoint", "first-checkpoint", "startup", "site-write")
SITES = {"threads": {"name": "threads", **THREADS_SITE}, "htex": HTEX_SITE}
LEVEL = {"standin": "lj"}  # the oracle's level of theory as hashed into its task names
#: Per site: oracle delay (s: long enough that oracle work fills much of a session),
#: random-delay span of the first session and of a resume (s from the anchor; long enough
#: to reach the end of a session sometimes), timeout of one session (s). ``writes``:
#: checkpoint writes a ``checkpoint`` kill may let pass (a 6-call session writes ~15-25).
TIMING = {"threads": {"delay": 0.4, "run_span": 8.0, "resume_span": 5.0, "timeout": 300.0,
                      "run_writes": 14, "resume_writes": 8},
          "htex": {"delay": 0.5, "run_span": 25.0, "resume_span": 15.0, "timeout": 600.0,
                   "run_writes": 14, "resume_writes": 8}}
TMP_PREFIX, TMP_SUFFIX = ".checkpoint.h5.", ".tmp"  # pesflow.store.atomic's temporary name
SITE_TMP_PREFIX = ".site.yaml."
IN_CREATE = 0x100


def trial_config(budget: int, delay: float, seed: int) -> dict:
    """The stand-in search of one trial: LJ7 REX, an oracle round every iteration."""
    return {
        **LJ7_RUN,
        "name": f"kill-{seed}",
        "algorithm": {"name": "rex", "settings": {"n_walkers": 3, "oracle_interval": 1,
                                                  "oracle_count": 2, "oracle_from": 3,
                                                  "steps": 15}},
        "oracle": {"kind": "calculator", "model": "lj", "delay": delay},
        "budget": {"oracle_calls": budget},
        "seed": seed,
    }


def trial_plan(n: int, first_seed: int = 1000, htex_every: int = 8,
               max_kills: int = 3) -> list[dict]:
    """``n`` trials: 40 % ``checkpoint``, 10 % ``first-checkpoint``, 40 % ``random``, 10 %
    ``startup``; every ``htex_every``-th on local HTEx (from the 4th), the rest on threads."""
    cycle = ("checkpoint", "random", "first-checkpoint", "checkpoint", "random", "startup",
             "checkpoint", "random", "checkpoint", "random")
    return [{"seed": first_seed + i, "mode": cycle[i % len(cycle)],
             "site": "htex" if htex_every and i % htex_every == 3 else "threads",
             "max_kills": max_kills} for i in range(n)]


class _Created:
    """Wakes up when a file is created in a directory (inotify), without busy polling."""

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(path), IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")

    def wait(self, timeout: float) -> None:
        select.select([self.fd], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 65536):
                pass

    def close(self) -> None:
        os.close(self.fd)


def _tmp_names(run: Path, prefix: str = TMP_PREFIX) -> set[str]:
    try:
        return {n for n in os.listdir(run) if n.startswith(prefix) and n.endswith(TMP_SUFFIX)}
    except FileNotFoundError:
        return set()


def _stopped(pid: int, timeout: float = 2.0) -> bool:
    """Wait until every thread of ``pid`` is stopped (a thread in a syscall stops after it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            states = [(Path(t) / "stat").read_text().rsplit(")", 1)[1].split()[0]
                      for t in Path(f"/proc/{pid}/task").iterdir()]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        if all(s in "tTZX" for s in states):
            return True
        time.sleep(0.0005)
    return False


def _wait_anchor(proc: subprocess.Popen, run: Path, session: str, deadline: float) -> bool:
    """Wait for the session's anchor: the run dir exists (``run``) or the session took the
    run-dir lock (``resume``/``rerun``). False if the process ended first."""
    lock = run / ".pesflow.lock"
    while proc.poll() is None and time.monotonic() < deadline:
        if session == "run" and (run / "pesflow.log").exists():
            return True
        if session != "run" and lock.exists() and lock.read_text().strip() == str(proc.pid):
            return True
        time.sleep(0.005)
    return False


def _kill_in_write(proc: subprocess.Popen, run: Path, stale: set[str], deadline: float,
                   prefix: str = TMP_PREFIX, skip: int = 0) -> bool:
    """SIGKILL ``proc`` while a new temporary file ``prefix*.tmp`` (a checkpoint being
    written) exists in ``run``, after letting ``skip`` such writes pass; False if it ended
    first."""
    watch = _Created(run)
    passed: set[str] = set()
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            fresh = _tmp_names(run, prefix) - stale - passed
            if fresh and len(passed) < skip:
                passed |= fresh
                continue
            if not fresh:
                watch.wait(0.2)
                continue
            os.kill(proc.pid, signal.SIGSTOP)
            if _stopped(proc.pid) and _tmp_names(run, prefix) - stale - passed:
                proc.kill()  # a stopped process dies without running another instruction
                return True
            os.kill(proc.pid, signal.SIGCONT)  # the write had finished: take the next one
            passed |= fresh
    finally:
        watch.close()
    return False


def _kill(proc: subprocess.Popen, run: Path, session: str, mode: str, rng: np.random.Generator,
          timing: dict, stale: set[str]) -> dict:
    """Kill one session as ``mode`` says; what happened (``missed``: it ended first)."""
    launched = time.monotonic()
    deadline = launched + timing["timeout"]
    record: dict = {"session": session, "mode": mode}
    first = session in ("run", "rerun")  # a whole run from its start
    delay, skip = 0.0, 0
    if mode == "checkpoint":
        skip = int(rng.integers(0, timing["run_writes" if first else "resume_writes"]))
        record["writes_passed"] = skip
    elif mode in ("random", "startup"):
        span = 0.25 if mode == "startup" else timing["run_span" if first else "resume_span"]
        delay = rng.uniform(0, span)
        record["delay_s"] = round(float(delay), 3)
    killed = False
    if _wait_anchor(proc, run, session, deadline):
        record["anchor_s"] = round(time.monotonic() - launched, 3)
        end = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(min(0.005, max(0.0, end - time.monotonic())))
        if mode in ("checkpoint", "first-checkpoint"):
            killed = _kill_in_write(proc, run, stale, deadline, skip=skip)
        elif mode == "site-write":
            killed = _kill_in_write(proc, run, set(), deadline, SITE_TMP_PREFIX)
        elif proc.poll() is None:
            proc.kill()
            killed = True
    if not killed and proc.poll() is None:  # timed out waiting
        proc.kill()
        proc.wait()
        raise AssertionError(f"{session} session: no {mode} kill within {timing['timeout']} s")
    record["at_s"] = round(time.monotonic() - launched, 3)
    proc.wait()
    record["missed"] = not killed  # it ended on its own before the kill
    if not killed:
        record["rc"] = proc.returncode
    return record


def _inspect(run: Path, record: dict, stale: set[str], recorded_before: set[str],
             interruptible: set[str]) -> None:
    """What a kill left: temporary file, checkpoint (must read back), leftovers."""
    from pesflow.executors.leftovers import leftover_processes
    from pesflow.store.checkpoint import read_checkpoint

    new_tmp = _tmp_names(run) - stale
    stale |= new_tmp
    record["tmp_present"] = bool(new_tmp)  # the kill interrupted a checkpoint write
    record["run_yaml"] = (run / "run.yaml").exists()
    record["site_yaml"] = (run / "site.yaml").exists()
    checkpoint = run / "checkpoint.h5"
    if checkpoint.exists():
        saved = read_checkpoint(checkpoint)  # CheckpointError fails the trial
        recorded, in_flight = recorded_and_in_flight(saved, LEVEL)
        assert recorded_before <= set(recorded), "a checkpoint lost a recorded result"
        recorded_before |= set(recorded)
        interruptible |= in_flight
        record.update(checkpoint="read", n_calls=saved.state["n_calls"],
                      in_flight_oracle=len(in_flight))
    else:
        assert not recorded_before, "checkpoint.h5 disappeared"
        assert not performed(run), "the oracle ran before any checkpoint existed"
        record.update(checkpoint="none", n_calls=0, in_flight_oracle=0)
    record["leftovers"] = len(leftover_processes(run))


def run_trial(workdir: Path, seed: int, mode: str, site: str = "threads", max_kills: int = 3,
              budget: int = 6, kills: int | None = None) -> dict:
    """One trial in ``workdir`` (created); the record of what happened.

    The number of kills is ``kills``, else drawn from 1 to ``max_kills``. ``outcome`` is
    "ok" or "failed: <why>" (a failed trial raises nothing, so a series goes on).
    """
    from pesflow.executors.leftovers import leftover_processes, stop_leftovers

    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    rng = np.random.default_rng(seed)
    timing = TIMING[site]
    n_kills = int(rng.integers(1, max_kills + 1)) if kills is None else kills
    workdir.mkdir(parents=True, exist_ok=True)
    config, site_file, run = workdir / "run.yaml", workdir / "site.yaml", workdir / "run"
    config.write_text(yaml.safe_dump(trial_config(budget, timing["delay"], seed)))
    site_file.write_text(yaml.safe_dump(SITES[site]))
    start_command = ("run", str(config), "--site", str(site_file), "--out", str(run))
    record: dict = {"seed": seed, "mode": mode, "site": site, "budget": budget, "kills": []}
    stale: set[str] = set()
    recorded_before: set[str] = set()
    interruptible: set[str] = set()
    logs: list[Path] = []
    proc = None
    started = time.monotonic()

    def launch(session: str) -> subprocess.Popen:
        logs.append(workdir / f"session{len(logs)}-{session}.log")
        args = start_command if session in ("run", "rerun") else ("resume", str(run))
        with open(logs[-1], "w") as out:
            return pesflow(*args, stdout=out, stderr=subprocess.STDOUT)

    try:
        session = "run"
        proc = launch(session)
        for k in range(n_kills):
            kill_mode = mode if mode not in ("startup", "site-write") or k == 0 else "random"
            kill = _kill(proc, run, session, kill_mode, rng, timing, stale)
            record["kills"].append(kill)
            assert not kill["missed"] or kill["rc"] == 0, f"{session} exited {kill['rc']}"
            _inspect(run, kill, stale, recorded_before, interruptible)
            session = "resume" if kill["run_yaml"] else "rerun"
            proc = launch(session)
        proc.wait(timeout=timing["timeout"])
        assert proc.returncode == 0, f"final {session} exited {proc.returncode}"
        record.update(assert_nothing_lost_or_repeated(run, budget, recorded_before,
                                                      interruptible))
        left = leftover_processes(run)
        assert not left, f"processes left: {[p.pid for p in left]}"
        record["stale_tmp_files"] = len(_tmp_names(run))
        record["outcome"] = "ok"
    except Exception as error:  # recorded, not raised: a series of trials goes on
        tail = logs[-1].read_text()[-1500:] if logs and logs[-1].exists() else ""
        record["outcome"] = f"failed: {type(error).__name__}: {error}"
        record["log_tail"] = tail
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if run.exists():
            stop_leftovers(run)  # never leave a failed trial's HTEx workers behind
    record["sessions"] = len(logs)
    record["wall_s"] = round(time.monotonic() - started, 2)
    return record


def run_trials(plan: list[dict], root: Path, on_trial=None) -> list[dict]:
    """Run the trials of ``plan`` (:func:`trial_plan`) under ``root``, one after another."""
    records = []
    for i, trial in enumerate(plan):
        records.append(run_trial(root / f"trial{i:03d}", **trial))
        if on_trial is not None:
            on_trial(records[-1])
    return records


def summarize_trials(records: list[dict]) -> dict:
    """Counts per outcome, mode and site; how many kills hit a checkpoint write."""
    kills = [k for r in records for k in r["kills"]]
    by_mode: dict[str, dict] = {}
    for r in records:
        entry = by_mode.setdefault(r["mode"], {"trials": 0, "ok": 0})
        entry["trials"] += 1
        entry["ok"] += r["outcome"] == "ok"
    return {
        "trials": len(records),
        "ok": sum(r["outcome"] == "ok" for r in records),
        "failed": sum(r["outcome"] != "ok" for r in records),
        "by_mode": by_mode,
        "by_site": {s: sum(r["site"] == s for r in records) for s in SITES},
        "kills": len(kills),
        "kills_missed": sum(k["missed"] for k in kills),
        "kills_during_checkpoint_write": sum(k.get("tmp_present", False) for k in kills),
        "kills_before_first_checkpoint": sum(k.get("checkpoint") == "none" and not k["missed"]
                                             for k in kills),
        "kills_before_run_yaml": sum(not k.get("run_yaml", True) for k in kills),
        "kills_with_leftover_processes": sum(k.get("leftovers", 0) > 0 for k in kills),
        "evaluations_repeated": sum(r.get("extra", 0) for r in records),
        "trial_wall_s": {"min": min((r["wall_s"] for r in records), default=None),
                         "max": max((r["wall_s"] for r in records), default=None),
                         "total": round(sum(r["wall_s"] for r in records), 1)},
    }


if __name__ == "__main__":
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--mode", choices=MODES, help="every trial in this mode")
    parser.add_argument("--site", choices=tuple(SITES), help="every trial on this site")
    args = parser.parse_args()
    plan = trial_plan(args.trials, args.first_seed)
    for trial in plan:
        trial.update({k: v for k, v in (("mode", args.mode), ("site", args.site)) if v})
    with tempfile.TemporaryDirectory(prefix="pesflow-kill-") as tmp:
        records = run_trials(plan, Path(tmp), on_trial=lambda r: print(json.dumps(r)))
    print(json.dumps(summarize_trials(records), indent=1))
    sys.exit(0 if all(r["outcome"] == "ok" for r in records) else 1)
