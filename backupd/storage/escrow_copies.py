"""The escrow envelopes a bucket holds for one destination: every version, oldest locked first.

A writer can put a garbage version or a delete marker on top of the escrow object; recovery after
the host is lost must not stop there. Every version is a candidate; those still under Object Lock
come first (the writer could not have replaced them), oldest first, then the unlocked ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

from backupd.storage.lockconfig import observed_lock
from backupd.storage.versions import list_versions

MAX_BYTES = 64 * 1024  # an envelope is about 1 KiB; anything far larger is not one


@dataclass
class Copy:
    """One escrow version: its id, when it was written and until when it is locked (None: not locked)."""

    version_id: str
    written: datetime
    locked_until: datetime | None


def copies(s3, bucket: str, key: str, now: datetime) -> tuple[list[Copy], list[str]]:
    """(object versions of key in the order to try them, delete markers found on it as notes)."""
    folder = key.rpartition("/")[0]
    # S3 lists a key's versions newest first; reversed, equal times keep their true order in the sort
    found = [v for v in reversed(list_versions(s3, bucket, folder)) if v.key == key]
    notes = [f"delete marker {v.version_id} ({v.last_modified:%Y-%m-%d %H:%M}Z)" for v in found if v.delete_marker]
    out = []
    for v in (v for v in found if not v.delete_marker):
        until = _locked_until(s3, bucket, key, v.version_id)
        out.append(Copy(v.version_id, v.last_modified, until if until and until > now else None))
    out.sort(key=lambda c: (c.locked_until is None, c.written))
    return out, notes


def _locked_until(s3, bucket: str, key: str, version_id: str) -> datetime | None:
    """The version's retain-until; None when it has none or its HEAD is refused (a writer's version, e.g. one
    encrypted with a customer key: it goes last and its read names the refusal, never blocking the others)."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError:
        return None
    return (observed_lock(head) or {}).get("retain_until")


def read(s3, bucket: str, key: str, copy: Copy) -> dict:
    """The envelope in one version; ValueError when it is not a JSON object of sane size."""
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=copy.version_id)["Body"].read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc
