"""restic tag: add a tag to snapshots."""

from __future__ import annotations

from backupd.engine import command, snapshots
from backupd.engine.repository import Repository


def add(repo: Repository, snapshot_ids: list[str], tag: str) -> None:
    """Add `tag` to the given snapshots."""
    if snapshot_ids:
        command.run(repo, "tag", "--add", tag, *snapshot_ids, what=f"tag snapshots in {repo.name}",
                    json=False, timeout=600)


def add_to_latest(repo: Repository, tags: list[str], host: str, tag: str) -> None:
    """Add `tag` to the newest snapshot carrying all `tags` on host."""
    snaps = snapshots.list_snapshots(repo, tags=tags, host=host)
    if snaps:
        add(repo, [snaps[-1].id], tag)
