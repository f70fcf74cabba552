"""`backupd media sync`: copy every offline target's missing generations onto the attached medium of a
removable rotation set, read back everything on it, sign a `media-sync` record, say it may be detached.

A medium is refused before anything is written to it when it is not one of the set (exit 2), when its
repository holds a snapshot no record of this host's ledger announced (a backup record's full id, or a
copy an earlier media-sync record named; exit 1: someone else wrote there), or when the copy would not
fit (restic stats of what is missing against the free space; exit 1). Only snapshots a backup record
announced are copied, so a snapshot planted in the source repository never reaches a medium.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from backupd import evidence
from backupd.actions import announced
from backupd.config.loader import Config
from backupd.engine import check as restic_check
from backupd.engine import copy as restic_copy
from backupd.engine import init as restic_init
from backupd.engine import snapshots as restic_snapshots
from backupd.engine import stats as restic_stats
from backupd.engine.exitcodes import StorageUnavailable
from backupd.engine.repository import Repository
from backupd.errors import BackupdError, ConfigError, DependencyError, Finding
from backupd.evidence.ledger import Ledger
from backupd.media import identify
from backupd.media.layout import Layout
from backupd.policy.lint import offline_destination

KIND = "media-sync"
#: room kept free beyond the estimate: restic's index, snapshot and lock files, pack headers
MARGIN_BYTES = 8 << 20
MARGIN_SHARE = 0.05


@dataclass
class Attached:
    """A medium of a removable destination, found mounted."""

    destination: str
    dest: object  # RemovableDestination
    medium: object  # Medium
    fs: identify.Filesystem

    def describe(self) -> str:
        return f"{self.medium.name} of {self.destination} ({self.fs.describe()})"


def offline_targets(policy_set) -> dict[str, list]:
    """Removable destination name -> the targets whose offline copies it holds (policy order)."""
    out: dict[str, list] = {}
    for target in policy_set.targets:
        name = offline_destination(target, policy_set.destinations)
        if name is not None:
            out.setdefault(name, []).append(target)
    return out


def removable(policy_set) -> dict:
    return {n: d for n, d in policy_set.destinations.items() if d.kind == "removable"}


def find(policy_set, medium_name: str | None = None, mountpoint=None,
         found: list[identify.Filesystem] | None = None) -> list[Attached]:
    """The attached media of the policy's rotation sets: the one at `mountpoint` (ConfigError when it is
    not one of a set), the one named `medium_name`, or every one that is mounted."""
    sets = removable(policy_set)
    if not sets:
        raise ConfigError("the policy has no removable destination (kind: removable with media)")
    found = identify.mounted() if found is None else found
    if medium_name is not None and not any(d.medium(medium_name) for d in sets.values()):
        raise ConfigError(f"no medium named {medium_name!r}; known: " + ", ".join(
            m.name for d in sets.values() for m in d.media))
    if mountpoint is not None:
        fs = identify.at(mountpoint, found)
        if fs is None:
            raise ConfigError(f"nothing is mounted at {mountpoint}")
        found = [fs]
    hits = [Attached(n, d, m, fs) for n, d in sets.items() for m, fs in identify.attached(d.media, found)
            if medium_name in (None, m.name)]
    if mountpoint is not None and not hits:
        raise ConfigError(f"refused: the filesystem {found[0].describe()} is not a medium of the rotation set"
                          + ("" if medium_name is None else f" medium {medium_name}") + " ("
                          + "; ".join(f"{n}: {', '.join(m.name for m in d.media)}" for n, d in sets.items())
                          + "); nothing written")
    return hits


def one(policy_set, medium_name: str | None = None, mountpoint=None, found=None) -> Attached:
    """Exactly one attached medium (DependencyError when none is, ConfigError when several are)."""
    hits = find(policy_set, medium_name, mountpoint, found)
    if not hits:
        names = ", ".join(m.name for d in removable(policy_set).values() for m in d.media
                          if medium_name in (None, m.name))
        raise DependencyError(f"no medium of the rotation set is attached and mounted ({names}); attach one, "
                              "mount it, and run again")
    if len(hits) > 1:
        raise ConfigError("several media are attached (" + ", ".join(h.medium.name for h in hits)
                          + "); name one with --medium")
    return hits[0]


def repository(cfg: Config, attached: Attached, host: str | None = None) -> Repository:
    """The restic repository of `host` (default: this one) on the attached medium (the destination's
    password); read-only (--no-lock, cache in state_dir) for a verifier."""
    url = Layout(attached.fs.mountpoint, host or cfg.host).repository
    return Repository(f"{attached.destination}:{attached.medium.name}", str(url), attached.dest.password_file,
                      {}, cfg.state_dir / "cache", cfg.restic, read_only=cfg.verifier)


def known_ids(cfg: Config) -> dict[str, dict]:
    """Snapshot id -> {time, target, kind} for every snapshot this host's ledger announced: the full ids of
    ok backup records (and their manifest companions), and the copies earlier media-sync records named."""
    ledger = Ledger(cfg.state_dir)
    try:
        backups, syncs = ledger.query(kind="backup"), ledger.query(kind=KIND)
    finally:
        ledger.index.close()
    out: dict[str, dict] = {}
    for rec in backups:
        data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
        got = announced.from_record(rec, cfg.host, data.get("target"))
        if got is None:
            continue
        out.setdefault(got.snapshot_id, {"time": got.time, "target": got.target, "kind": "data"})
        if got.manifest_snapshot:
            out.setdefault(got.manifest_snapshot, {"time": got.time, "target": got.target, "kind": "manifest"})
    for rec in syncs:
        for item in (rec.get("data") or {}).get("copied") or []:
            if isinstance(item, dict) and isinstance(item.get("snapshot_id"), str):
                original = out.get(str(item.get("original")))
                out.setdefault(item["snapshot_id"], {**(original or {}), "copy_of": item.get("original")})
    return out


def unannounced(listing, known: dict[str, dict]) -> list[str]:
    """Short ids (printable) of the medium's snapshots no ledger record names, and the unreadable ones."""
    bad = [s.short_id for s in listing if s.id not in known]
    return bad + [s.short_id for s in restic_snapshots.skipped_in(listing)]


