"""`backupd init` (files, modes, refusals) and `backupd storage init` (moto: new bucket, existing ones)."""

import stat
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from backupd.storage import bucket_setup, freeze, lockconfig
from tests.unit.cli_helper import cli

TWELVE_WEEKS = timedelta(weeks=12)


@pytest.fixture
def admin_keys(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "admin.env"
    path.write_text("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
    with mock_aws():
        yield path, boto3.client("s3", region_name="us-east-1", aws_access_key_id="testing",
                                 aws_secret_access_key="testing")


def _init(tmp_path, *extra):
    return cli("init", "--site", "Test Terminal", "--port", "nagoya", "--host", "tos-9",
               "--endpoint", "https://s3.amazonaws.com", "--bucket", "backupd-site",
               "--state-dir", str(tmp_path / "state"), "--secrets-dir", str(tmp_path / "secrets"),
               "--config-dir", str(tmp_path / "etc"), "--yes", *extra)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_config_policy_and_a_private_password_then_refuses_to_overwrite(tmp_path):
    keys = tmp_path / "keys.env"
    keys.write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
    code, doc = _init(tmp_path, "--writer-credentials", str(keys), "--canary-credentials", str(keys))
    assert code == 0, doc
    assert doc["lint"] == [] and doc["keys"][0]["created"]
    policy = (tmp_path / "etc/policies/tos-9.yaml").read_text()
    assert "name: Test Terminal" in policy and "bucket: backupd-site" in policy and "port: nagoya" in policy
    assert "# The isolated copy (guideline M2)" in policy  # the shipped comments stay
    assert (tmp_path / "etc/restore_tests/tos-db.yaml").is_file()
    password = tmp_path / "secrets/restic-password"
    assert _mode(password) == 0o600 and _mode(tmp_path / "secrets/s3-writer.env") == 0o600
    assert _mode(tmp_path / "secrets") == 0o700 and _mode(tmp_path / "etc/backupd.yaml") == 0o644
    before = password.read_bytes(), policy
    code, doc = _init(tmp_path)
    assert code == 2 and "refusing to overwrite" in doc["error"] and "backupd.yaml" in doc["error"]
    assert (password.read_bytes(), (tmp_path / "etc/policies/tos-9.yaml").read_text()) == before


def test_init_without_s3_keys_lints_with_findings_and_names_the_next_step(tmp_path):
    code, doc = _init(tmp_path)
    assert code == 1 and any("s3-writer.env" in f for f in doc["lint"])
    assert any("s3-writer.env, s3-canary.env, s3-auditor.env" in step for step in doc["next"])
    assert any("s3-maintainer.env" in step and "maintenance-secrets" in step for step in doc["next"])


def test_init_refuses_a_bad_answer_before_writing_anything(tmp_path):
    code, doc = cli("init", "--site", "T", "--port", "tokyo", "--endpoint", "https://s3.amazonaws.com",
                    "--bucket", "backupd-site", "--config-dir", str(tmp_path / "etc"), "--yes")
    assert code == 2 and "--port" in doc["error"]
    assert not (tmp_path / "etc").exists()


def test_the_reclaim_rule_is_one_the_audit_accepts_and_never_shorter_than_min_history():
    for required in (timedelta(weeks=6), timedelta(hours=1000), TWELVE_WEEKS):
        rule = bucket_setup.reclaim_rule(required)
        assert lockconfig.lifecycle_check([rule], ["restic", freeze.PREFIX], required).ok
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] * timedelta(days=1) >= required
        assert "Expiration" not in rule  # current versions never expire


def test_storage_init_creates_a_worm_bucket_from_the_config(tmp_path, admin_keys):
    path, s3 = admin_keys
    assert _init(tmp_path)[0] == 1  # no S3 keys yet: lint findings, files written
    code, doc = cli("storage", "init", "--admin-credentials", str(path),
                    "--config", str(tmp_path / "etc/backupd.yaml"))
    assert code == 0, doc
    (result,) = doc["destinations"]
    assert result["status"] == "created" and result["bucket"] == "backupd-site"
    assert s3.get_bucket_versioning(Bucket="backupd-site")["Status"] == "Enabled"
    config = lockconfig.read_lock_config(s3, "backupd-site")
    assert lockconfig.default_retention(config) == ("COMPLIANCE", TWELVE_WEEKS)  # the policy's 12w logs
    assert not [c for c in lockconfig.lock_checks(config, None, False, TWELVE_WEEKS) if not c.ok]
    rules = lockconfig.read_lifecycle(s3, "backupd-site")
    assert lockconfig.lifecycle_check(rules, ["restic", freeze.PREFIX], TWELVE_WEEKS).ok
    iam = result["identity_policies"]["aws_iam"]
    assert set(iam) == {"writer", "maintainer", "auditor", "canary", "verifier"}
    assert "arn:aws:s3:::backupd-site/restic/*" in str(iam["writer"]) and "@BUCKET@" not in str(iam)
    writer = next(i for i in result["identity_policies"]["seaweedfs"]["identities"] if i["name"] == "writer-tos-9")
    assert {"Write:backupd-site/restic/*", "Write:backupd-site/evidence/tos-9/*"} <= set(writer["actions"])
    assert not [a for a in writer["actions"] if a.startswith("Write:") and a.endswith("backupd-site/*")]
    assert "arn:aws:s3:::backupd-site/evidence/tos-9/*" in str(iam["writer"])
    assert result["unfilled"] == ["@VERIFIER_HOST@"]  # no --verifier-host


def test_storage_init_reports_an_existing_bucket_without_object_lock_and_leaves_it(admin_keys):
    path, s3 = admin_keys
    s3.create_bucket(Bucket="plain-bucket")
    code, doc = cli("storage", "init", "--admin-credentials", str(path), "--bucket", "plain-bucket")
    assert code == 1
    (result,) = doc["destinations"]
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["ok"]}
    assert result["status"] == "finding" and "object_lock" in failed and "versioning" in failed
    assert "never changes an existing bucket" in result["note"]
    assert lockconfig.read_lock_config(s3, "plain-bucket") is None
    assert s3.get_bucket_versioning(Bucket="plain-bucket").get("Status") is None
    assert lockconfig.read_lifecycle(s3, "plain-bucket") == []


