"""Subcommands other than ``scan``: one module each, registered by :mod:`leakwatch.cli`."""