def _source(policy_set, dest, target) -> str:
    return dest.copy_from if dest.copy_from in target.destinations else target.destinations[0]


def _missing(cfg: Config, policy_set, attached: Attached, targets, present: dict[str, str], known: dict) -> list:
    """Per target (target, source repo, [announced snapshot ids the medium lacks], {original id: copy id}
    of its snapshots the medium already holds)."""
    from backupd.actions.common import repository as dest_repository

    out = []
    for target in targets:
        source = _source(policy_set, attached.dest, target)
        repo = dest_repository(cfg, source, policy_set.destinations[source])
        listing = restic_snapshots.list_snapshots(repo, tags=[f"target={target.name}"], host=cfg.host)
        ids = [s.id for s in listing if s.id in known and s.id not in present]
        out.append((target, repo, ids, {s.id: present[s.id] for s in listing if s.id in present}))
    return out


def _room(missing: list, medium: Repository) -> tuple[int, int]:
    """(estimate, needed) bytes. Per target: the blob data its missing and present snapshots reference in
    the source (restic stats) less what its present copies reference on the medium; plus the margin."""
    estimate = 0
    for _, src, ids, have in missing:
        if ids:
            there = restic_stats.raw_size(medium, ids=sorted(have.values())) if have else 0
            estimate += max(0, restic_stats.raw_size(src, ids=ids + sorted(have)) - there)
    return estimate, int(estimate * (1 + MARGIN_SHARE)) + MARGIN_BYTES if estimate else 0


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _used(path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _base(cfg: Config, attached: Attached) -> dict:
    fs = attached.fs
    return {"destination": attached.destination, "medium": attached.medium.name, "uuid": fs.uuid,
            "label": fs.label, "device": fs.device, "mountpoint": str(fs.mountpoint), "host": cfg.host,
            "status": "failed", "read_back": "not run", "copied": [], "targets": {}, "planned": []}


def _refuse(cfg: Config, out: dict, why: str, exc_type=Finding) -> None:
    out.update(status="refused", error=why)
    evidence.record(cfg, KIND, out)
    raise exc_type(f"refused: medium {out['medium']} ({out['mountpoint']}): {why}; nothing written")


def sync(cfg: Config, policy_set, medium_name: str | None = None, mountpoint=None) -> dict:
    """Sync the one attached medium; returns the media-sync record's data (status ok|failed)."""
    attached = one(policy_set, medium_name, mountpoint)
    targets = offline_targets(policy_set).get(attached.destination, [])
    out, t0 = _base(cfg, attached), time.monotonic()
    out["planned"] = [t.name for t in targets]
    if not targets:
        raise ConfigError(f"no target has offline copies on {attached.destination} (set offline: {{max_age: ...}})")
    if attached.fs.read_only:
        raise ConfigError(f"medium {attached.medium.name} is mounted read-only at {attached.fs.mountpoint}; "
                          "mount it read-write to sync")
    repo, layout = repository(cfg, attached), Layout(attached.fs.mountpoint, cfg.host)
    known = known_ids(cfg)
    exists = layout.repository.exists() and restic_init.exists(repo)
    listing = restic_snapshots.list_snapshots(repo) if exists else restic_snapshots.Listing()
    strange = unannounced(listing, known)
    if strange:
        _refuse(cfg, out, f"its repository holds {len(strange)} snapshot(s) this host's ledger never announced "
                          f"({', '.join(strange[:10])}): someone else wrote to it; check it on the verifier "
                          "terminal (backupd media verify) and reformat it before it joins the rotation again")
    present = {s.original or s.id: s.id for s in listing}
    missing = _missing(cfg, policy_set, attached, targets, present, known)
    free = _free(attached.fs.mountpoint)
    out["bytes_estimate"], needed = _room(missing, repo)
    out["free_bytes"] = free
    if needed > free:
        _refuse(cfg, out, f"the copy needs about {needed >> 20} MiB (estimate {out['bytes_estimate'] >> 20} MiB "
                          f"plus margin) but only {free >> 20} MiB are free: use a larger medium, or reformat "
                          "this one and sync the full history")
    used = _used(attached.fs.mountpoint)
    try:
        _copy(cfg, out, repo, layout, exists, missing, known)
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except BackupdError as exc:
        out["error"] = str(exc)
    out["bytes_written"] = max(0, _used(attached.fs.mountpoint) - used)
    out["duration"] = round(time.monotonic() - t0, 3)
    rec = evidence.record(cfg, KIND, out)
    _leave_record(layout, rec)
    return {**out, "seq": rec["seq"]}


def _copy(cfg: Config, out: dict, repo: Repository, layout: Layout, exists: bool, missing: list,
          known: dict) -> None:
    """Init (source's chunker parameters), copy the missing snapshots, read everything back."""
    if not exists:
        layout.root.mkdir(parents=True, exist_ok=True)
        restic_copy.init_like(repo, missing[0][1])
    for target, src, ids, _ in missing:
        if ids:
            restic_copy.copy(repo, src, tags=[f"target={target.name}"], host=cfg.host, ids=ids)
    after = restic_snapshots.list_snapshots(repo)
    wanted = {i for _, _, ids, _ in missing for i in ids}
    out["copied"] = [{"snapshot_id": s.id, "original": s.original, "target": s.tagmap.get("target"),
                      "time": s.time.isoformat()} for s in after if s.original in wanted]
    out["targets"] = _newest(after, known, [m[0].name for m in missing])
    result = restic_check.check(repo, read_data_subset="1/1")
    out["read_back"] = "ok" if result.ok else "damaged"
    out["status"] = "ok" if result.ok else "failed"
    if not result.ok:
        out["error"] = "read-back found damage on the medium: do not store it; " + result.output[-300:]


def _newest(listing, known: dict, targets: list[str]) -> dict:
    """Per target: the newest data generation on the medium (its backup record's time), and the count."""
    out = {}
    for name in targets:
        gens = []
        for snap in listing:
            info = known.get(snap.original or "") or known.get(snap.id) or {}
            if info.get("target") == name and info.get("kind") == "data":
                gens.append((info["time"], snap.original or snap.id))
        newest = max(gens) if gens else None
        out[name] = {"generations": len(gens), "newest_time": newest[0] if newest else None,
                     "newest_snapshot": newest[1] if newest else None}
    return out


def _leave_record(layout: Layout, rec: dict) -> None:
    """The signed record beside the repository (for the verifier terminal); flushed to the medium."""
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        tmp = layout.last_sync.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, sort_keys=True) + "\n")
        os.replace(tmp, layout.last_sync)
    except OSError:
        pass  # the ledger holds the record; the copy on the medium is a convenience
    os.sync()


