"""Restore a snapshot while its choice and its backup-time manifest are still being read, and verify the
files as restic writes them: what a full drill and `backupd restore --to` share so that either costs little
more than restic's own restore.

The restore of the snapshot the backup history says will be chosen (`guess`) starts at once; `restic
snapshots` (the choice) and `restic dump` of the manifest run alongside it and pay their start-up (the
repository key's scrypt) at the same time; once the manifest is known, early verification (LateHasher) hashes
what restic wrote so far and follows it. A wrong guess is stopped, the restore directory emptied and the
chosen snapshot restored."""

from __future__ import annotations

import time

from backupd.actions.snapshot_choice import ManifestAlongside, Selection, in_background
from backupd.drill.early import LateHasher
from backupd.drill.phases import FirstFile
from backupd.drill.sandbox import empty
from backupd.engine import restore as restic_restore
from backupd.errors import BackupdError
from backupd.files.manifest import MANIFEST_NAME
from backupd.process import execute


class WrongGuess(Exception):
    """The listing chose another snapshot than the one whose restore started (carries the Selection)."""

    def __init__(self, selection: Selection):
        super().__init__(f"the choice is {selection.snap.short_id}")
        self.selection = selection


def guess(state, target: str, destination: str, snapshot_id: str | None,
          wanted=None) -> tuple[str | None, str | None]:
    """The snapshot the choice will most likely make, known before restic runs: the one asked for, else the
    newest backup this host recorded to the destination, did not find suspect and `wanted(id)` accepts (None
    without one: a verifier has no backup history); with the companion snapshot holding its manifest, when
    its backup recorded one (a dump target)."""
    for row in state.runs("backup", target, limit=20):
        if row["destination"] != destination or row["status"] != "ok" or not row["snapshot_id"]:
            continue
        facts = (row["detail"] or {}).get("facts") or {}
        holder = facts.get("manifest_snapshot") if isinstance(facts.get("manifest_snapshot"), str) else None
        if snapshot_id is None:
            if (facts.get("change") or {}).get("suspicious"):
                return None, None
            if wanted is not None and not wanted(row["snapshot_id"]):
                continue
            return row["snapshot_id"], holder
        if row["snapshot_id"].startswith(snapshot_id):
            return snapshot_id, holder
    return snapshot_id, None


def manifest_at(state_dir, target, snapshot: str | None, holder: str | None) -> tuple[str, str] | None:
    """(snapshot id, path) of the guessed snapshot's manifest: inside it for a path target, else in the
    companion `holder` its backup recorded; None when that is not known."""
    where = f"{state_dir}/manifests/{target.name}/{MANIFEST_NAME}"  # where backup stages it
    inside = snapshot if getattr(target.sources, "paths", None) else holder
    return (inside, where) if snapshot and inside else None


def attempt(restore_dir, repo, snapshot: str, fetch, cancel, then=None, early_verify: bool = True):
    """Restore `snapshot` with fetch() -> (selection, manifest) alongside; when the manifest arrives
    `then(manifest)` runs (a drill's sandbox reserves its bytes: a restore that would not fit is stopped)
    and early verification starts (with `early_verify`: in a directory that held files before the restore,
    what was there would be taken for what restic writes over it). Returns (selection, manifest, early
    hasher, first-file watch, seconds waited for fetch after restic ended); the listing's, the read's and
    `then`'s failures (and a WrongGuess) win over the restore's, which they may have stopped."""
    early = LateHasher(restore_dir)

    def arrived(found) -> None:  # in the reading thread, while restic is still starting up
        if then is not None:
            then(found[1])
        if early_verify:
            early.start(found[1])

    with early, FirstFile(restore_dir) as first, ManifestAlongside(fetch, cancel, then=arrived) as alongside:
        failure = None
        try:
            with execute.cancelled_by(alongside.stop):
                restic_restore.restore(repo, snapshot, restore_dir, cancel=cancel)
        except BackupdError as exc:
            if cancel is not None and cancel.is_set():
                raise
            failure = exc
        ended = time.monotonic()
        selection, doc = alongside.doc()  # no verification without the backup-time manifest
        waited = round(time.monotonic() - ended, 3)  # fixed, not restic's (projection)
        if failure is not None:
            raise failure
    return selection, doc, early, first, waited


def restore(repo, restore_dir, selection: Selection | None, choose, read, first_guess: str | None,
            prefetch: tuple[str, str] | None, cancel, then=None, early_verify: bool = True):
    """Restore all of the chosen snapshot into `restore_dir` (empty) while its manifest is read alongside.
    `choose()` -> Selection (one listing), `read(selection, prefetched)` -> manifest. Without a selection the
    restore of `first_guess` starts at once and the listing runs alongside too, as does the dump of the
    manifest from where the backup history says it is (`prefetch`: (snapshot id, path); used once the
    listing confirms it): a wrong guess is stopped, `restore_dir` emptied and the chosen snapshot restored.
    Returns (selection, manifest, early hasher, first-file watch, seconds waited for the manifest, guess
    confirmed or None). `early_verify` False (a used directory): nothing is hashed before restic ended."""
    def fetch(chosen: Selection | None = selection, expected: str | None = first_guess):
        early = None
        if chosen is None and expected and prefetch:
            early = (*prefetch, in_background(lambda: restic_restore.dump_file(repo, *prefetch), cancel))
        chosen = chosen or choose()
        if expected and not chosen.snap.id.startswith(expected):
            raise WrongGuess(chosen)
        return chosen, read(chosen, early)

    try:
        return (*attempt(restore_dir, repo, first_guess or selection.snap.id, fetch, cancel, then, early_verify),
                True if selection is None else None)
    except WrongGuess as wrong:
        empty(restore_dir)  # what the stopped restore wrote
        chosen = wrong.selection
        return (*attempt(restore_dir, repo, chosen.snap.id, lambda: fetch(chosen, None), cancel, then,
                         early_verify), False)
