"""Find a target's snapshots and its backup-time manifest in a repository."""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone

from backupd import output
from backupd.actions import announced as announced_mod
from backupd.engine import restore as restic_restore
from backupd.engine import snapshots as restic_snapshots
from backupd.engine.repository import Repository
from backupd.errors import BackupdError, ConfigError, Finding
from backupd.files.manifest import AMEND_SUFFIX, AMEND_TAG, MANIFEST_NAME, amendment_problem
from backupd.files.manifest import problem as manifest_problem
from backupd.process import execute

#: Companion snapshot recording an operator's acceptance of a flagged generation (`backupd accept`).
ACCEPT_TAG = "backupd-accept"
#: Companion snapshot flagging a generation after the fact (part of a slow change caught as drift).
JUDGEMENT_TAG = "backupd-judgement"


def target_listing(repo: Repository, target: str, host: str | list[str]) -> list[restic_snapshots.Snapshot]:
    """Every snapshot of target on host, data and companions (manifests, amendments, judgements,
    acceptances), oldest first: one `restic snapshots` that the functions below can share. Lock-free:
    the restore that acts on the choice takes the lock (a snapshot forgotten meanwhile fails it). A listed
    snapshot Python cannot take is left out with a note (in the result's `skipped`)."""
    return _noted(restic_snapshots.list_snapshots(repo, tags=[f"target={target}"], host=host, lock=False))


def _noted(listing):
    for item in restic_snapshots.skipped_in(listing):
        output.note(f"{item.describe()}: left out")
    return listing


def _companions(repo: Repository, target: str, host, listing) -> list[restic_snapshots.Snapshot]:
    snaps = listing if listing is not None else target_listing(repo, target, host)
    return [c for c in snaps if "backupd" not in c.tags]


def data_snapshots(repo: Repository, target: str, host: str | list[str],
                   listing: list | None = None) -> list[restic_snapshots.Snapshot]:
    """Complete data snapshots of target on host, oldest first (partial ones are tagged incomplete);
    from `listing` (target_listing) when given, else listed now."""
    if listing is None:
        listing = _noted(restic_snapshots.list_snapshots(repo, tags=["backupd", f"target={target}"], host=host))
    return [s for s in listing if "backupd" in s.tags and "incomplete" not in s.tags]


@dataclass
class Selection:
    """One listing of a target (target_listing) and what was chosen from it."""

    listing: list[restic_snapshots.Snapshot]
    snaps: list[restic_snapshots.Snapshot]
    bad: dict[str, str]
    snap: restic_snapshots.Snapshot
    explanation: str
    #: verifier: the snapshots by what the backup host's mirrored ledger announced (snaps: the counted ones)
    screened: announced_mod.Screened | None = None

    @property
    def announcement(self) -> announced_mod.Announcement | None:
        """The chosen snapshot's announcement (verifier), else None."""
        return self.screened.by_id.get(self.snap.id) if self.screened else None

    def announced(self, snap) -> announced_mod.Announcement | None:
        return self.screened.by_id.get(snap.id) if self.screened else None


def select(repo: Repository, target: str, host: str | list[str], snapshot_id: str | None = None,
           before: str | None = None, drilled: set[str] | None = None,
           announced: dict | None = None, exclude: dict[str, str] | None = None) -> Selection:
    """One `restic snapshots` -> the complete data snapshots, their flags (and `exclude`: id -> why, e.g.
    failed drills) and the choice (choose()). With `announced` (verifier: snapshot id -> Announcement) only
    announced snapshots are chosen from (and serve as older generations); the others, and the listed ones
    Python cannot take, are in `screened.rejected`, and asking for one is a Finding."""
    listing = target_listing(repo, target, host)
    snaps = data_snapshots(repo, target, host, listing)
    bad = {**(exclude or {}), **flagged(repo, snaps, target, host, listing)}
    screened = None
    if announced is not None:
        screened = announced_mod.screen(snaps, announced, restic_snapshots.skipped_in(listing))
        snaps = screened.counted
        asked = [(s, why) for s, why in screened.rejected if snapshot_id and s.id.startswith(snapshot_id)]
        if asked:
            raise Finding(f"snapshot {asked[0][0].short_id} is not drilled or restored: {asked[0][1]}")
    try:
        snap, why = choose(snaps, snapshot_id, before, bad, drilled)
    except Finding as exc:
        if not screened or not screened.rejected:
            raise
        raise Finding(f"{exc}; not announced: {rejected_text(screened)}") from None
    return Selection(listing, snaps, bad, snap, why, screened)