def detach_hint(result: dict) -> str:
    """What the operator does next."""
    if result["status"] == "ok":
        return (f"medium {result['medium']} is synced and read back: it may be detached now "
                f"(umount {result['mountpoint']}), stored away, and checked on the verifier terminal")
    return f"medium {result['medium']}: sync {result['status']}: do not store it as a good copy"



# --- restoring from a medium (restore, drill, incident restore) -------------------------------------------------

@dataclass
class Source:
    """Where a restore reads: a destination's repository, or a medium's; `note` says why a medium."""

    label: str
    repo: Repository
    note: str | None = None
    medium: Attached | None = None


def source_for(cfg: Config, policy_set, target, destination: str | None = None, found=None) -> Source:
    """The repository a restore of target reads. `destination`: one of the target's destinations, its
    removable destination or a medium of it (then the attached one); none: the first destination, unless
    it is an S3 destination that does not answer and a medium of the target's set is attached: then the
    newest attached one (by its last verified sync), said so in `note`."""
    from backupd.actions.common import Preflight
    from backupd.actions.common import repository as dest_repository

    offline_dest = offline_destination(target, policy_set.destinations)
    if destination is None or destination in target.destinations:
        name = destination or target.destinations[0]
        dest = policy_set.destinations[name]
        source = Source(name, dest_repository(cfg, name, dest))
        if destination is not None or offline_dest is None or dest.kind != "s3":
            return source
        try:
            Preflight(cfg).require(name, dest)
            return source
        except StorageUnavailable as exc:
            why = str(exc)
        hits = find(policy_set, found=found)
        hits = [h for h in hits if h.destination == offline_dest]
        if not hits:
            return source  # restic says the storage is down, as without media (exit 3)
        best = _newest_attached(cfg, hits, target.name)
        return Source(f"{best.destination}:{best.medium.name}", repository(cfg, best), medium=best,
                      note=f"{why}; so restoring from medium "
                           f"{best.medium.name}, the newest attached offline copy")
    dest = policy_set.destinations.get(destination)
    media_names = [m.name for m in policy_set.destinations[offline_dest].media] if offline_dest else []
    if destination != offline_dest and destination not in media_names:
        raise ConfigError(f"target {target.name} has no destination or medium {destination!r}; destinations: "
                          f"{', '.join(target.destinations)}" + (f"; media: {', '.join(media_names)}" if media_names
                                                                 else ""))
    hits = [h for h in find(policy_set, None if dest is not None else destination, found=found)
            if h.destination == offline_dest]
    if len(hits) != 1:
        raise (ConfigError if hits else DependencyError)(
            f"{len(hits) or 'no'} medium(s) of {offline_dest} attached for {destination!r}" + (
                ": name one with --destination" if hits else "; attach and mount one"))
    got = hits[0]
    return Source(f"{got.destination}:{got.medium.name}", repository(cfg, got), medium=got,
                  note=f"restoring from medium {got.medium.name} ({got.fs.describe()})")


