"""Errors meant for people: one clear message; exit status 2 at the command line for bad
input, 1 for a run that cannot go on."""


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
