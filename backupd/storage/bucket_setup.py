"""Create a WORM bucket once, with an administrator identity, or judge an existing one without touching it.

A new bucket gets Object Lock (set at creation: most servers cannot add it later), versioning, a
COMPLIANCE default retention of at least `required` (the longest min_history), and one lifecycle rule
that reclaims noncurrent versions (what prune and overwrites leave behind) no earlier than `required`
after they became noncurrent, the rule `lockconfig.lifecycle_check` accepts. An existing bucket is never
changed: a weaker bucket is reported, never "adopted".
"""

from __future__ import annotations

import math
from datetime import timedelta

from botocore.exceptions import ClientError

from backupd.errors import ConfigError
from backupd.storage import lockconfig
from backupd.storage.checks import Check
from backupd.storage.client import denied, error_code

DAY = timedelta(days=1)
RECLAIM_RULE_ID = "backupd-reclaim-noncurrent"
MISSING = ("404", "NoSuchBucket", "NotFound")


def days(required: timedelta) -> int:
    """Whole days covering `required` (at least 1)."""
    return max(1, math.ceil(required / DAY))


def reclaim_rule(required: timedelta) -> dict:
    """Noncurrent versions go `days(required)` days after they became noncurrent; current ones never expire."""
    return {"ID": RECLAIM_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": days(required)},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}


def exists(s3, bucket: str) -> bool:
    """True when the bucket exists and the identity may see it; ConfigError when it exists for someone else."""
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        if error_code(exc) in MISSING:
            return False
        if denied(exc):
            raise ConfigError(f"bucket {bucket} exists but the administrator identity may not read it "
                              "(another owner, or missing s3:ListBucket): choose another name") from None
        raise


def create(s3, bucket: str, region: str, required: timedelta) -> list[str]:
    """Create the bucket WORM from the start; returns what was set, in order."""
    args = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
    if region and region != "us-east-1":  # AWS refuses a LocationConstraint of us-east-1
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**args)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days(required)}}})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [reclaim_rule(required)]})
    return ["created with Object Lock", "versioning Enabled", f"default retention COMPLIANCE {days(required)}d",
            f"lifecycle {RECLAIM_RULE_ID}: noncurrent versions after {days(required)}d"]


def judge_existing(s3, bucket: str, prefixes: list[str], required: timedelta) -> list[Check]:
    """The WORM checks of an existing bucket (lifecycle rules covering `prefixes`), read with the
    administrator's keys; nothing is written."""
    checks = [lockconfig.versioning_check(s3, bucket)]
    checks += lockconfig.lock_checks(lockconfig.read_lock_config(s3, bucket), None, False, required)
    checks.append(lockconfig.lifecycle_check(lockconfig.read_lifecycle(s3, bucket), prefixes, required))
    return checks
