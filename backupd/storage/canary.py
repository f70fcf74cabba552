"""The delete canary and the writer's permission probes.

The canary runs with a dedicated identity that IAM allows to delete object versions, but only under
the bucket's `.backupd-canary/` prefix. So when it is refused deleting a fresh, locked canary version,
the refusal can only come from Object Lock, and the audit proves that with a control: the same identity
must be able to delete an unlocked version (a delete marker it just made) under the same prefix. A
refusal of the control is IAM's; NotImplemented/MethodNotAllowed prove nothing. Servers that accept
lock headers and ignore them are caught here, by what they do rather than what they claim.

The writer probes try no-op changes of the bucket's lock configuration, versioning, lifecycle and
policy with the daemon's keys: anything but a refusal is a finding.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from backupd.storage.checks import Check, passed
from backupd.storage.client import denied, error_code, error_message, unsupported
from backupd.storage.lockconfig import observed_lock

#: Bucket-level prefix of canary objects: the only keys the canary identity may delete versions of.
CANARY_PREFIX = ".backupd-canary/"
LOCK_WORDS = ("lock", "retention", "worm", "protected", "compliance")
NO_POLICY = ("NoSuchBucketPolicy",)


def canary_key(host: str) -> str:
    return f"{CANARY_PREFIX}{host}/{int(time.time())}"


def delete_canary(canary, bucket: str, key: str) -> tuple[Check, dict]:
    """PUT a canary, read its lock back, try to delete that version; (check, observed lock or {})."""
    version = canary.put_object(Bucket=bucket, Key=key, Body=b"backupd delete canary\n").get("VersionId")
    if not version or version == "null":
        return Check("delete_canary", False, "the bucket returned no version id: versioning is off, "
                     "a delete would destroy the object"), {}
    observed = observed_lock(canary.head_object(Bucket=bucket, Key=key, VersionId=version)) or {}
    try:
        canary.delete_object(Bucket=bucket, Key=key, VersionId=version)
    except ClientError as exc:
        check = _judge_refusal(canary, bucket, key, version, exc)
        _hide(canary, bucket, key)
        return check, observed
    claim = "a version the bucket reports as locked" if observed else "a fresh version (no lock)"
    return Check("delete_canary", False, f"NOT WORM: the canary identity deleted {claim} ({key}); this "
                 "storage does not enforce Object Lock"), observed


def _judge_refusal(canary, bucket: str, key: str, version: str, exc: ClientError) -> Check:
    """A pass only when the refusal is Object Lock's: not unsupported, not IAM, the version still locked."""
    code = error_code(exc)
    if unsupported(exc) or not denied(exc):
        return Check("delete_canary", False, f"deleting the canary version answered {code}: the server does "
                     "not support version deletes, so the canary cannot prove Object Lock")
    control = _control_delete(canary, bucket, key)
    if control:
        return Check("delete_canary", False, f"IAM refusal, not a lock refusal: the canary identity was refused "
                     f"({code}) and was also refused deleting an unlocked delete marker ({control}); grant it "
                     f"s3:DeleteObjectVersion on {CANARY_PREFIX}* (deploy/iam/canary.json)")
    still = _still_locked(canary, bucket, key, version)
    if still:
        return Check("delete_canary", False, f"the delete was refused ({code}) but {still}")
    why = error_message(exc)
    reason = f": {why}" if any(w in why.lower() for w in LOCK_WORDS) else ""
    return passed("delete_canary", f"deleting the locked canary version was refused ({code}{reason}); the same "
                  "identity deleted an unlocked delete marker there, so the refusal is Object Lock's")


def _control_delete(canary, bucket: str, key: str) -> str | None:
    """Make a delete marker (never locked) and delete it by version id; None when that worked."""
    try:
        marker = canary.delete_object(Bucket=bucket, Key=key).get("VersionId")
        if not marker:
            return "no delete-marker version id returned"
        canary.delete_object(Bucket=bucket, Key=key, VersionId=marker)
    except ClientError as exc:
        return error_code(exc) or "refused"
    return None


