"""Subcommands of the `edgeface` CLI, one module each (see edgeface.cli)."""
