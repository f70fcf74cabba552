"""Delete canary verdicts (lock refusal vs IAM refusal vs unsupported), writer probes and lifecycle rules,
against moto with thin wrappers that play a fake-WORM server (no IAM in moto: see integration tests)."""

from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from backupd.storage import canary, lockconfig

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


def _error(code: str, status: int, message: str = "Access Denied") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "DeleteObject")


class FakeWorm:
    """A server that echoes lock headers it does not enforce, and refuses every version delete with `error`
    (an IAM deny, or NotImplemented): what a canary run with the writer's keys could not tell from a lock."""

    def __init__(self, real, error: ClientError):
        self.real, self.error = real, error

    def __getattr__(self, name):
        return getattr(self.real, name)

    def head_object(self, **kw):
        head = self.real.head_object(**kw)
        return {**head, "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate":
                head["LastModified"] + timedelta(days=60)}

    def delete_object(self, **kw):
        if "VersionId" in kw:
            raise self.error
        return self.real.delete_object(**kw)


def test_an_iam_refusal_on_a_fake_worm_server_is_a_finding(s3):
    check, observed = canary.delete_canary(FakeWorm(s3, _error("AccessDenied", 403)), "plain", "c/1")
    assert observed["mode"] == "COMPLIANCE"  # the server claims a lock ...
    assert not check.ok and check.severity == "error" and "IAM refusal" in check.detail  # ... and proves none


@pytest.mark.parametrize("code,status", [("NotImplemented", 501), ("MethodNotAllowed", 405)])
def test_an_unsupported_version_delete_is_a_finding(s3, code, status):
    check, _ = canary.delete_canary(FakeWorm(s3, _error(code, status, "not here")), "plain", "c/2")
    assert not check.ok and check.severity == "error" and code in check.detail


def test_a_refusal_on_a_version_without_a_lock_is_a_finding(s3):
    class DenyData(FakeWorm):
        """Refuses deleting the data version only (not the delete marker), and claims no lock on re-read."""

        data = None

        def put_object(self, **kw):
            self.data = self.real.put_object(**kw)["VersionId"]
            return {"VersionId": self.data}

        def head_object(self, **kw):
            return self.real.head_object(**kw)

        def delete_object(self, **kw):
            if kw.get("VersionId") == self.data:
                raise self.error
            return self.real.delete_object(**kw)

    check, _ = canary.delete_canary(DenyData(s3, _error("AccessDenied", 403)), "plain", "c/3")
    assert not check.ok and "carries no lock" in check.detail


def test_a_real_lock_refusal_passes_and_names_the_control(s3):
    check, _ = canary.delete_canary(s3, "locked", canary.canary_key("h1"))
    assert check.ok and "delete marker" in check.detail
    assert canary.canary_key("h1").startswith(".backupd-canary/h1/")
    versions = s3.list_object_versions(Bucket="locked", Prefix=".backupd-canary/")
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1  # locked version hidden


class AllowAll:
    """The writer may do everything (moto has no IAM)."""

    def __init__(self, real):
        self.real = real
        self.calls = []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.real, name)