def rejected_text(screened: announced_mod.Screened) -> str:
    """The newest few snapshots a verifier did not count, each with why."""
    return "; ".join(f"{s.short_id} ({why})" for s, why in screened.rejected[-5:])


def parse_when(text: str) -> datetime:
    """ISO 8601 (or 'now') -> aware datetime; naive times are UTC."""
    if text == "now":
        return datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--before {text!r}: expected an ISO 8601 time such as 2026-11-20T06:30:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def flagged(repo: Repository, snaps, target: str, host: str | list[str], listing: list | None = None) -> dict[str, str]:
    """snapshot id -> why it must not be chosen for a clean restore: flagged suspect at backup time (on the
    snapshot, its manifest companion, or a later judgement companion) and not accepted by an operator."""
    companions = _companions(repo, target, host, listing)
    suspect_of = [c.tagmap.get("of", "-") for c in companions if "suspect" in c.tags]
    accepted_of = [c.tagmap.get("of", "-") for c in companions if ACCEPT_TAG in c.tags]
    return {s.id: "flagged as suspect at backup time" for s in snaps
            if ("suspect" in s.tags or any(s.made_as(of) for of in suspect_of))
            and not any(s.made_as(of) for of in accepted_of)}


def choose(snaps, snapshot_id: str | None, before: str | None, bad: dict[str, str] | None = None,
           drilled: set[str] | None = None):
    """(snapshot, explanation): the given id; else the newest before a time (default now) that is not
    flagged (`bad`: suspect, or failed a drill) and, where drill history exists, passed a drill; when no
    retained snapshot passed one, the newest unflagged snapshot, said to be unproven."""
    if snapshot_id:
        hits = [s for s in snaps if s.id.startswith(snapshot_id)]
        if len(hits) != 1:
            raise ConfigError(f"snapshot {snapshot_id!r} matches {len(hits)} snapshots of this target")
        warn = f" (warning: {bad[hits[0].id]})" if bad and hits[0].id in bad else ""
        return hits[0], f"snapshot {hits[0].short_id} as requested{warn}"
    when = parse_when(before or "now")
    skipped, bad, undrilled = [], bad or {}, None
    for snap in reversed([s for s in snaps if s.time < when]):
        if snap.id in bad:
            skipped.append(f"{snap.short_id}: {bad[snap.id]}")
        elif drilled is not None and not any(snap.made_as(d) for d in drilled):
            skipped.append(f"{snap.short_id}: no passed drill")
            undrilled = undrilled or snap
        else:
            why = f"newest clean snapshot before {when.isoformat()}: {snap.short_id} ({snap.time.isoformat()})"
            if drilled is not None:
                why += ", which passed a restore drill"
            return snap, why + (f"; skipped {'; '.join(skipped)}" if skipped else "")
    if undrilled is not None:
        # Retention may have forgotten every drilled generation: an unflagged one that never failed a drill is
        # still the best restore point there is; refusing would leave an incident with no restore at all.
        return undrilled, (f"newest clean snapshot before {when.isoformat()}: {undrilled.short_id} "
                           f"({undrilled.time.isoformat()}); NOT proven by a drill: no retained snapshot "
                           "before that time passed one")
    raise Finding(f"no clean snapshot of this target before {when.isoformat()}"
                  + (f" (skipped {'; '.join(skipped)})" if skipped else ""))


def manifest_path(snap, target: str, suffix: str = "") -> str | None:
    """Where a snapshot holds a manifest (the staging directory it includes)."""
    for path in snap.paths:
        if path.rstrip("/").endswith(f"/manifests/{target}{suffix}"):
            return f"{path.rstrip('/')}/{MANIFEST_NAME}"
    return None


def _read(repo: Repository, snap, path: str, prefetched=None, announcement=None) -> dict:
    """One manifest file of snap, parsed; `prefetched` (snapshot id prefix, path, Future of the bytes: a dump
    started before the listing named snap) serves it when it names this snapshot and path and succeeded.
    With an `announcement` (verifier) the bytes must hash to the announced manifest (else a Finding)."""
    if path is None:  # a companion tagged as a manifest holder without the staging directory
        raise Finding(f"snapshot {snap.short_id} holds no manifest where backup stages it; cannot verify")
    data = None
    if prefetched is not None and snap.id.startswith(prefetched[0]) and path == prefetched[1]:
        try:
            data = prefetched[2].result()
        except BackupdError:
            data = None  # read it again, now that the listing names it
    if data is None:
        data = restic_restore.dump_file(repo, snap.id, path)
    announced_mod.check_manifest(data, announcement, snap.short_id)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested thousands of levels deep
        raise Finding(f"the manifest in snapshot {snap.short_id} is not valid JSON") from None


