"""What the backup host announced: the snapshots its signed, WORM-mirrored `backup` records name (verifier).

Anyone with the writer keys and the repository password can add a restic snapshot, tagged like backupd's,
with a manifest that matches its content and any time. A verifier therefore drills only snapshots a backup
record in the host's mirrored ledger announced (id and the SHA-256 of the manifest as stored), read with
read-only keys and verified the way `backupd evidence pull` verifies it (announced_mirror.py); the
verified RPO runs from that record's time, never from the snapshot's own time field. Anything else in the
repository is a finding.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from backupd.errors import Finding
from backupd.evidence import record_format

#: Why a snapshot in the repository does not count as a restore point for a verifier.
UNANNOUNCED = "no mirrored backup record announces it"
UNHASHED = "its backup record carries no manifest hash (written before announcements)"
SHORT_ID = "its backup record names only its short id (the full id could not be read at backup time)"
#: Reasons that are no finding: the backup host did announce the snapshot, in a form that cannot count.
NOT_FINDINGS = (UNHASHED, SHORT_ID)
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_SHORT_ID = re.compile(r"[0-9a-f]{8,63}")


@dataclass(frozen=True)
class Announcement:
    """One snapshot a mirrored backup record named."""

    snapshot_id: str
    host: str
    target: str
    destination: str
    time: str  # the record's (signed) time, ISO 8601 UTC: the verified RPO's clock
    seq: int
    manifest_sha256: str | None  # None: a record from before announcements
    manifest_snapshot: str | None = None  # companion snapshot holding a dump target's manifest

    def when(self) -> datetime:
        return datetime.fromisoformat(self.time.replace("Z", "+00:00"))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Screened:
    """A target's data snapshots sorted by what the mirrored ledger says of them (each oldest first)."""

    counted: list = field(default_factory=list)  # announced with a manifest hash: may be drilled
    rejected: list = field(default_factory=list)  # (snapshot or skipped listing entry, why): never drilled
    by_id: dict[str, Announcement] = field(default_factory=dict)  # counted snapshot id -> announcement

    def findings(self) -> list[dict]:
        """The rejected snapshots, for the drill report and its evidence record; `finding` is True for one
        no record names (planted, or listed so that Python cannot read it), False for one a record names in a
        form that cannot count (from before announcements: no hash; a short id only)."""
        return [{"snapshot_id": s.id, "time": s.time if isinstance(s.time, str) else s.time.isoformat(),
                 "host": s.host, "why": why, "finding": why not in NOT_FINDINGS} for s, why in self.rejected]


def from_record(rec: dict, host: str, target: str) -> Announcement | None:
    """The announcement in one parsed ledger record, or None (another kind, host or target, a failed
    backup). Records from before announcements still name their snapshot, with no manifest hash."""
    got = _announcement(rec, host)
    return got if got is not None and got.target == target else None


def _announcement(rec: dict, host: str) -> Announcement | None:
    """from_record for any target."""
    data = rec.get("data")
    if rec.get("kind") != "backup" or rec.get("host") != host or not isinstance(data, dict):
        return None
    sid, target = data.get("snapshot_id"), data.get("target")
    if not isinstance(target, str) or data.get("status") != "ok" or not isinstance(sid, str) or not sid:
        return None
    digest = data.get("manifest_sha256")
    facts = data.get("facts") if isinstance(data.get("facts"), dict) else {}
    holder = facts.get("manifest_snapshot")
    return Announcement(sid, host, target, str(data.get("destination")), str(rec.get("time")), int(rec["seq"]),
                        digest if isinstance(digest, str) else None, holder if isinstance(holder, str) else None)


def from_lines(lines, host: str, target: str) -> dict[str, Announcement]:
    """snapshot id -> its first announcement, from the lines of a verified ledger of host."""
    return by_target(lines, host, [target])[target]


def by_target(lines, host: str, targets) -> dict[str, dict[str, Announcement]]:
    """target -> snapshot id -> its first announcement, for each of `targets`, from one pass over the lines
    of a verified ledger of host."""
    out: dict[str, dict[str, Announcement]] = {t: {} for t in targets}
    for line in lines:
        line = line.rstrip(b"\n")
        fast = record_format.scan(line)
        if fast is not None and fast[1] != b"backup":
            continue  # only backup records announce; the rest need no JSON parse
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the verify before this found none; a line it accepted is JSON
        got = _announcement(rec, host) if isinstance(rec, dict) else None
        if got is not None and got.target in out:
            out[got.target].setdefault(got.snapshot_id, got)
    return out


def screen(snaps, announced: dict[str, Announcement], skipped=()) -> Screened:
    """Which snapshots count: the exact id announced by the host the snapshot names, with a manifest hash
    (a copy's `original` or a prefix never stands in: both are the writer's to choose). A record naming a
    short id (its backup could not read the full one) makes the one snapshot of its host that id is a
    prefix of rejected without a finding (two such snapshots: both are findings, one was planted beside
    it). `skipped`: listing entries Python cannot read (engine.snapshots.Skipped), findings: no record can
    announce them."""
    out = Screened()
    shorts = [a for a in announced.values() if not _FULL_ID.fullmatch(a.snapshot_id)
              and _SHORT_ID.fullmatch(a.snapshot_id)]
    for snap in snaps:
        got = announced.get(snap.id)
        if got is None or got.host != snap.host:
            out.rejected.append((snap, SHORT_ID if _short_announced(snap, snaps, shorts) else UNANNOUNCED))
        elif not got.manifest_sha256:
            out.rejected.append((snap, UNHASHED))
        else:
            out.counted.append(snap)
            out.by_id[snap.id] = got
    out.rejected += [(item, f"listed with a {item.why}: no backup record can announce it") for item in skipped]
    return out


def _short_announced(snap, snaps, shorts: list[Announcement]) -> bool:
    """True when a short-id announcement of snap's host names snap and no other listed snapshot."""
    return any(a.host == snap.host and snap.id.startswith(a.snapshot_id)
               and sum(s.id.startswith(a.snapshot_id) for s in snaps) == 1 for a in shorts)


def check_manifest(data: bytes | str, announcement: Announcement | None, where: str) -> None:
    """Finding when the manifest bytes read from the repository do not hash to the announced value."""
    if announcement is None or not announcement.manifest_sha256:
        return
    raw = data if isinstance(data, bytes) else data.encode()
    if hashlib.sha256(raw).hexdigest() != announcement.manifest_sha256:
        raise Finding(f"the manifest in snapshot {where} is not the one {announcement.host} announced (backup "
                      f"record {announcement.seq}: sha256 {announcement.manifest_sha256[:12]}); cannot verify")
