"""A small search run shared by the tests that need a real run directory."""

from __future__ import annotations

import hashlib
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
