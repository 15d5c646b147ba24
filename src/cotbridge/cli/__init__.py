"""The ``cotbridge`` command line: one module per command, registered on the Typer app in :mod:`.app`.

User errors print one line and exit 2; no tracebacks.
"""

from cotbridge.cli.app import app, main

__all__ = ["app", "main"]
