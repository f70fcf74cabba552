"""restic find --blob / --tree: the snapshots that reference given blobs. (restic 0.14's `find --pack`
reads the pack itself, so it fails on exactly the packs a check found damaged; backupd.engine.index
gives the blobs of a pack from the index instead.)"""

from __future__ import annotations

import json

from backupd.engine import command
from backupd.engine.repository import Repository

MAX_BLOBS = 200  # per call: enough to name every file a pack touches, bounded argv


def parse_snapshots(stdout: bytes) -> set[str]:
    """Snapshot ids of `restic find --json` matches."""
    try:
        items = json.loads(stdout or b"[]") or []
    except ValueError:
        return set()
    return {i["snapshot"] for i in items if isinstance(i, dict) and i.get("snapshot")}


def snapshots_of_blobs(repo: Repository, kind: str, blob_ids: list[str], timeout: float = 1800) -> set[str]:
    """Snapshots holding any of the blobs; kind is "data" (--blob) or "tree" (--tree)."""
    if not blob_ids:
        return set()
    flag = "--tree" if kind == "tree" else "--blob"
    done = command.run(repo, "find", flag, *blob_ids[:MAX_BLOBS], what=f"find blobs in {repo.name}",
                       timeout=timeout)
    return parse_snapshots(done.stdout)
