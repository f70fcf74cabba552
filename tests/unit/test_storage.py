"""Storage audit, extender and point-in-time logic against moto (fast; no IAM: see integration tests)."""

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from backupd.storage import canary, extend, lockconfig, pitr, readback
from backupd.storage.versions import Version, list_versions, repository_data

NOW = datetime(2026, 7, 1, tzinfo=timezone.utc)
SIX_WEEKS = timedelta(weeks=6)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
        client.put_object_lock_configuration(Bucket="locked", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 42}}})
        client.create_bucket(Bucket="plain")
        client.put_bucket_versioning(Bucket="plain", VersioningConfiguration={"Status": "Enabled"})
        yield client


def _failed(checks):
    return [c.name for c in checks if not c.ok and c.severity == "error"]


def test_locked_bucket_with_long_enough_compliance_retention_passes(s3):
    config = lockconfig.read_lock_config(s3, "locked")
    assert _failed(lockconfig.lock_checks(config, None, False, SIX_WEEKS)) == []
    assert lockconfig.versioning_check(s3, "locked").ok


def test_bucket_without_object_lock_is_a_finding(s3):
    config = lockconfig.read_lock_config(s3, "plain")
    assert config is None
    assert _failed(lockconfig.lock_checks(config, None, False, SIX_WEEKS)) == ["object_lock"]


def test_retention_shorter_than_min_history_is_a_finding(s3):
    config = lockconfig.read_lock_config(s3, "locked")
    assert _failed(lockconfig.lock_checks(config, None, False, timedelta(weeks=12))) == ["default_retention"]


def test_governance_is_a_finding_unless_pilot():
    config = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 60}}}
    assert _failed(lockconfig.lock_checks(config, None, False, SIX_WEEKS)) == ["lock_mode"]
    pilot = lockconfig.lock_checks(config, None, True, SIX_WEEKS)
    assert _failed(pilot) == [] and any(c.severity == "warning" for c in pilot)


def test_unreadable_config_falls_back_to_canary_readback():
    observed = {"mode": "COMPLIANCE", "last_modified": NOW, "retain_until": NOW + timedelta(days=1)}
    assert _failed(lockconfig.lock_checks("denied", observed, False, SIX_WEEKS)) == ["default_retention"]
    assert _failed(lockconfig.lock_checks("denied", None, False, SIX_WEEKS)) == ["object_lock"]
    observed["retain_until"] = NOW + SIX_WEEKS
    assert _failed(lockconfig.lock_checks("denied", observed, False, SIX_WEEKS)) == []


def test_delete_canary_is_refused_on_a_locked_bucket(s3):
    check, observed = canary.delete_canary(s3, "locked", canary.canary_key("h1"))
    assert check.ok, check.detail
    assert observed["mode"] == "COMPLIANCE"


def test_delete_canary_detects_storage_that_lets_the_delete_through(s3):
    check, observed = canary.delete_canary(s3, "plain", canary.canary_key("h1"))
    assert not check.ok and "NOT WORM" in check.detail
    assert observed == {}


def test_readback_flags_objects_without_lock(s3):
    s3.put_object(Bucket="plain", Key="repo/data/ab/abc", Body=b"x")
    check, read = readback.readback(s3, "plain", "repo", None, SIX_WEEKS, datetime.now(timezone.utc))
    assert not check.ok and read == 1 and "no Object Lock" in check.detail
    s3.put_object(Bucket="locked", Key="repo/data/ab/abc", Body=b"x")
    check, read = readback.readback(s3, "locked", "repo", None, SIX_WEEKS, datetime.now(timezone.utc))
    assert check.ok, check.detail


def test_readback_chooses_all_new_objects_and_a_sample_of_old_ones():
    objs = [Version(f"k{i}", "v", NOW + timedelta(hours=i), True) for i in range(100)]
    chosen = readback.choose(objs, NOW + timedelta(hours=49, minutes=30), sample=5)
    assert {v.key for v in chosen[:50]} == {f"k{i}" for i in range(50, 100)}
    assert len(chosen) == 55


def test_extender_lengthens_live_objects_with_a_controlled_clock(s3):
    for key in ("repo/config", "repo/data/aa/pack1", "repo/locks/lock1", "repo/gone"):
        s3.put_object(Bucket="locked", Key=key, Body=b"x")
    s3.delete_object(Bucket="locked", Key="repo/gone")  # a delete marker: no longer referenced
    later = datetime.now(timezone.utc) + timedelta(days=40)  # the default 42d lock is about to lapse
    result = extend.extend(s3, "locked", "repo", SIX_WEEKS, later)
    assert (result.objects, result.extended, result.failed) == (2, 2, [])
    for key in ("repo/config", "repo/data/aa/pack1"):
        until = s3.head_object(Bucket="locked", Key=key)["ObjectLockRetainUntilDate"]
        assert until >= later + SIX_WEEKS - timedelta(seconds=1)
    lock_until = s3.head_object(Bucket="locked", Key="repo/locks/lock1")["ObjectLockRetainUntilDate"]
    assert lock_until < later + timedelta(days=3)
    again = extend.extend(s3, "locked", "repo", SIX_WEEKS, later + timedelta(hours=1))
    assert (again.extended, again.already) == (0, 2)


def test_needs_extension():
    goal = NOW + SIX_WEEKS
    assert extend.needs_extension(None, goal)
    assert extend.needs_extension(NOW, goal)
    assert not extend.needs_extension(goal, goal)


def _v(key, minutes, marker=False):
    return Version(key, f"{key}-{minutes}", NOW + timedelta(minutes=minutes), False, marker, 10)


def test_pitr_plan_ignores_later_overwrites_and_delete_markers():
    versions = [_v("r/config", 0), _v("r/config", 90), _v("r/data/p1", 10), _v("r/data/p1", 95, marker=True),
                _v("r/data/old", 5), _v("r/data/old", 20, marker=True), _v("r/data/new", 80)]
    plan = pitr.plan(versions, NOW + timedelta(minutes=60))
    assert [(v.key, v.version_id) for v in plan.chosen] == [("r/config", "r/config-0"),
                                                            ("r/data/p1", "r/data/p1-10")]
    assert plan.deleted_then == 1 and plan.newer_ignored == 3


def test_pitr_recover_copies_into_a_clean_prefix_only(s3):
    # moto wants checksum headers on copies into lock buckets (AWS does not); SeaweedFS covers that case
    s3.put_object(Bucket="plain", Key="repo/config", Body=b"cfg")
    s3.put_object(Bucket="plain", Key="repo/locks/l", Body=b"lock")
    result = pitr.recover(s3, "plain", "repo", "repo-restored", datetime.now(timezone.utc) + timedelta(seconds=1))
    assert result.copied == 1
    assert s3.get_object(Bucket="plain", Key="repo-restored/config")["Body"].read() == b"cfg"
    with pytest.raises(FileExistsError):
        pitr.recover(s3, "plain", "repo", "repo-restored", datetime.now(timezone.utc))
    with pytest.raises(ValueError):
        pitr.recover(s3, "plain", "repo", "repo/inside", datetime.now(timezone.utc))


def test_repository_data_skips_locks_and_deleted(s3):
    s3.put_object(Bucket="plain", Key="repo/locks/x", Body=b"1")
    s3.put_object(Bucket="plain", Key="repo/keys/k", Body=b"1")
    s3.put_object(Bucket="plain", Key="repo/data/d", Body=b"1")
    s3.delete_object(Bucket="plain", Key="repo/data/d")
    assert [v.key for v in repository_data(list_versions(s3, "plain", "repo"), "repo")] == ["repo/keys/k"]
