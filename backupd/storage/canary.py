"""The delete canary and the writer's permission probes: the daemon's own identity must not be able
to destroy a locked version or reconfigure the bucket. Servers that accept lock headers and ignore
them are caught here, by what they do rather than what they claim."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from backupd.storage.checks import Check, passed
from backupd.storage.client import denied, error_code
from backupd.storage.lockconfig import observed_lock

CANARY_DIR = ".backupd-canary"


def canary_key(prefix: str, host: str) -> str:
    return f"{prefix.rstrip('/')}/{CANARY_DIR}/{host}-{int(time.time())}"


def delete_canary(writer, bucket: str, key: str) -> tuple[Check, dict | None]:
    """PUT a canary, read its lock back, try to delete that version. Returns (check, observed lock)."""
    version = writer.put_object(Bucket=bucket, Key=key, Body=b"backupd delete canary\n").get("VersionId")
    if not version or version == "null":
        return Check("delete_canary", False, "the bucket returned no version id: versioning is off, "
                     "a delete would destroy the object"), None
    observed = observed_lock(writer.head_object(Bucket=bucket, Key=key, VersionId=version))
    try:
        writer.delete_object(Bucket=bucket, Key=key, VersionId=version)
    except ClientError as exc:
        if denied(exc):
            _hide(writer, bucket, key)
            return passed("delete_canary", f"deleting the locked canary version was refused "
                          f"({error_code(exc)})"), observed
        raise
    return Check("delete_canary", False, "NOT WORM: the daemon's credentials deleted a locked object version "
                 f"({key}); this storage does not enforce Object Lock"), observed


def _hide(writer, bucket: str, key: str) -> None:
    """A delete marker keeps the canary out of current listings; the locked version stays."""
    try:
        writer.delete_object(Bucket=bucket, Key=key)
    except ClientError:
        pass


def _probe(name: str, call, what: str, warn_if_allowed: str | None = None) -> Check:
    """Run a no-op change with the writer; AccessDenied is the expected, good answer."""
    try:
        call()
    except ClientError as exc:
        if denied(exc):
            return passed(name, f"writer may not {what} ({error_code(exc)})")
        return Check(name, False, f"writer {what}: unexpected answer {error_code(exc)}", "warning")
    if warn_if_allowed:
        return Check(name, False, f"writer may {what}; {warn_if_allowed}", "warning")
    return Check(name, False, f"the daemon's credentials may {what}")


def writer_probes(writer, bucket: str, lock_config) -> list[Check]:
    """Read-modify-write no-ops with the writer: lock configuration, versioning, lifecycle."""
    checks = []
    if isinstance(lock_config, dict):
        checks.append(_probe("writer_lock_config", lambda: writer.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration=lock_config), "change the Object Lock configuration"))
    locked = isinstance(lock_config, dict) or lock_config == "denied"
    checks.append(_probe("writer_versioning", lambda: writer.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}), "set bucket versioning",
        "versioning cannot be suspended while Object Lock is on; deny s3:PutBucketVersioning anyway"
        if locked else None))
    checks.append(_lifecycle_probe(writer, bucket, locked))
    return checks


def _lifecycle_probe(writer, bucket: str, locked: bool) -> Check:
    """PUT the current lifecycle back unchanged, or DELETE it when there is none (both no-ops)."""
    try:
        rules = writer.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules")
    except ClientError:
        rules = None
    if rules:
        call = lambda: writer.put_bucket_lifecycle_configuration(  # noqa: E731
            Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    else:
        call = lambda: writer.delete_bucket_lifecycle(Bucket=bucket)  # noqa: E731
    note = ("a lifecycle rule cannot delete locked versions but can purge versions whose retention lapsed; "
            "deny s3:PutLifecycleConfiguration to the writer (deploy/iam/writer.json)") if locked else None
    return _probe("writer_lifecycle", call, "change the lifecycle configuration", note)
