"""Subcommands of the ``pesflow`` CLI (see ``pesflow.cli``)."""
