"""Find a target's snapshots and its backup-time manifest in a repository."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from backupd.engine import restore as restic_restore
from backupd.engine import snapshots as restic_snapshots
from backupd.engine.repository import Repository
from backupd.errors import ConfigError, Finding
from backupd.manifest import MANIFEST_NAME


def data_snapshots(repo: Repository, target: str, host: str) -> list[restic_snapshots.Snapshot]:
    """Complete data snapshots of target on host, oldest first (partial ones are tagged incomplete)."""
    snaps = restic_snapshots.list_snapshots(repo, tags=["backupd", f"target={target}"], host=host)
    return [s for s in snaps if "incomplete" not in s.tags]


def parse_when(text: str) -> datetime:
    """ISO 8601 (or 'now') -> aware datetime; naive times are UTC."""
    if text == "now":
        return datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--before {text!r}: expected an ISO 8601 time such as 2026-11-20T06:30:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def choose(snaps, snapshot_id: str | None, before: str | None):
    """(snapshot, explanation): the given id, or the newest before a time, or the newest."""
    if snapshot_id:
        hits = [s for s in snaps if s.id.startswith(snapshot_id)]
        if len(hits) != 1:
            raise ConfigError(f"snapshot {snapshot_id!r} matches {len(hits)} snapshots of this target")
        return hits[0], f"snapshot {hits[0].short_id} as requested"
    if before:
        when = parse_when(before)
        snaps = [s for s in snaps if s.time < when]
        if not snaps:
            raise Finding(f"no complete snapshot of this target before {when.isoformat()}")
        return snaps[-1], f"newest complete snapshot before {when.isoformat()}: {snaps[-1].short_id} ({snaps[-1].time.isoformat()})"
    if not snaps:
        raise Finding("no complete snapshot of this target")
    return snaps[-1], f"newest complete snapshot: {snaps[-1].short_id} ({snaps[-1].time.isoformat()})"


def manifest_path(snap, target: str) -> str | None:
    """Where a paths snapshot holds its own manifest (the staging directory it includes)."""
    for path in snap.paths:
        if path.rstrip("/").endswith(f"/manifests/{target}"):
            return f"{path.rstrip('/')}/{MANIFEST_NAME}"
    return None


def load_manifest(repo: Repository, snap, target: str, host: str) -> dict:
    """The manifest recorded when snap was taken: inside it, or in its companion snapshot."""
    inside = manifest_path(snap, target)
    if inside is None:
        companions = restic_snapshots.list_snapshots(
            repo, tags=["backupd-manifest", f"target={target}"], host=host)
        companions = [c for c in companions if snap.id.startswith(c.tagmap.get("of", "-"))]
        if not companions:
            raise Finding(f"snapshot {snap.short_id} has no backup-time manifest; cannot verify")
        snap, inside = companions[-1], manifest_path(companions[-1], target)
    try:
        return json.loads(restic_restore.dump_file(repo, snap.id, inside))
    except ValueError:
        raise Finding(f"the manifest of snapshot {snap.short_id} is not valid JSON") from None
