"""Durable run state: atomic writes, HDF5 checkpoints, the run-dir lock. No pickle."""

from pesflow.store.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from pesflow.store.checkpoint import Checkpoint, CheckpointError, read_checkpoint, write_checkpoint
from pesflow.store.lock import RunDirLock, RunDirLocked

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "RunDirLock",
    "RunDirLocked",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_checkpoint",
    "write_checkpoint",
]
