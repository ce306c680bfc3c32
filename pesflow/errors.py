"""Errors meant for people: one clear message; exit status 2 at the command line for bad
input, 1 for a run that cannot go on."""

import sys


class InputError(ValueError):
    """Bad user input: what is wrong, where, and how to fix it.

    The CLI prints ``str(error)`` on one line and exits with status 2. Raise it
    before anything is written to a run directory.
    """


class ModelUnavailableError(InputError):
    """A model name is unknown or its weights are not on this machine."""


class SearchStalled(RuntimeError):
    """A search cannot go on (every surrogate task fails, say); the run keeps its last
    checkpoint. The CLI prints ``str(error)`` on one line and exits with status 1."""


class ModelOutOfResources(RuntimeError):
    """A model ran out of memory or lost its device: the machine's fault, not the
    structure's, so the structure must not be dropped as a failed candidate. A plain
    ``RuntimeError`` subclass with a message only, so it crosses process boundaries
    (Parsl workers) intact."""


def out_of_resources(error: BaseException) -> bool:
    """Whether a model failed for want of memory or a working device (not the structure)."""
    if isinstance(error, MemoryError | ModelOutOfResources):
        return True
    torch = sys.modules.get("torch")  # only a model that imported torch can raise its errors
    kinds = tuple(getattr(torch, name) for name in ("OutOfMemoryError", "AcceleratorError")
                  if hasattr(torch, name))
    return bool(kinds) and isinstance(error, kinds)
