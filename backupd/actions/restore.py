"""`backupd restore`: restore a chosen snapshot and verify it against its backup-time manifest."""

from __future__ import annotations

import os
import time
from pathlib import Path

from backupd.actions import announced_mirror, media
from backupd.actions.snapshot_choice import Selection, load_manifest, rejected_text, select
from backupd.config.loader import Config
from backupd.engine import restore as restic_restore
from backupd.errors import ConfigError
from backupd.files.restored_modes import defuse
from backupd.files.verify import verify_tree
from backupd.state.runs import State


DRILL_PASSED = ("ok", "pass", "warn")
DRILL_FAILED = ("fail", "suspect")


def drilled_snapshots(cfg: Config, target: str) -> set[str] | None:
    """Ids of snapshots that passed a drill, or None when the target has no drill history."""
    state = State(cfg.state_dir)
    if not state.count("drill", target):
        return None
    return state.snapshot_ids("drill", target, DRILL_PASSED)


def excluded(cfg: Config, target: str, suspect: dict[str, str]) -> dict[str, str]:
    """Snapshots a restore must not pick by default: flagged suspect, or failed a drill (FAIL/SUSPECT)."""
    failed = State(cfg.state_dir).snapshot_ids("drill", target, DRILL_FAILED)
    return {**{sid: "failed a restore drill" for sid in failed}, **suspect}


def restore_point(cfg: Config, policy_set, repo, target: str, snapshot_id=None, before=None,
                  source=None) -> tuple[Selection, dict]:
    """The snapshot a restore takes (select(): one listing; not flagged, not failed a drill, preferably
    passed one) and its backup-time manifest. A verifier chooses only among what the backup hosts
    announced, exactly as its drills do (announced_mirror.of_target), the manifest checked against the
    announcement; the snapshots it did not count are named in the explanation."""
    selection = select(repo, target, cfg.backup_hosts(), snapshot_id, before, drilled_snapshots(cfg, target),
                       announced=announced_mirror.of_target(cfg, policy_set, target),
                       exclude=media.exclusions(cfg, source, target, excluded(cfg, target, {}))
                       if source is not None else excluded(cfg, target, {}))
    if selection.screened is not None and selection.screened.rejected:
        selection.explanation += f"; not counted: {rejected_text(selection.screened)}"
    doc = load_manifest(repo, selection.snap, target, cfg.backup_hosts(), selection.listing,
                        announcement=selection.announcement)
    return selection, doc


def _check_target_dir(to_dir: Path, force: bool) -> None:
    if to_dir.exists() and not to_dir.is_dir():
        raise ConfigError(f"{to_dir} exists and is not a directory")
    if to_dir.exists() and any(to_dir.iterdir()) and not force:
        raise ConfigError(f"{to_dir} is not empty; restore into an empty directory or pass --force")
    _mkdir_private(to_dir)


def _mkdir_private(path: Path) -> None:
    """Create path and its missing parents 0700 (the restored tree is untrusted); existing ones are kept."""
    for missing in reversed([p for p in (path, *path.parents) if not os.path.lexists(p)]):
        missing.mkdir(mode=0o700, exist_ok=True)


def run(cfg: Config, policy_set, target_name: str, to_dir: Path, *, snapshot_id=None, before=None,
        destination=None, force=False, keep_setuid=False) -> dict:
    """Restore target into to_dir; returns the choice, its explanation, the verification and the warnings
    about dangerous modes (setuid/setgid bits cleared unless keep_setuid)."""
    target = policy_set.target(target_name)
    source = media.source_for(cfg, policy_set, target, destination)
    dest_name, repo = source.label, source.repo
    _check_target_dir(to_dir, force)
    t0 = time.monotonic()
    selection, doc = restore_point(cfg, policy_set, repo, target.name, snapshot_id, before, source)
    snap, why = selection.snap, selection.explanation
    if source.note:
        why = f"{source.note}; {why}"
    restic_restore.restore(repo, snap.id, to_dir)
    verification = verify_tree(to_dir, doc)
    modes = defuse(to_dir, keep_setuid, snap.paths)
    return {"target": target.name, "destination": dest_name, "snapshot_id": snap.id,
            "snapshot_time": snap.time.isoformat(), "to": str(to_dir), "explanation": why,
            "status": "ok" if verification.ok and not modes["setid_failed"] else "failed",
            "verification": verification.to_dict(), "warnings": modes.pop("warnings"), "modes": modes,
            "duration": round(time.monotonic() - t0, 3)}
