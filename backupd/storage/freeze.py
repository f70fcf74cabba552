"""Incident markers in the WORM bucket: the retention freeze every role can read.

One object per host under `.backupd-incident/` (`<host>.json`); each state change is a new version
(open, then closed), locked COMPLIANCE until its own retain-until (evidence.retention, not the bucket's
shorter default) and never deleted. Whoever would
forget or prune reads the latest version of every marker in the bucket first, so a freeze opened on
the TOS host also binds the maintenance host. Anything but a readable, well-formed "closed" latest
version counts as frozen: an open incident, a malformed body, or a delete marker on top (someone tried
to hide the incident).
"""

from __future__ import annotations

import json

from datetime import datetime

from botocore.exceptions import ClientError

from backupd.storage.client import error_code
from backupd.storage.lockconfig import compliance

PREFIX = ".backupd-incident/"
STATES = ("open", "closed")
MAX_BYTES = 64 * 1024


class Unreadable(Exception):
    """The freeze state of a bucket cannot be established (the message says why, without secrets)."""


def marker_key(host: str) -> str:
    return f"{PREFIX}{host}.json"


def write(s3, bucket: str, host: str, marker: dict, retain_until: datetime) -> dict:
    """PUT a new marker version locked until retain_until; returns {"key", "version_id", "retain_until"} (as read
    back; None: no lock)."""
    if marker.get("state") not in STATES:
        raise ValueError(f"marker state must be one of {STATES}")
    key = marker_key(host)
    body = json.dumps(marker, sort_keys=True).encode()
    version = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                            **compliance(retain_until)).get("VersionId")
    until = None
    if version:
        until = s3.head_object(Bucket=bucket, Key=key, VersionId=version).get("ObjectLockRetainUntilDate")
    return {"key": key, "version_id": version, "retain_until": until.isoformat() if until else None}


def _latest(s3, bucket: str) -> dict[str, dict]:
    """key -> its latest version or delete marker (listing entries) under PREFIX."""
    latest: dict[str, dict] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=PREFIX):
        for kind in ("Versions", "DeleteMarkers"):
            for entry in page.get(kind, []):
                if entry.get("IsLatest"):
                    latest[entry["Key"]] = {**entry, "delete_marker": kind == "DeleteMarkers"}
    return latest


def _parse(key: str, body: bytes) -> dict:
    try:
        marker = json.loads(body.decode("utf-8")) if len(body) <= MAX_BYTES else None
    except (UnicodeDecodeError, ValueError):
        marker = None
    if not isinstance(marker, dict) or marker.get("state") not in STATES or not marker.get("id"):
        raise Unreadable(f"marker {key} is malformed (no JSON object with an id and state open|closed)")
    return marker


def open_incidents(s3, bucket: str) -> list[dict]:
    """The markers whose latest version is "open"; raises Unreadable when the state cannot be known."""
    try:
        latest = _latest(s3, bucket)
        found = []
        for key, entry in sorted(latest.items()):
            if entry["delete_marker"]:
                raise Unreadable(f"marker {key} is hidden by a delete marker (someone tried to lift the freeze); "
                                 "close the incident with `backupd incident end` to write a closed version")
            body = s3.get_object(Bucket=bucket, Key=key, VersionId=entry["VersionId"])["Body"].read(MAX_BYTES + 1)
            marker = _parse(key, body)
            if marker["state"] == "open":
                found.append({**marker, "key": key})
        return found
    except ClientError as exc:
        raise Unreadable(f"the incident markers under {PREFIX} cannot be read ({error_code(exc)})") from None
