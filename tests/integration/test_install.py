"""Installing on a fresh site against the real SeaweedFS: `storage init` makes a new WORM bucket with the admin
keys, `init` by flags writes a site pointing at it, then lint, backup, drill and audit succeed; a bucket made
without Object Lock is reported by `storage init` and refused by the audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.stack import SPARE_BUCKETS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _run(stack, *args: str) -> tuple[int, dict]:
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT)}
    env.pop("BACKUPD_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "backupd", *args, "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def _init(stack, site: Path, bucket: str, *extra: str) -> tuple[int, dict]:
    keys = stack.secrets_dir
    return _run(stack, "init", "--site", "Install Test Terminal", "--port", "nagoya", "--host", "tos-install",
                "--endpoint", stack.seaweed.endpoint, "--bucket", bucket, "--state-dir", str(site / "state"),
                "--secrets-dir", str(site / "secrets"), "--config-dir", str(site / "etc"),
                "--writer-credentials", str(keys / "s3-writer.env"),
                "--canary-credentials", str(keys / "s3-canary.env"),
                "--auditor-credentials", str(keys / "s3-auditor.env"), "--yes", *extra)


def _storage_init(stack, bucket: str) -> tuple[int, dict]:
    return _run(stack, "storage", "init", "--admin-credentials", str(stack.secrets_dir / "s3-admin.env"),
                "--bucket", bucket, "--endpoint", stack.seaweed.endpoint, "--retention", "12w")


def test_a_new_site_from_storage_init_and_init_backs_up_drills_and_audits_clean(stack, tmp_path):
    bucket = SPARE_BUCKETS[0]
    code, doc = _storage_init(stack, bucket)
    assert code == 0, doc
    assert doc["destinations"][0]["status"] == "created"
    subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", str(tmp_path / "rec.key")], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "rec.key"), "-pubout", "-out",
                    str(tmp_path / "rec.pub")], check=True)
    site = tmp_path / "site"
    code, doc = _init(stack, site, bucket, "--recovery-public-key", str(tmp_path / "rec.pub"))
    assert code == 0, doc
    assert doc["lint"] == [] and [e["status"] for e in doc["escrow"]] == ["ok"] and doc["escrow"][0]["mirrored"]
    conf = str(site / "etc/backupd.yaml")
    code, doc = _run(stack, "policy", "lint", "--config", conf)
    assert code == 0, doc
    code, doc = _run(stack, "backup", "--config", conf)
    assert code == 0, doc
    code, doc = _run(stack, "drill", "--target", "tos-programs-production", "--config", conf)
    assert code == 0, doc
    code, doc = _run(stack, "audit", "storage", "--config", conf)
    assert code == 0, doc
    checks = {c["name"]: c for c in doc["destinations"][0]["checks"]}
    assert checks["lifecycle"]["ok"] and "1 rule(s)" in checks["lifecycle"]["detail"]
    assert checks["delete_canary"]["ok"] and checks["default_retention"]["ok"]
    code, doc = _storage_init(stack, bucket)  # a second run changes nothing
    assert code == 0 and doc["destinations"][0]["status"] == "exists"


def test_a_bucket_made_without_object_lock_is_reported_and_refused_by_the_audit(stack, tmp_path):
    bucket = SPARE_BUCKETS[1]
    stack.seaweed.create_plain_bucket(bucket)
    code, doc = _storage_init(stack, bucket)
    assert code == 1
    failed = {c["name"]: c["detail"] for c in doc["destinations"][0]["checks"] if not c["ok"]}
    assert "Object Lock is not enabled" in failed["object_lock"], failed
    admin = stack.seaweed.client("admin")
    assert "Status" not in admin.get_bucket_versioning(Bucket=bucket)  # left as it was
    site = tmp_path / "site"
    code, doc = _init(stack, site, bucket)
    assert code == 0, doc
    code, doc = _run(stack, "audit", "storage", "--config", str(site / "etc/backupd.yaml"))
    assert code == 1, doc
    failed = {c["name"]: c["detail"] for c in doc["destinations"][0]["checks"] if not c["ok"]}
    # the writer's keys may not read the lock configuration of this bucket: the canary readback proves it absent
    assert "Object Lock is not" in failed["object_lock"] and "versioning" in failed, failed
