"""Offline copies as status, the daemon and the evidence report see them: from this host's `media-sync`
records, per target the newest read-back-verified copy, its age against offline.max_age, on which medium,
and every rotation (medium, time, read-back result).

The age of an offline copy is the age of the newest generation on it, timed by the backup record that
announced that generation (signed, never the snapshot's own time field).
"""

from __future__ import annotations

from datetime import datetime

from backupd.evidence.ledger import LEDGER_NAME, Ledger, evidence_dir
from backupd.policy.durations import format_duration

KIND = "media-sync"
#: the data fields of a media-sync record the evidence report reads
FIELDS = ("medium", "uuid", "status", "read_back", "targets", "planned")
#: (ledger path, size, mtime_ns) -> the media-sync records: status asks often, the ledger rarely changes
_cache: dict[tuple, list[dict]] = {}


def records(state_dir) -> list[dict]:
    """This ledger's media-sync records, oldest first (cached per ledger version)."""
    path = evidence_dir(state_dir) / LEDGER_NAME
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        ledger = Ledger(state_dir)
        try:
            found = ledger.query(kind=KIND)
        finally:
            ledger.index.close()
        _cache.clear()
        _cache[key] = found
    return _cache[key]


def _unix(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() if iso else None
    except ValueError:
        return None


def verified(data: dict) -> bool:
    """A rotation that counts: the sync finished and the read-back of the medium found no damage."""
    return data.get("status") == "ok" and data.get("read_back") == "ok"


def rotations(recs: list[dict], target: str) -> list[dict]:
    """Every rotation of target's copies, oldest first: seq, time, medium, uuid, status, read_back, newest."""
    out = []
    for rec in recs:
        data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
        per = data.get("targets") if isinstance(data.get("targets"), dict) else {}
        mine = per.get(target)
        planned = data.get("planned") if isinstance(data.get("planned"), list) else []
        if not isinstance(mine, dict) and target not in planned:
            continue  # a sync that was not for this target
        mine = mine if isinstance(mine, dict) else {}
        out.append({"seq": rec.get("seq"), "time": rec.get("time"), "medium": str(data.get("medium")),
                    "uuid": data.get("uuid"), "status": str(data.get("status")),
                    "read_back": str(data.get("read_back")), "newest_time": mine.get("newest_time"),
                    "generations": mine.get("generations")})
    return out


def newest(rots: list[dict]) -> dict | None:
    """The verified rotation whose newest generation is the newest."""
    good = [r for r in rots if r["status"] == "ok" and r["read_back"] == "ok" and _unix(r["newest_time"])]
    return max(good, key=lambda r: (_unix(r["newest_time"]), r["seq"] or 0), default=None)


def fields(state_dir, target, now: float) -> dict:
    """Status columns of target's offline copies (all None when the target has none configured)."""
    if getattr(target, "offline", None) is None:
        return {"offline_status": None}
    max_age = target.offline.max_age.total_seconds()
    rots = rotations(records(state_dir), target.name)
    best = newest(rots)
    media: dict[str, dict] = {}
    for r in rots:  # the last sync of each medium
        media[r["medium"]] = {k: r[k] for k in ("time", "status", "read_back", "newest_time", "generations")}
    row = {"offline_status": "never", "offline_max_age": format_duration(target.offline.max_age),
           "offline_max_age_seconds": max_age, "offline_medium": None, "offline_newest_time": None,
           "offline_synced": None, "offline_age_seconds": None, "offline_due": None, "offline_media": media}
    if best is not None:
        age = now - _unix(best["newest_time"])
        row.update(offline_status="ok" if age <= max_age else "stale", offline_medium=best["medium"],
                   offline_newest_time=best["newest_time"], offline_synced=best["time"],
                   offline_age_seconds=round(age), offline_due=_unix(best["newest_time"]) + max_age)
    return row


def reason(row: dict) -> str | None:
    """The state reason for an offline copy that is missing or too old, else None."""
    status = row.get("offline_status")
    if status == "never":
        return "stale: no read-back-verified offline copy yet (attach a medium and run backupd media sync)"
    if status == "stale":
        return (f"stale: newest offline copy (on {row['offline_medium']}) is {row['offline_age_seconds'] / 86400:.1f}d "
                f"old, beyond offline.max_age {row['offline_max_age']}")
    return None