def _still_locked(canary, bucket: str, key: str, version: str) -> str | None:
    """None when the refused version still exists with a lock in force; else what is wrong."""
    try:
        lock = observed_lock(canary.head_object(Bucket=bucket, Key=key, VersionId=version))
    except ClientError as exc:
        return f"the version can no longer be read ({error_code(exc)})"
    if not lock:
        return "the version carries no lock, so the refusal is not Object Lock's"
    if lock["retain_until"] <= datetime.now(timezone.utc):
        return f"its lock ended at {lock['retain_until'].isoformat()}"
    return None


def _hide(canary, bucket: str, key: str) -> None:
    """A delete marker keeps the canary out of current listings; the locked version stays."""
    try:
        canary.delete_object(Bucket=bucket, Key=key)
    except ClientError:
        pass


def _probe(name: str, call, what: str) -> Check:
    """Run a no-op change with the writer; a refusal is the expected, good answer."""
    try:
        call()
    except ClientError as exc:
        if denied(exc):
            return passed(name, f"writer may not {what} ({error_code(exc)})")
        if unsupported(exc):
            return Check(name, False, f"writer {what}: the server answered {error_code(exc)}; deny it by "
                         "policy anyway", "warning")
        return Check(name, False, f"writer {what}: unexpected answer {error_code(exc)}", "warning")
    return Check(name, False, f"the daemon's credentials may {what}: deny it to the writer "
                 "(deploy/iam/writer.json; SeaweedFS: grant Write:<bucket>/*, never Write:<bucket>)")


def writer_probes(writer, reader, bucket: str, lock_config) -> list[Check]:
    """No-op changes with the writer: lock configuration, versioning, lifecycle, bucket policy. The reader
    (auditor) reads the current settings, so a probe never changes anything even when it is allowed."""
    checks = []
    if isinstance(lock_config, dict):
        checks.append(_probe("writer_lock_config", lambda: writer.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration=lock_config), "change the Object Lock configuration"))
    checks.append(_probe("writer_versioning", lambda: writer.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}), "set bucket versioning"))
    checks.append(_lifecycle_probe(writer, reader, bucket))
    checks.append(_policy_probe(writer, reader, bucket))
    return checks


def _unprobed(name: str, what: str, exc: ClientError) -> Check:
    return Check(name, False, f"cannot probe whether the writer may {what} without changing it: the audit "
                 f"identity may not read it ({error_code(exc)})", "warning")


def _lifecycle_probe(writer, reader, bucket: str) -> Check:
    """PUT the current lifecycle back unchanged, or DELETE it when there is none (both no-ops)."""
    what = "change the lifecycle configuration"
    try:
        rules = reader.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules")
    except ClientError as exc:
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            return _unprobed("writer_lifecycle", what, exc)
        rules = None
    if rules:
        call = lambda: writer.put_bucket_lifecycle_configuration(  # noqa: E731
            Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    else:
        call = lambda: writer.delete_bucket_lifecycle(Bucket=bucket)  # noqa: E731
    return _probe("writer_lifecycle", call, what)


def _policy_probe(writer, reader, bucket: str) -> Check:
    """PUT the current bucket policy back unchanged, or DELETE it when there is none (both no-ops)."""
    what = "change the bucket policy"
    try:
        policy = reader.get_bucket_policy(Bucket=bucket).get("Policy")
    except ClientError as exc:
        if unsupported(exc):
            return passed("writer_bucket_policy", f"the server has no bucket policies ({error_code(exc)})")
        if error_code(exc) not in NO_POLICY:
            return _unprobed("writer_bucket_policy", what, exc)
        policy = None
    if policy:
        call = lambda: writer.put_bucket_policy(Bucket=bucket, Policy=policy)  # noqa: E731
    else:
        call = lambda: writer.delete_bucket_policy(Bucket=bucket)  # noqa: E731
    return _probe("writer_bucket_policy", call, what)
