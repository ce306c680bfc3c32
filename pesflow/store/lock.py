"""A run directory is driven by one coordinator at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pesflow.errors import InputError


class RunDirLocked(InputError):
    """Another live process holds the run directory."""


class RunDirLock:
    """An exclusive ``flock`` on ``RUN_DIR/.pesflow.lock``, released when the process dies.

    A lock left by a killed coordinator is not stale: the kernel drops ``flock`` locks with
    the process, so ``pesflow resume`` after a SIGKILL just works.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".pesflow.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirLocked(
                f"run dir {self.path.parent} is in use by pid {holder}; wait for it to finish "
                "or stop it before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
