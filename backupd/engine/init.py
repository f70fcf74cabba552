"""restic init / cat config: create a repository on first use."""

from __future__ import annotations

from backupd.engine import command
from backupd.engine.exitcodes import RepositoryMissing
from backupd.engine.repository import Repository


def exists(repo: Repository) -> bool:
    """True when a repository answers at repo.url with our password."""
    try:
        command.run(repo, "cat", "config", what=f"open {repo.name}", json=False, timeout=300)
    except RepositoryMissing:
        return False
    return True


def init(repo: Repository) -> None:
    """Initialise a new repository at repo.url."""
    command.run(repo, "init", what=f"init {repo.name}", timeout=300)


def ensure(repo: Repository) -> bool:
    """Initialise repo unless it exists; returns True when it was created now."""
    if exists(repo):
        return False
    init(repo)
    return True
