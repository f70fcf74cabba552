"""restic find --pack: which snapshots reference the blobs of a pack (from the index, so it works
while the pack's data is damaged)."""

from __future__ import annotations

import json

from backupd.engine import command
from backupd.engine.repository import Repository


def parse_snapshots(stdout: bytes) -> set[str]:
    """Snapshot ids of `restic find --json` matches."""
    try:
        items = json.loads(stdout or b"[]") or []
    except ValueError:
        return set()
    return {i["snapshot"] for i in items if isinstance(i, dict) and i.get("snapshot")}


def snapshots_of_pack(repo: Repository, pack_id: str, timeout: float = 600) -> set[str]:
    """Snapshots holding data blobs of the pack; empty when none is found (e.g. a pack of trees)."""
    done = command.run(repo, "find", "--pack", pack_id, what=f"find pack {pack_id[:8]} in {repo.name}",
                       timeout=timeout)
    return parse_snapshots(done.stdout)
