"""A small search run shared by the tests that need a real run directory."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

#: A valid run that takes seconds (LJ7, Morse prior + Δ-model, REX, LJ oracle).
LJ7_RUN = {
    "problem": {"system": "lj_cluster", "n": 7},
    "prior": "morse:rho0=6",
    "model": {"settings": {"n_inducing": 100, "ensemble_size": 3}},
    "algorithm": {"name": "rex", "settings": {"n_walkers": 3, "oracle_interval": 2,
                                              "oracle_count": 2, "oracle_from": 3, "steps": 15}},
    "oracle": {"kind": "calculator", "model": "lj"},
    "budget": {"oracle_calls": 4},
}
THREADS_SITE = {"kind": "threads", "surrogate": {"workers": 1},
                "dft": {"workers": 1, "ranks": 1}}


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (directories as ``dir``)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def make_finished_run(path: Path) -> Path:
    """Run the LJ7 search into ``path`` to the end of its budget (seconds); ``path``."""
    from pesflow.config import parse_run_config
    from pesflow.executors import parse_site
    from pesflow.store.checkpoint import read_checkpoint
    from pesflow.workflows.search import run_search

    run_search(parse_run_config({**LJ7_RUN, "name": "lj7"}), parse_site(THREADS_SITE), path)
    assert read_checkpoint(path / "checkpoint.h5").state["n_calls"] == 4
    return path


# --- SIGKILL and resume: the oracle's own count against what the checkpoint recorded -----

#: Local HTEx, one worker per executor (separate processes that outlive a SIGKILLed coordinator).
HTEX_SITE = {"name": "htex", "kind": "htex", "surrogate": {"workers": 1, "provider": "local"},
             "dft": {"workers": 1, "ranks": 1, "provider": "local"}}


def performed(run: Path) -> collections.Counter:
    """Oracle hash -> how many times the oracle computed it (``oracle/performed.log``)."""
    log = run / "oracle" / "performed.log"
    lines = [json.loads(x) for x in (log.read_text().splitlines() if log.exists() else [])]
    return collections.Counter(x["hash"] for x in lines if x["status"] == "ok")


def pesflow(*args: str, **kwargs) -> subprocess.Popen:
    """``python -m pesflow.cli ARGS --quiet`` as a child process (one BLAS thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.STDOUT)
    return subprocess.Popen([sys.executable, "-m", "pesflow.cli", *args, "--quiet"], env=env,
                            text=True, **kwargs)


def recorded_and_in_flight(checkpoint, level: dict) -> tuple[list[str], set[str]]:
    """Oracle hashes a checkpoint recorded, and those of its oracle tasks in flight.

    ``level`` is the oracle's level of theory as hashed (``{"standin": "lj"}``).
    """
    from pesflow.dft.runner import task_hash
    from pesflow.search.tasks import OracleTask, from_dict

    recorded = [a.info["oracle_hash"] for a in checkpoint.structures]
    in_flight = [from_dict(t) for t in checkpoint.state["engine"]["in_flight"]]
    interruptible = {task_hash(t.atoms, level, f"task{t.id}")
                     for t in in_flight if isinstance(t, OracleTask)}
    return recorded, interruptible


def assert_nothing_lost_or_repeated(run: Path, budget: int, recorded_before: set[str],
                                    interruptible: set[str]) -> dict:
    """The no-loss checks after the last resume of a killed run; returns the figures.

    ``recorded_before``: oracle hashes in any checkpoint read at a kill; ``interruptible``:
    hashes of oracle tasks in flight at any kill (the only ones that may run twice).
    """
    from pesflow.store.checkpoint import read_checkpoint

    final = read_checkpoint(run / "checkpoint.h5")
    assert final.state["n_calls"] == budget, f"n_calls {final.state['n_calls']} != {budget}"
    hashes = [a.info["oracle_hash"] for a in final.structures]
    assert len(hashes) == len(set(hashes)) == budget, "each result recorded exactly once"
    assert recorded_before <= set(hashes), "no recorded result was lost"
    counts = performed(run)
    assert all(counts[h] >= 1 for h in hashes), "a recorded result the oracle never computed"
    assert all(counts[h] == 1 for h in recorded_before), "a recorded result was recomputed"
    repeated = {h for h, n in counts.items() if n > 1}
    assert repeated <= interruptible, "only tasks in flight at a kill may run twice"
    extra = sum(counts.values()) - len(hashes)
    assert extra <= len(interruptible), f"{extra} extra evaluations > {len(interruptible)}"
    assert set(counts) == set(hashes), "every evaluation the oracle computed is recorded"
    assert final.state["engine"]["in_flight"] == [] or final.state["stop_reason"]
    return {"n_calls": final.state["n_calls"], "repeated": len(repeated), "extra": extra,
            "performed": sum(counts.values())}