def load_manifest(repo: Repository, snap, target: str, host: str | list[str], listing: list | None = None,
                  prefetched=None, announcement=None) -> dict:
    """The manifest recorded when snap was taken (inside it, or in its companion snapshot), with
    the files that changed while it was taken, from its amendment, if any. With `listing`
    (target_listing) this is one `restic dump` (plus one per amendment), no listing; `prefetched` (see
    _read) may serve that dump. With its `announcement` (verifier) the manifest read must be the one the
    backup host announced, from the companion it named."""
    inside = manifest_path(snap, target)
    companions = [c for c in _companions(repo, target, host, listing) if snap.made_as(c.tagmap.get("of", "-"))]
    holder = snap
    if inside is None:
        holders = [c for c in companions if "backupd-manifest" in c.tags]
        if announcement is not None and announcement.manifest_snapshot:  # not one added later beside it
            holders = [c for c in holders if c.id.startswith(announcement.manifest_snapshot)] or holders
        if not holders:
            raise Finding(f"snapshot {snap.short_id} has no backup-time manifest; cannot verify")
        holder, inside = holders[-1], manifest_path(holders[-1], target)
    doc = _read(repo, holder, inside, prefetched, announcement)
    why = manifest_problem(doc)
    if why:
        raise Finding(f"the manifest in snapshot {holder.short_id} is malformed ({why}); cannot verify")
    for amend in (c for c in companions if AMEND_TAG in c.tags):
        amended = _read(repo, amend, manifest_path(amend, target, AMEND_SUFFIX))
        why = amendment_problem(amended)
        if why:
            raise Finding(f"the amendment in snapshot {amend.short_id} is malformed ({why}); cannot verify")
        moved = amended.get("changed_during_backup", [])
        facts = doc.setdefault("facts", {})
        facts["changed_during_backup"] = sorted(set(facts.get("changed_during_backup", [])) | set(moved))
    return doc


def in_background(fn, *cancels: execute.Cancel | None) -> Future:
    """fn() in a daemon thread that keeps the caller's job deadline and stops with any of `cancels`."""
    future: Future = Future()
    left = execute.time_left()

    def run() -> None:
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(execute.deadline(left))
                for cancel in cancels:
                    stack.enter_context(execute.cancelled_by(cancel))
                result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed over through the future
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name="restic-alongside", daemon=True).start()
    return future


class ManifestAlongside:
    """`with ManifestAlongside(fetch) as manifest:` runs fetch() (e.g. load_manifest of the snapshot being
    restored) in a background thread while the caller restores: the restic processes pay their start-up
    (the repository key's scrypt, ~0.5 s each) at the same time instead of one after the other.

    `then(result)` runs in that thread when fetch returns (e.g. the sandbox reservation); when fetch or
    `then` fails, `stop` is set, so a restore run under `execute.cancelled_by(manifest.stop)` ends early.
    `doc()` waits and returns fetch's result or raises that failure. The thread keeps the caller's job
    deadline and ends with `cancel` or when the block is left."""

    def __init__(self, fetch, cancel: execute.Cancel | None = None, then=None):
        self.stop = execute.Cancel()
        self._left = execute.Cancel()
        self._future: Future = Future()
        self._fetch, self._cancel, self._then, self._deadline = fetch, cancel, then, execute.time_left()

    def _read(self) -> None:
        try:
            with execute.deadline(self._deadline), execute.cancelled_by(self._cancel), \
                    execute.cancelled_by(self._left):
                result = self._fetch()
            if self._then is not None:
                self._then(result)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through doc()
            self.stop.set()
            self._future.set_exception(exc)
        else:
            self._future.set_result(result)

    def __enter__(self) -> ManifestAlongside:
        threading.Thread(target=self._read, name="manifest-read", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._left.set()  # a read still running when the caller gave up is stopped

    def doc(self):
        return self._future.result()
