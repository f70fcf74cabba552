"""`backupd restore`: restore a chosen snapshot and verify it against its backup-time manifest."""

from __future__ import annotations

import os
import time
from pathlib import Path

from backupd.actions import alongside, announced_mirror, media
from backupd.actions.snapshot_choice import Selection, load_manifest, rejected_text, select
from backupd.config.loader import Config
from backupd.drill.sandbox import empty
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


def choose_point(cfg: Config, policy_set, repo, target: str, snapshot_id=None, before=None,
                 source=None) -> Selection:
    """The snapshot a restore takes (select(): one listing; not flagged, not failed a drill, preferably
    passed one). A verifier chooses only among what the backup hosts announced, exactly as its drills do
    (announced_mirror.of_target); the snapshots it did not count are named in the explanation."""
    selection = select(repo, target, cfg.backup_hosts(), snapshot_id, before, drilled_snapshots(cfg, target),
                       announced=announced_mirror.of_target(cfg, policy_set, target),
                       exclude=media.exclusions(cfg, source, target, excluded(cfg, target, {}))
                       if source is not None else excluded(cfg, target, {}))
    if selection.screened is not None and selection.screened.rejected:
        selection.explanation += f"; not counted: {rejected_text(selection.screened)}"
    return selection


def restore_point(cfg: Config, policy_set, repo, target: str, snapshot_id=None, before=None,
                  source=None) -> tuple[Selection, dict]:
    """choose_point() and the chosen snapshot's backup-time manifest (a verifier's checked against the
    announcement)."""
    selection = choose_point(cfg, policy_set, repo, target, snapshot_id, before, source)
    doc = load_manifest(repo, selection.snap, target, cfg.backup_hosts(), selection.listing,
                        announcement=selection.announcement)
    return selection, doc


def _guess(cfg: Config, target, source, snapshot_id, before) -> tuple[str | None, str | None]:
    """The snapshot choose_point() will most likely take, from this host's backup and drill history (as a
    drill's guess, but never one that failed a drill, and one that passed a drill where there is drill
    history); (None, None) for a verifier, a medium or a --before time (the listing decides first)."""
    if cfg.verifier or source.medium is not None or before is not None:
        return None, None
    drilled, failed = drilled_snapshots(cfg, target.name), State(cfg.state_dir).snapshot_ids(
        "drill", target.name, DRILL_FAILED)
    return alongside.guess(State(cfg.state_dir), target.name, source.label, snapshot_id,
                           wanted=lambda sid: sid not in failed and (drilled is None or sid in drilled))


def _check_target_dir(to_dir: Path, force: bool) -> bool:
    """Refuse a file or (without force) a non-empty directory; create it. True when it is empty now (a
    restore of a wrong guess may then be emptied again: nothing of the operator's is in it)."""
    if to_dir.exists() and not to_dir.is_dir():
        raise ConfigError(f"{to_dir} exists and is not a directory")
    used = to_dir.exists() and any(to_dir.iterdir())
    if used and not force:
        raise ConfigError(f"{to_dir} is not empty; restore into an empty directory or pass --force")
    _mkdir_private(to_dir)
    return not used


def _mkdir_private(path: Path) -> None:
    """Create path and its missing parents 0700 (the restored tree is untrusted); existing ones are kept."""
    for missing in reversed([p for p in (path, *path.parents) if not os.path.lexists(p)]):
        missing.mkdir(mode=0o700, exist_ok=True)


def run(cfg: Config, policy_set, target_name: str, to_dir: Path, *, snapshot_id=None, before=None,
        destination=None, force=False, keep_setuid=False) -> dict:
    """Restore target into to_dir; returns the choice, its explanation, the verification and the warnings
    about dangerous modes (setuid/setgid bits cleared unless keep_setuid). As a full drill does
    (backupd.actions.alongside): into an empty directory the likely snapshot is restored at once while the
    listing confirms the choice, the manifest is read alongside the restore and the files are verified as
    restic writes them; every file is verified against the manifest before the result is given."""
    target = policy_set.target(target_name)
    source = media.source_for(cfg, policy_set, target, destination)
    dest_name, repo, hosts = source.label, source.repo, cfg.backup_hosts()
    empty_dir = _check_target_dir(to_dir, force)
    t0 = time.monotonic()
    first_guess, holder = _guess(cfg, target, source, snapshot_id, before) if empty_dir else (None, None)
    selection = None if first_guess else choose_point(cfg, policy_set, repo, target.name, snapshot_id, before,
                                                      source)

    def read(chosen: Selection, early) -> dict:
        return load_manifest(repo, chosen.snap, target.name, hosts, chosen.listing, prefetched=early,
                             announcement=chosen.announcement)

    try:
        selection, doc, early, _first, _waited, confirmed = alongside.restore(
            repo, to_dir, selection, lambda: choose_point(cfg, policy_set, repo, target.name, snapshot_id, before,
                                                          source),
            read, first_guess, alongside.manifest_at(cfg.state_dir, target, first_guess, holder), None,
            early_verify=empty_dir)  # in a used directory (--force) the operator's files are not restic's
    except BaseException:
        if first_guess:  # restored before anything chose it (it was empty): nothing unchosen stays there
            empty(to_dir)
        raise
    snap, why = selection.snap, selection.explanation
    if source.note:
        why = f"{source.note}; {why}"
    verification = verify_tree(to_dir, doc, hashed=early.matched)
    verified = round(time.monotonic() - t0, 3)
    modes = defuse(to_dir, keep_setuid, snap.paths)
    result = {"target": target.name, "destination": dest_name, "snapshot_id": snap.id,
              "snapshot_time": snap.time.isoformat(), "to": str(to_dir), "explanation": why,
              "status": "ok" if verification.ok and not modes["setid_failed"] else "failed",
              "verification": {**verification.to_dict(), "hashed_during_restore": len(early.matched)},
              "warnings": modes.pop("warnings"), "modes": modes, "verified_seconds": verified,
              "duration": round(time.monotonic() - t0, 3)}
    if confirmed is not None:
        result["guess"] = {"snapshot": first_guess, "confirmed": confirmed}
    return result
