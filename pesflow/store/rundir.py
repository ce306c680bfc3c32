"""The layout of a search run directory (everything in it is HDF5, JSON, YAML or extxyz).

::

    RUN_DIR/
      run.yaml            the validated run config
      site.yaml           the site config of the last session
      checkpoint.h5       run state (pesflow.store.checkpoint), rewritten atomically
      models/v00003.h5    Δ-model versions, one file each (workers load each once)
      oracle/<hash>/      one directory per oracle single point (input, result.json, logs)
      oracle/performed.log  one line per evaluation the oracle actually computed
      evaluated.extxyz    every oracle-evaluated structure with energy and forces
      best.extxyz         the lowest-energy one
      summary.json        the figures `pesflow status` prints
      trace.png           best oracle energy versus oracle calls and CPU time
      pesflow.log         what the coordinator did (retries, failures, dropped tasks)
      parsl/              Parsl's own logs and submit scripts
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pesflow.errors import InputError

_MODEL = re.compile(r"^v(\d+)\.h5$")
#: All that ``pesflow run`` may leave in --out before run.yaml exists (its log, its lock,
#: the site file, half-written temporary files): what a run killed while starting leaves.
_STARTUP_LEFTOVERS = re.compile(
    r"^(pesflow\.log|\.pesflow\.lock|site\.yaml|\.(run|site)\.yaml\..+\.tmp)$"
)


class RunDir:
    """Paths inside one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.config = self.path / "run.yaml"
        self.site = self.path / "site.yaml"
        self.checkpoint = self.path / "checkpoint.h5"
        self.models = self.path / "models"
        self.oracle = self.path / "oracle"
        self.evaluated = self.path / "evaluated.extxyz"
        self.best = self.path / "best.extxyz"
        self.summary = self.path / "summary.json"
        self.trace = self.path / "trace.png"
        self.log = self.path / "pesflow.log"

    def __str__(self) -> str:
        return str(self.path)

    def model_path(self, version: int) -> Path:
        return self.models / f"v{version:05d}.h5"

    def model_versions(self) -> list[int]:
        """Published Δ-model versions, ascending."""
        if not self.models.is_dir():
            return []
        found = (_MODEL.match(p.name) for p in self.models.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def is_run(self) -> bool:
        return self.config.is_file()

    def aborted_start(self) -> bool:
        """True when the directory holds only what a ``pesflow run`` stopped before it wrote
        run.yaml left (log, lock): no results, nothing to resume; it may be started again."""
        if not self.path.is_dir() or self.is_run():
            return False
        names = [p.name for p in self.path.iterdir()]
        return bool(names) and all(_STARTUP_LEFTOVERS.match(name) for name in names)

    def require_run(self) -> RunDir:
        """Raise ``InputError`` unless this is a pesflow run directory."""
        if not self.path.is_dir():
            raise InputError(f"no run directory at {self.path}")
        if self.aborted_start():
            raise InputError(
                f"{self.path} holds only the log of a `pesflow run` stopped before it wrote "
                f"run.yaml: there is nothing to resume; start it again with "
                f"`pesflow run RUN.yaml --out {self.path}`"
            )
        if not self.is_run():
            raise InputError(
                f"{self.path} is not a pesflow run directory (no run.yaml); start one with "
                "`pesflow run RUN.yaml --out DIR`"
            )
        return self


def new_run_dir(path: str | Path, force: bool = False) -> RunDir:
    """Check that ``path`` may hold a new run; with ``force`` clear an old one first.

    A non-empty directory is refused without ``force``, except one that a run killed
    before it wrote run.yaml left (:meth:`RunDir.aborted_start`: no results in it); nothing
    is created here (the caller creates the directory once all input has been validated).
    """
    run = RunDir(path)
    if run.path.exists() and not run.path.is_dir():
        raise InputError(f"--out {run.path} exists and is not a directory")
    if run.path.is_dir() and any(run.path.iterdir()) and not run.aborted_start():
        if not force:
            hint = (f"continue it with `pesflow resume {path}`" if run.is_run()
                    else "choose another --out")
            raise InputError(
                f"--out {run.path} already exists and is not empty; {hint}, or pass --force "
                "to replace it"
            )
        if not run.is_run():
            raise InputError(
                f"--force only replaces pesflow run directories; {run.path} has no run.yaml, "
                "so it is left alone: choose another --out"
            )
    return run


def clear_run_dir(run: RunDir) -> None:
    """Remove an old run's contents (``--force``); the caller holds its lock."""
    for item in run.path.iterdir():
        if item.name == ".pesflow.lock":
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