def names(policy_set, target, destination: str) -> bool:
    """True when destination is one of target's destinations, its removable destination or one of its media."""
    offline_dest = offline_destination(target, policy_set.destinations)
    media_names = [m.name for m in policy_set.destinations[offline_dest].media] if offline_dest else []
    return destination in (*target.destinations, offline_dest, *media_names)


def _newest_attached(cfg: Config, hits: list[Attached], target: str) -> Attached:
    """The attached medium whose last verified sync holds target's newest generation (any, if none has one)."""
    from backupd.actions import offline

    rots = offline.rotations(offline.records(cfg.state_dir), target)
    newest: dict[str, str] = {}
    for r in rots:
        if r["status"] == "ok" and r["read_back"] == "ok" and r.get("newest_time"):
            newest[r["medium"]] = max(newest.get(r["medium"], ""), r["newest_time"])
    return max(hits, key=lambda h: newest.get(h.medium.name, ""))


def exclusions(cfg: Config, source: Source, target: str, base: dict[str, str]) -> dict[str, str]:
    """For a medium: snapshot id -> why not to restore it: what `base` excludes by the id it was copied
    from (failed drills, flags), and what this host's ledger never named (planted on the stored medium;
    only when the ledger names some, a rebuilt host without its ledger restores what the medium holds)."""
    if source.medium is None:
        return base
    known = known_ids(cfg)
    out = dict(base)
    for snap in restic_snapshots.list_snapshots(source.repo, tags=[f"target={target}"], lock=False):
        if base.get(snap.original or ""):
            out[snap.id] = base[snap.original]
        elif known and snap.id not in known:
            out[snap.id] = "on the medium, but no record of this host's ledger names it"
    return out
