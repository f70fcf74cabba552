"""Retention extender: keep every live repository object locked until at least now + R, and every version of
every evidence object (storage/evidence_objects.py) until now + evidence.retention.

Invariant (docs/threat-model.md): extension interval + longest outage of the extender < R, so no live
pack's lock ever lapses. Locks are only ever lengthened; COMPLIANCE forbids shortening anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from backupd.storage import evidence_objects
from backupd.storage.client import error_code
from backupd.storage.lockconfig import observed_lock
from backupd.storage.versions import Version, list_versions, repository_data

#: extend only when the lock would end within this margin of the goal: spares rewriting every
#: object's retention on every run
MARGIN = timedelta(days=1)
#: evidence is locked for a year or more: re-extend a version once a month, not on every weekly run
EVIDENCE_MARGIN = timedelta(days=30)


@dataclass
class ExtendResult:
    objects: int = 0
    extended: int = 0
    already: int = 0
    failed: list[str] = field(default_factory=list)
    until: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def needs_extension(current: datetime | None, goal: datetime, margin: timedelta = MARGIN) -> bool:
    """True when the lock ends (or ended) before goal - margin, or there is none."""
    return current is None or current < goal - margin


def extend(s3, bucket: str, prefix: str, period: timedelta, now: datetime,
           margin: timedelta = MARGIN) -> ExtendResult:
    """Raise retain-until of every live object under prefix to now + period (COMPLIANCE)."""
    return extend_versions(s3, bucket, repository_data(list_versions(s3, bucket, prefix), prefix), now + period,
                           margin)


def extend_evidence(s3, bucket: str, prefixes: list[str], retention: timedelta, now: datetime,
                    margin: timedelta = EVIDENCE_MARGIN, cache=None) -> ExtendResult:
    """Raise retain-until of every evidence object version under prefixes to now + retention (COMPLIANCE).

    cache (lock_cache.LockCache): versions remembered locked until goal - margin are not read again."""
    return extend_versions(s3, bucket, evidence_objects.versions(s3, bucket, prefixes), now + retention, margin,
                           cache)


def extend_versions(s3, bucket: str, versions: list[Version], goal: datetime, margin: timedelta,
                    cache=None) -> ExtendResult:
    """Raise each version's retain-until to goal when it would end before goal - margin."""
    result = ExtendResult(until=goal.isoformat())
    for v in versions:
        result.objects += 1
        if cache is not None and not needs_extension(cache.get(bucket, v.key, v.version_id), goal, margin):
            result.already += 1
            continue
        try:  # one version that cannot be read (e.g. a host's SSE-C plant) never stops the others
            lock = observed_lock(s3.head_object(Bucket=bucket, Key=v.key, VersionId=v.version_id))
            until = lock and lock["retain_until"]
            if needs_extension(until, goal, margin):
                s3.put_object_retention(Bucket=bucket, Key=v.key, VersionId=v.version_id,
                                        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": goal})
                result.extended += 1
                until = goal
            else:
                result.already += 1
            if cache is not None and until:
                cache.put(bucket, v.key, v.version_id, until)
        except ClientError as exc:
            result.failed.append(f"{v.key}: {error_code(exc)}")
    return result
