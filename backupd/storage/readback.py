"""Retain-until readback: objects written since the last audit plus a sample of older ones, of the repository
(against min_history) and of the evidence objects (every version, against evidence.retention)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from backupd.policy.durations import format_duration
from backupd.storage import evidence_objects
from backupd.storage.checks import Check, passed
from backupd.storage.client import error_code
from backupd.storage.extend import MARGIN
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


def problem(v: Version, head: dict, required: timedelta, now: datetime, what: str = "min_history",
            slack: timedelta = SLACK) -> str | None:
    """Why this version's lock is not good enough (retain-until before written + required - slack), or None."""
    lock = observed_lock(head)
    if lock is None:
        return f"{v.key}: no Object Lock retention"
    if lock["mode"] != "COMPLIANCE":
        return f"{v.key}: lock mode {lock['mode']}"
    until = lock["retain_until"]
    if until < now:
        return f"{v.key}: retention lapsed at {until.isoformat()} (run backupd extend-locks)"
    if until + slack < v.last_modified + required:
        return f"{v.key}: retain-until {until.isoformat()} is less than {what} after it was written"
    return None


def readback(s3, bucket: str, prefix: str, since: datetime | None, required: timedelta,
             now: datetime) -> tuple[Check, int]:
    """Check the lock of chosen objects with HEAD; returns (check, objects read)."""
    chosen = choose(repository_data(list_versions(s3, bucket, prefix), prefix), since)
    problems = _problems(s3, bucket, chosen, required, now, "min_history", SLACK)
    return _verdict("retention_readback", problems, len(chosen), "min_history"), len(chosen)


def evidence_readback(s3, bucket: str, prefixes: list[str], since: datetime | None, retention: timedelta,
                      now: datetime) -> tuple[Check, int]:
    """Check the lock of chosen evidence object versions against evidence.retention; (check, versions read).

    The margin is the extender's: an object it leaves alone (lock within MARGIN of now + retention) is never
    flagged, while one written before retention was raised is, until `extend-locks` has run."""
    chosen = choose(evidence_objects.versions(s3, bucket, prefixes), since)
    what = f"evidence.retention ({format_duration(retention)})"
    return _verdict("evidence_retention", _problems(s3, bucket, chosen, retention, now, what, MARGIN),
                    len(chosen), what), len(chosen)


def _problems(s3, bucket: str, chosen: list[Version], required: timedelta, now: datetime, what: str,
              slack: timedelta) -> list[str]:
    """HEAD each chosen version; the reasons its lock falls short."""
    found = []
    for v in chosen:
        try:
            head = s3.head_object(Bucket=bucket, Key=v.key, VersionId=v.version_id)
        except ClientError as exc:  # e.g. a version put with a customer key (SSE-C): its lock is unproven
            found.append(f"{v.key}: its lock cannot be read ({error_code(exc)})")
            continue
        why = problem(v, head, required, now, what, slack)
        if why:
            found.append(why)
    return found


def _verdict(name: str, problems: list[str], read: int, what: str) -> Check:
    if problems:
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        return Check(name, False, f"{len(problems)} of {read} object(s) are not locked long enough: "
                     + "; ".join(problems[:10]) + more)
    return passed(name, f"{read} object(s) read back, all locked COMPLIANCE >= {what}")
