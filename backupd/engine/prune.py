"""restic prune: remove data no snapshot references. Only the maintenance identity runs it."""

from __future__ import annotations

from backupd.engine import command
from backupd.engine.repository import Repository


def prune(repo: Repository, *, dry_run: bool = False, timeout: float = 12 * 3600) -> str:
    """Prune the repository; returns restic's report (what was removed and repacked)."""
    args = ["--dry-run"] if dry_run else []
    done = command.run(repo, "prune", *args, what=f"prune {repo.name}", json=False, timeout=timeout)
    return done.stdout.decode("utf-8", "replace")[-4000:]