def test_storage_init_leaves_an_existing_worm_bucket_and_reports_a_short_one(admin_keys):
    path, s3 = admin_keys
    args = ("storage", "init", "--admin-credentials", str(path), "--bucket", "worm-bucket")
    assert cli(*args, "--retention", "6w")[1]["destinations"][0]["status"] == "created"
    code, doc = cli(*args, "--retention", "6w")
    assert code == 0 and doc["destinations"][0]["status"] == "exists"
    code, doc = cli(*args, "--retention", "12w")
    failed = [c["name"] for c in doc["destinations"][0]["checks"] if not c["ok"]]
    assert code == 1 and "default_retention" in failed and "lifecycle" in failed
    assert lockconfig.read_lock_config(s3, "worm-bucket")["Rule"]["DefaultRetention"]["Days"] == 42


def test_init_asks_for_what_the_flags_do_not_give(tmp_path):
    from click.testing import CliRunner

    from backupd.cli import main

    answers = "\n".join(["Prompted Terminal", "kobe", "tos-p", "https://s3.amazonaws.com", "backupd-site", "", "y"])
    result = CliRunner().invoke(main, ["init", "--config-dir", str(tmp_path / "etc"), "--state-dir",
                                       str(tmp_path / "state"), "--secrets-dir", str(tmp_path / "secrets")],
                                input=answers + "\n")
    assert "Traceback" not in result.output, result.output
    policy = (tmp_path / "etc/policies/tos-p.yaml").read_text()
    assert "name: Prompted Terminal" in policy and "port: kobe" in policy and "region: us-east-1" in policy
    assert "next steps:" in result.output


def test_init_with_yes_and_no_bucket_is_a_usage_error(tmp_path):
    code, doc = cli("init", "--site", "T", "--endpoint", "https://s3.amazonaws.com",
                    "--config-dir", str(tmp_path / "etc"), "--yes")
    assert code == 2 and "--bucket is required with --yes" in doc["error"]
    assert not (tmp_path / "etc").exists()


def test_storage_init_refuses_a_retention_shorter_than_three_weeks(admin_keys):
    path, s3 = admin_keys
    code, doc = cli("storage", "init", "--admin-credentials", str(path), "--bucket", "short-bucket", "--retention", "2w")
    assert code == 2 and "shorter than 3w" in doc["error"]
    assert "short-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
