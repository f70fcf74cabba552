"""restic restore and dump: bring files of a snapshot back."""

from __future__ import annotations

from pathlib import Path

from backupd.engine import command
from backupd.engine.repository import Repository
from backupd.process import execute


def restore(repo: Repository, snapshot_id: str, target_dir: Path, *, includes: list[str] | None = None,
            timeout: float | None = command.DEFAULT_TIMEOUT, cancel: execute.Cancel | None = None) -> None:
    """Restore a snapshot (or the included paths of it) under target_dir."""
    args = [snapshot_id, "--target", str(target_dir)]
    for path in includes or []:
        args += ["--include", path]
    command.run(repo, "restore", *args, what=f"restore {snapshot_id[:8]} from {repo.name}",
                json=False, timeout=timeout, cancel=cancel)


def dump_file(repo: Repository, snapshot_id: str, path: str, timeout: float = 600) -> bytes:
    """The content of one file in a snapshot.

    Without a repository lock (--no-lock): dumps run beside a restore (a full drill reads the manifest
    alongside it) and beside each other (older manifests), and restic 0.14 retries for ~45 s when a lock it
    listed is removed before it can read it. A lock-free read cannot return wrong bytes (every blob is
    checked against its hash); a pack pruned meanwhile only makes it fail."""
    done = command.run(repo, "dump", "--no-lock", snapshot_id, path, what=f"read {path} from {snapshot_id[:8]}",
                       json=False, timeout=timeout)
    return done.stdout
