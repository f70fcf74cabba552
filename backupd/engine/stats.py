"""restic stats: repository size (raw data as stored), read from the index."""

from __future__ import annotations

import json

from backupd.engine import command
from backupd.engine.repository import Repository


def parse_raw_size(stdout: bytes) -> int:
    """total_size from `restic stats --json --mode raw-data`."""
    try:
        return int(json.loads(stdout or b"{}").get("total_size", 0))
    except (ValueError, AttributeError):
        return 0


def raw_size(repo: Repository, timeout: float = 1800, ids: list[str] | None = None) -> int:
    """Bytes of blob data the repository stores (after deduplication); with `ids` (full hex snapshot ids),
    the blob data those snapshots reference together (0 for an empty list)."""
    if ids is not None and not ids:
        return 0
    done = command.run(repo, "stats", "--mode", "raw-data", *(ids or []), what=f"stats {repo.name}",
                       timeout=timeout)
    return parse_raw_size(done.stdout)
