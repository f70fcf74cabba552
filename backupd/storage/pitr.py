"""Point-in-time recovery: rebuild a repository prefix as it was at a moment from object versions.

For each key the newest version written at or before `as_of` is chosen; a key whose newest entry
then was a delete marker stays deleted. Later delete markers and overwrites (an attacker's) are
ignored. The chosen versions are copied server-side into a clean prefix; nothing is deleted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from backupd.storage.versions import Version, list_versions


@dataclass
class RecoveryPlan:
    chosen: list[Version] = field(default_factory=list)
    deleted_then: int = 0
    newer_ignored: int = 0


@dataclass
class RecoveryResult:
    copied: int = 0
    bytes: int = 0
    deleted_then: int = 0
    newer_ignored: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def plan(versions: list[Version], as_of: datetime) -> RecoveryPlan:
    """The version of each key that was current at `as_of`."""
    out = RecoveryPlan()
    best: dict[str, Version] = {}
    for v in versions:
        if v.last_modified > as_of:
            out.newer_ignored += 1
            continue
        cur = best.get(v.key)
        if cur is None or v.last_modified >= cur.last_modified:
            best[v.key] = v
    for v in best.values():
        if v.delete_marker:
            out.deleted_then += 1
        else:
            out.chosen.append(v)
    out.chosen.sort(key=lambda v: v.key)
    return out


def target_key(key: str, source: str, target: str) -> str:
    return target.rstrip("/") + "/" + key[len(source.rstrip("/")) + 1:]


def recover(s3, bucket: str, source: str, target: str, as_of: datetime, *,
            skip_locks: bool = True) -> RecoveryResult:
    """Copy the versions current at as_of from source/ to target/ (restic locks/ left out)."""
    if target.rstrip("/") == source.rstrip("/") or target.startswith(source.rstrip("/") + "/"):
        raise ValueError("the recovery prefix must be outside the damaged repository")
    if list_versions(s3, bucket, target):
        raise FileExistsError(f"{target}/ is not empty; recover into a clean prefix")
    p = plan(list_versions(s3, bucket, source), as_of)
    result = RecoveryResult(deleted_then=p.deleted_then, newer_ignored=p.newer_ignored)
    locks = source.rstrip("/") + "/locks/"
    for v in p.chosen:
        if skip_locks and v.key.startswith(locks):
            continue
        s3.copy_object(Bucket=bucket, Key=target_key(v.key, source, target),
                       CopySource={"Bucket": bucket, "Key": v.key, "VersionId": v.version_id})
        result.copied += 1
        result.bytes += v.size
    return result
