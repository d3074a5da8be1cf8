"""Subcommands of the ``patchmatch`` command line, one module each (see :mod:`patchmatch.cli`)."""
