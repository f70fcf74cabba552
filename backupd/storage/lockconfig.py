"""Bucket settings that make a destination WORM: versioning, Object Lock, default retention, and no
lifecycle rule that could expire a backup version before min_history."""

from __future__ import annotations

from datetime import timedelta

from botocore.exceptions import ClientError

from backupd.policy.durations import format_duration
from backupd.storage.checks import Check, passed
from backupd.storage.client import denied, error_code, unsupported

DAY = timedelta(days=1)
NO_LOCK = ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound", "NoSuchObjectLockConfiguration")
NO_LIFECYCLE = ("NoSuchLifecycleConfiguration",)


def read_lock_config(s3, bucket: str) -> dict | None | str:
    """The ObjectLockConfiguration; None when the bucket has none; "denied" when we may not read it."""
    try:
        return s3.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration") or None
    except ClientError as exc:
        if error_code(exc) in NO_LOCK:
            return None
        if denied(exc) or unsupported(exc):
            return "denied"
        raise


def default_retention(config: dict) -> tuple[str | None, timedelta | None]:
    """(mode, period) of a lock configuration's default rule."""
    rule = (config.get("Rule") or {}).get("DefaultRetention") or {}
    if "Days" in rule:
        return rule.get("Mode"), int(rule["Days"]) * DAY
    if "Years" in rule:
        return rule.get("Mode"), int(rule["Years"]) * 365 * DAY
    return rule.get("Mode"), None


def versioning_check(s3, bucket: str) -> Check:
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status") or "never enabled"
    if status == "Enabled":
        return passed("versioning", "Enabled")
    return Check("versioning", False, f"bucket versioning is {status}: overwrites and deletes destroy data")


def mode_check(mode: str | None, pilot: bool, source: str) -> Check:
    if mode == "COMPLIANCE":
        return passed("lock_mode", f"COMPLIANCE ({source})")
    if mode == "GOVERNANCE" and pilot:
        return Check("lock_mode", False, f"GOVERNANCE on a pilot bucket ({source})", "warning")
    return Check("lock_mode", False, f"default lock mode is {mode or 'not set'} ({source}); need COMPLIANCE "
                 "(GOVERNANCE lets privileged users delete locked backups; allowed only with pilot: true)")


def period_check(period: timedelta | None, required: timedelta, source: str) -> Check:
    if period is not None and period + timedelta(minutes=5) >= required:
        return passed("default_retention", f"{format_duration(period)} >= min_history "
                      f"{format_duration(required)} ({source})")
    shown = format_duration(period) if period else "not set"
    return Check("default_retention", False, f"default retention {shown} ({source}) is shorter "
                 f"than the longest min_history {format_duration(required)} of the targets on this destination")


def lock_checks(config, observed: dict | None, pilot: bool, required: timedelta) -> list[Check]:
    """Checks of the lock configuration, or of the canary's readback when the config may not be read."""
    if config is None:
        return [Check("object_lock", False, "Object Lock is not enabled on the bucket: backups can be deleted")]
    if config == "denied":
        if observed is None:
            return [Check("object_lock", False, "lock configuration unreadable by the audit identity and no "
                          "canary object read back (no canary identity): Object Lock is not proven")]
        if not observed.get("mode"):
            return [Check("object_lock", False, "lock configuration unreadable and a fresh object carries no "
                          "lock: Object Lock is not in force")]
        src = "canary readback"
        period = observed["retain_until"] - observed["last_modified"]
        return [passed("object_lock", "in force (canary readback)"), mode_check(observed["mode"], pilot, src),
                period_check(period, required, src)]
    if config.get("ObjectLockEnabled") != "Enabled":
        return [Check("object_lock", False, "Object Lock is not enabled on the bucket")]
    mode, period = default_retention(config)
    return [passed("object_lock", "Enabled"), mode_check(mode, pilot, "configuration"),
            period_check(period, required, "configuration")]


def observed_lock(head: dict) -> dict | None:
    """mode / retain_until / last_modified of a HEAD response (None without a lock)."""
    if not head.get("ObjectLockMode"):
        return None
    return {"mode": head["ObjectLockMode"], "retain_until": head["ObjectLockRetainUntilDate"],
            "last_modified": head["LastModified"]}


def compliance(retain_until) -> dict:
    """put_object arguments that lock the new version COMPLIANCE until retain_until (the bucket's default
    retention may be shorter, or lapse; on SeaweedFS and AWS the identity needs PutObjectRetention)."""
    return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until}


def config_from_observed(observed: dict) -> dict:
    """The lock configuration a fresh object's readback implies (for a no-op write probe)."""
    days = round((observed["retain_until"] - observed["last_modified"]) / DAY)
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": observed["mode"], "Days": days}}}


def read_lifecycle(s3, bucket: str) -> list | str:
    """The bucket's lifecycle rules ([] when there are none); "denied" when we may not read them."""
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules") or []
    except ClientError as exc:
        if error_code(exc) in NO_LIFECYCLE:
            return []
        if denied(exc) or unsupported(exc):
            return "denied"
        raise


def _rule_prefix(rule: dict) -> str:
    flt = rule.get("Filter") or {}
    return flt.get("Prefix") or (flt.get("And") or {}).get("Prefix") or rule.get("Prefix") or ""


def _early(rule: dict, required: timedelta) -> list[str]:
    """What in one rule can remove or hide a version younger than `required`."""
    out = []
    expiration = rule.get("Expiration") or {}
    if "Date" in expiration:
        out.append(f"expires current versions on {expiration['Date']}")
    if "Days" in expiration and int(expiration["Days"]) * DAY < required:
        out.append(f"expires current versions after {expiration['Days']}d")
    noncurrent = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
    if noncurrent is not None and int(noncurrent) * DAY < required:
        out.append(f"deletes noncurrent versions after {noncurrent}d")
    return out


def lifecycle_check(rules: list | str, prefixes: list[str], required: timedelta) -> Check:
    """A finding when an enabled rule covering one of `prefixes` could expire a version before `required`."""
    if rules == "denied":
        return Check("lifecycle", False, "the audit identity may not read the lifecycle configuration: rules "
                     "that expire backup versions cannot be ruled out (grant s3:GetLifecycleConfiguration to "
                     "the auditor)", "warning")
    keys = [p.strip("/") + "/" for p in prefixes]
    risky = []
    for rule in rules:
        start = _rule_prefix(rule)
        if rule.get("Status") != "Enabled" or not any(k.startswith(start) or start.startswith(k) for k in keys):
            continue
        risky += [f"rule {rule.get('ID') or '(no id)'} on '{start}' {what}" for what in _early(rule, required)]
    if risky:
        return Check("lifecycle", False, f"lifecycle can remove backup versions before min_history "
                     f"{format_duration(required)}: " + "; ".join(risky))
    return passed("lifecycle", f"{len(rules)} rule(s); none expires a version under "
                  f"{', '.join(keys)} before {format_duration(required)}")
