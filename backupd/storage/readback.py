"""Retain-until readback: objects written since the last audit plus a sample of older ones."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from backupd.storage.checks import Check, passed
from backupd.storage.lockconfig import observed_lock
from backupd.storage.versions import Version, list_versions, repository_data

SAMPLE = 20
MAX_NEW = 500
SLACK = timedelta(minutes=5)


def choose(objects: list[Version], since: datetime | None, sample: int = SAMPLE,
           rng: random.Random | None = None) -> list[Version]:
    """All objects newer than `since` (capped) plus a random sample of the older ones."""
    new = [v for v in objects if since is None or v.last_modified > since]
    old = [v for v in objects if since is not None and v.last_modified <= since]
    rng = rng or random.SystemRandom()
    return new[-MAX_NEW:] + rng.sample(old, min(sample, len(old)))


def problem(v: Version, head: dict, required: timedelta, now: datetime) -> str | None:
    """Why this version's lock is not good enough, or None."""
    lock = observed_lock(head)
    if lock is None:
        return f"{v.key}: no Object Lock retention"
    if lock["mode"] != "COMPLIANCE":
        return f"{v.key}: lock mode {lock['mode']}"
    until = lock["retain_until"]
    if until < now:
        return f"{v.key}: retention lapsed at {until.isoformat()} (run backupd extend-locks)"
    if until + SLACK < v.last_modified + required:
        return f"{v.key}: retain-until {until.isoformat()} is less than min_history after it was written"
    return None


def readback(s3, bucket: str, prefix: str, since: datetime | None, required: timedelta,
             now: datetime) -> tuple[Check, int]:
    """Check the lock of chosen objects with HEAD; returns (check, objects read)."""
    chosen = choose(repository_data(list_versions(s3, bucket, prefix), prefix), since)
    problems = []
    for v in chosen:
        why = problem(v, s3.head_object(Bucket=bucket, Key=v.key, VersionId=v.version_id), required, now)
        if why:
            problems.append(why)
    if problems:
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        return Check("retention_readback", False, f"{len(problems)} of {len(chosen)} object(s) are not "
                     f"locked long enough: " + "; ".join(problems[:10]) + more), len(chosen)
    return passed("retention_readback", f"{len(chosen)} object(s) read back, all locked COMPLIANCE "
                  f">= min_history"), len(chosen)