def test_a_writer_that_may_change_versioning_lifecycle_or_policy_is_a_finding(s3):
    s3.put_bucket_lifecycle_configuration(Bucket="locked", LifecycleConfiguration={"Rules": [
        {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]})
    writer = AllowAll(s3)
    checks = {c.name: c for c in canary.writer_probes(writer, s3, "locked", lockconfig.read_lock_config(s3, "locked"))}
    for name in ("writer_lock_config", "writer_versioning", "writer_lifecycle", "writer_bucket_policy"):
        assert not checks[name].ok and checks[name].severity == "error", checks[name]
    assert "put_bucket_lifecycle_configuration" in writer.calls  # the existing rules were put back ...
    assert s3.get_bucket_lifecycle_configuration(Bucket="locked")["Rules"][0]["ID"] == "mpu"  # ... unchanged


def test_writer_probes_never_delete_what_the_reader_cannot_see(s3):
    class Blind:
        def __getattr__(self, name):
            def refuse(**kw):
                raise _error("AccessDenied", 403)
            return refuse

    writer = AllowAll(s3)
    checks = {c.name: c for c in canary.writer_probes(writer, Blind(), "locked", None)}
    assert checks["writer_lifecycle"].severity == "warning" and "cannot probe" in checks["writer_lifecycle"].detail
    assert "delete_bucket_lifecycle" not in writer.calls and "delete_bucket_policy" not in writer.calls


@pytest.mark.parametrize("rule,finding", [
    ({"Expiration": {"Days": 7}}, True),
    ({"NoncurrentVersionExpiration": {"NoncurrentDays": 30}}, True),
    ({"Expiration": {"Date": "2030-01-01T00:00:00Z"}}, True),
    ({"NoncurrentVersionExpiration": {"NoncurrentDays": 60}}, False),
    ({"Expiration": {"ExpiredObjectDeleteMarker": True}}, False),
    ({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}, False),
])
def test_lifecycle_rules_that_expire_versions_before_min_history_are_findings(rule, finding):
    rules = [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "restic/"}, **rule}]
    check = lockconfig.lifecycle_check(rules, ["restic", ".backupd-incident/"], SIX_WEEKS)
    assert check.ok is not finding and (check.severity == "error") is finding, check.detail


def test_lifecycle_rules_elsewhere_or_disabled_do_not_count():
    rules = [{"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "restic-scratch/"}, "Expiration": {"Days": 1}},
             {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}},
             {"ID": "all", "Status": "Enabled", "Filter": {"And": {"Prefix": "", "Tags": []}},
              "NoncurrentVersionExpiration": {"NoncurrentDays": 90}}]
    assert lockconfig.lifecycle_check(rules, ["restic"], SIX_WEEKS).ok
    everything = [{"ID": "x", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]
    assert not lockconfig.lifecycle_check(everything, ["restic"], SIX_WEEKS).ok
    unreadable = lockconfig.lifecycle_check("denied", ["restic"], SIX_WEEKS)
    assert not unreadable.ok and unreadable.severity == "warning"


def test_read_lifecycle_distinguishes_none_from_denied(s3):
    assert lockconfig.read_lifecycle(s3, "plain") == []
    s3.put_bucket_lifecycle_configuration(Bucket="plain", LifecycleConfiguration={"Rules": [
        {"ID": "n", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 3}}]})
    rules = lockconfig.read_lifecycle(s3, "plain")
    assert not lockconfig.lifecycle_check(rules, ["restic"], SIX_WEEKS).ok


@pytest.mark.parametrize("noncurrent_days,ok", [(42 + 42, True), (42, True), (41, False)])
def test_a_reclaim_rule_set_by_the_admin_passes_the_audit_only_from_min_history_on(s3, noncurrent_days, ok):
    """The operator guide's reclaim rule (min_history + lock period, here 6w + 42d) and the audited floor
    (min_history): set on the locked bucket with the admin's keys, read back as the audit reads it."""
    s3.put_bucket_lifecycle_configuration(Bucket="locked", LifecycleConfiguration={"Rules": [
        {"ID": "reclaim", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days}}]})
    check = lockconfig.lifecycle_check(lockconfig.read_lifecycle(s3, "locked"), ["restic", ".backupd-incident/"],
                                       SIX_WEEKS)
    assert check.ok is ok, check.detail
    assert ok or "deletes noncurrent versions after 41d" in check.detail


def test_the_audit_reports_a_missing_or_refused_canary_identity_and_goes_on(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from backupd.actions import audit

    cfg = SimpleNamespace(host="h1")
    check, observed = audit._canary(cfg, SimpleNamespace(canary_credentials_file=None, bucket="b"))
    assert not check.ok and check.severity == "error" and "cannot prove Object Lock" in check.detail
    assert observed is None

    class Refusing:
        def put_object(self, **kw):
            raise _error("AccessDenied", 403)

    monkeypatch.setattr(audit, "s3_client", lambda dest, keys=None: Refusing())
    check, _ = audit._canary(cfg, SimpleNamespace(canary_credentials_file=tmp_path / "k", bucket="b"))
    assert not check.ok and "canary identity was refused (AccessDenied)" in check.detail
