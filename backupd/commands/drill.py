"""`backupd check` and `backupd drill`: registered on the main command group."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this module's commands to main."""
