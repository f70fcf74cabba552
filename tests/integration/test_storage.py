"""Storage immutability on a real SeaweedFS (COMPLIANCE Object Lock) with real restic: audit, delete
canary, identity separation, lock extension, point-in-time recovery after an attack, key escrow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from demo.seaweed import SeaweedFS  # noqa: E402

pytestmark = pytest.mark.integration
BUCKETS = ["worm-ok", "worm-short", "plain-b"]
#: A writer granted `Write:<bucket>` (bucket level) instead of `Write:<bucket>/*`: it may change versioning
#: and lifecycle, which the audit must report as a finding.
WIDE_WRITER = {"wide-writer": [f"{a}:{b}" for b in BUCKETS for a in ("Read", "List", "Write", "Tagging")]}


@pytest.fixture(scope="module")
def sw(tmp_path_factory):
    """Own SeaweedFS: a 42-day COMPLIANCE bucket, a 1-day one, and a versioned bucket without lock."""
    base = tmp_path_factory.mktemp("sw")
    with SeaweedFS(base / "weed", secrets_dir=base / "secrets", buckets=BUCKETS, extra_identities=WIDE_WRITER) as s:
        s.create_locked_bucket("worm-ok", days=42)
        s.create_locked_bucket("worm-short", days=1)
        s.create_plain_bucket("plain-b")
        s.client("admin").put_bucket_versioning(Bucket="plain-b", VersioningConfiguration={"Status": "Enabled"})
        yield s


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tos")
    for sub, n in (("programs", 6), ("exports", 4), ("logs", 3)):
        (root / sub).mkdir()
        for i in range(n):
            (root / sub / f"f{i}.bin").write_bytes(os.urandom(20_000 + i * 997))
    return root


def _dest(sw, bucket: str, path: str, **extra) -> str:
    s = sw.secrets_dir
    lines = ["kind: s3", f"endpoint: {sw.endpoint}", f"bucket: {bucket}", f"path: {path}", "object_lock: true",
             f"credentials_file: {s / 's3-writer.env'}", f"auditor_credentials_file: {s / 's3-auditor.env'}",
             f"maintainer_credentials_file: {s / 's3-maintainer.env'}",
             f"canary_credentials_file: {s / 's3-canary.env'}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "{" + ", ".join(lines) + "}"


class Env:
    """Policy + config for one test; `cli()` runs the real backupd."""

    def __init__(self, sw, data: Path, tmp: Path, dests: dict[str, str]):
        self.sw, self.data, self.tmp, self.dests = sw, data, tmp, dests
        self.password = tmp / "secrets" / "restic-password"
        self.write()

    def write(self) -> None:
        (self.tmp / "policies").mkdir(exist_ok=True)
        names = list(self.dests)
        dests = "\n".join(f"  {n}: {d[:-1]}, password_file: {self.password}}}" for n, d in self.dests.items())
        targets = ""
        for name, cat, extra, sub in (("programs", "system_program", "environment: development", "programs"),
                                      ("exports", "container_data", "rto: 8h", "exports"),
                                      ("logs", "logs", "source: network_device", "logs")):
            targets += (f"  - {{name: {name}, category: {cat}, {extra}, owner: t, frequency: 1d, "
                        f"sources: {{paths: ['{self.data / sub}']}}, retention: {{keep_daily: 7, keep_weekly: 8}}, "
                        f"destinations: {names}}}\n")
        (self.tmp / "policies" / "p.yaml").write_text(
            f"version: 1\nsite: {{name: T, port: other}}\ndestinations:\n{dests}\ntargets:\n{targets}")
        (self.tmp / "backupd.yaml").write_text(
            f"policies: ['{self.tmp / 'policies'}/*.yaml']\nstate_dir: '{self.tmp / 'state'}'\n"
            f"secrets_dir: '{self.tmp / 'secrets'}'\nhost: it-host\nretry_attempts: 1\n")

    def cli(self, *args: str):
        done = subprocess.run([sys.executable, "-m", "backupd", *args, "--config", str(self.tmp / "backupd.yaml")],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                              text=True, timeout=900)
        assert "Traceback" not in done.stderr, done.stderr
        return done


def _env(sw, data, tmp_path, **dests) -> Env:
    env = Env(sw, data, tmp_path, dests)
    assert env.cli("keys", "init").returncode == 0
    return env


def _checks(doc, dest):
    entry = next(r for r in doc["destinations"] if r["destination"] == dest)
    return {c["name"]: c for c in entry["checks"]}, entry


def test_audit_clean_compliance_bucket_and_delete_canary_refused(sw, data, tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "audit-ok"))
    assert env.cli("backup").returncode == 0
    done = env.cli("audit", "storage", "--json")
    assert done.returncode == 0, done.stdout
    checks, entry = _checks(json.loads(done.stdout), "worm")
    # the canary identity may delete versions under .backupd-canary/ (it removed its delete marker), so
    # the refusal on the locked version is Object Lock's, not IAM's
    assert checks["delete_canary"]["ok"] and "Object Lock's" in checks["delete_canary"]["detail"]
    assert checks["lock_mode"]["ok"] and checks["default_retention"]["ok"] and checks["lifecycle"]["ok"]
    assert checks["retention_readback"]["ok"] and entry["objects_read_back"] > 0
    assert checks["writer_lock_config"]["ok"], checks["writer_lock_config"]
    for name in ("writer_versioning", "writer_lifecycle", "writer_bucket_policy"):  # `Write:<bucket>/*`
        assert checks[name]["ok"] and "AccessDenied" in checks[name]["detail"], checks[name]
    state = b"".join(f.read_bytes() for f in (tmp_path / "state").rglob("*") if f.is_file())
    assert b"storage_audit" in state and sw.keys["writer"][1].encode() not in state


def test_audit_finds_missing_lock_and_short_retention(sw, data, tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "audit-mixed"),
               short=_dest(sw, "worm-short", "audit-short"), plain=_dest(sw, "plain-b", "audit-plain"))
    done = env.cli("audit", "storage", "--json")
    assert done.returncode == 1, done.stdout
    doc = json.loads(done.stdout)
    short, entry = _checks(doc, "short")
    assert entry["status"] == "finding" and not short["default_retention"]["ok"]
    plain, entry = _checks(doc, "plain")
    assert entry["status"] == "finding"  # versioned, no lock: the canary identity deletes its version freely
    assert not plain["delete_canary"]["ok"] and "NOT WORM" in plain["delete_canary"]["detail"]
    assert not plain["object_lock"]["ok"]
    assert _checks(doc, "worm")[1]["status"] == "ok"


def test_audit_without_canary_identity_cannot_prove_the_lock(sw, data, tmp_path):
    canary = f", canary_credentials_file: {sw.secrets_dir / 's3-canary.env'}"
    dest = _dest(sw, "worm-ok", "audit-nocanary").replace(canary, "")
    env = _env(sw, data, tmp_path, worm=dest)
    done = env.cli("audit", "storage", "--json")
    assert done.returncode == 1, done.stdout
    checks, entry = _checks(json.loads(done.stdout), "worm")
    assert entry["status"] == "finding" and "cannot prove Object Lock" in checks["delete_canary"]["detail"]


def test_audit_finds_a_bucket_level_writer_grant(sw, data, tmp_path):
    dest = _dest(sw, "worm-ok", "audit-wide").replace("s3-writer.env", "s3-wide-writer.env")
    env = _env(sw, data, tmp_path, worm=dest)
    done = env.cli("audit", "storage", "--json")
    assert done.returncode == 1, done.stdout
    checks, entry = _checks(json.loads(done.stdout), "worm")
    assert checks["delete_canary"]["ok"], checks["delete_canary"]  # the lock itself is fine ...
    for name in ("writer_versioning", "writer_lifecycle"):  # ... but the writer may reconfigure the bucket
        assert not checks[name]["ok"] and checks[name]["severity"] == "error", checks[name]
    assert sw.client("admin").get_bucket_versioning(Bucket="worm-ok")["Status"] == "Enabled"  # probes are no-ops


def test_audit_finds_a_lifecycle_rule_that_expires_backups_early(sw, data, tmp_path):
    admin = sw.client("admin")
    admin.put_bucket_lifecycle_configuration(Bucket="worm-short", LifecycleConfiguration={"Rules": [
        {"ID": "purge", "Status": "Enabled", "Filter": {"Prefix": "audit-lc/"}, "Expiration": {"Days": 7}}]})
    try:
        env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-short", "audit-lc"))
        done = env.cli("audit", "storage", "--json")
    finally:
        admin.delete_bucket_lifecycle(Bucket="worm-short")
    assert done.returncode == 1, done.stdout
    checks, _ = _checks(json.loads(done.stdout), "worm")
    assert not checks["lifecycle"]["ok"] and "rule purge on 'audit-lc/' expires current versions after 7d" \
        in checks["lifecycle"]["detail"]


def test_audit_unreachable_storage_exits_3(sw, data, tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "x").replace(sw.endpoint, "http://127.0.0.1:9"))
    done = env.cli("audit", "storage", "--json")
    assert done.returncode == 3, done.stdout + done.stderr


def test_writer_cannot_delete_versions_or_touch_lock_config_and_auditor_cannot_write(sw):
    writer, auditor = sw.client("writer"), sw.client("auditor")
    put = writer.put_object(Bucket="worm-ok", Key="probe/obj", Body=b"x")
    with pytest.raises(ClientError):
        writer.delete_object(Bucket="worm-ok", Key="probe/obj", VersionId=put["VersionId"])
    with pytest.raises(ClientError):
        writer.put_object_lock_configuration(Bucket="worm-ok", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    with pytest.raises(ClientError):
        writer.put_bucket_versioning(Bucket="worm-ok", VersioningConfiguration={"Status": "Suspended"})
    for call in (lambda: writer.put_bucket_lifecycle_configuration(Bucket="worm-ok", LifecycleConfiguration={
            "Rules": [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}}]}),
                 lambda: writer.delete_bucket_lifecycle(Bucket="worm-ok"),
                 lambda: writer.delete_bucket(Bucket="worm-ok")):
        with pytest.raises(ClientError, match="AccessDenied"):
            call()
    with pytest.raises(ClientError):
        writer.put_object_retention(Bucket="worm-ok", Key="probe/obj", VersionId=put["VersionId"],
                                    Retention={"Mode": "COMPLIANCE",
                                               "RetainUntilDate": datetime.now(timezone.utc) + timedelta(days=1)})
    with pytest.raises(ClientError):
        auditor.put_object(Bucket="worm-ok", Key="probe/auditor", Body=b"x")
    assert sw.client("admin").get_bucket_versioning(Bucket="worm-ok")["Status"] == "Enabled"


def test_extend_locks_with_maintainer_and_not_with_writer(sw, data, tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "extend", lock_extension="60d"))
    assert env.cli("backup").returncode == 0
    done = env.cli("extend-locks", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["extended"] == result["objects"] > 0
    admin = sw.client("admin")
    key = next(o["Key"] for o in admin.list_objects_v2(Bucket="worm-ok", Prefix="extend/data/")["Contents"])
    until = admin.head_object(Bucket="worm-ok", Key=key)["ObjectLockRetainUntilDate"]
    assert until >= datetime.now(timezone.utc) + timedelta(days=59)
    env.dests["worm"] = env.dests["worm"].replace("s3-maintainer.env", "s3-writer.env").replace("60d", "70d")
    env.write()
    refused = env.cli("extend-locks", "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)["results"][0]["failed"]


@pytest.mark.restic
def test_recover_repo_after_writer_credential_attack(sw, data, tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "victim"))
    assert env.cli("backup", "--target", "exports").returncode == 0
    time.sleep(1.5)  # S3 LastModified has one-second resolution: keep the attack strictly after as_of
    as_of = datetime.now(timezone.utc).isoformat()
    time.sleep(1.5)
    writer = sw.client("writer")
    keys = [o["Key"] for p in writer.get_paginator("list_objects_v2").paginate(Bucket="worm-ok", Prefix="victim/")
            for o in p.get("Contents", [])]
    for key in keys:
        if key.endswith("/config") or "/keys/" in key:
            writer.put_object(Bucket="worm-ok", Key=key, Body=b"encrypted by ransomware")
        else:
            writer.delete_object(Bucket="worm-ok", Key=key)
    broken = env.cli("restore", "--target", "exports", "--to", str(tmp_path / "r0"))
    assert broken.returncode != 0
    done = env.cli("recover-repo", "--destination", "worm", "--as-of", as_of, "--to", "victim-recovered", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["check"] == "ok" and result["copied"] >= len(keys) - 1
    env.dests["worm"] = env.dests["worm"].replace("path: victim", "path: victim-recovered")
    env.write()
    restored = env.cli("restore", "--target", "exports", "--to", str(tmp_path / "r1"), "--json")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    for src in (data / "exports").iterdir():
        copy = tmp_path / "r1" / str(src).lstrip("/")
        assert copy.read_bytes() == src.read_bytes()


def _recovery_keypair(tmp: Path) -> tuple[Path, Path]:
    key = X25519PrivateKey.generate()
    priv, pub = tmp / "recovery.key", tmp / "recovery.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@pytest.mark.restic
def test_keys_escrow_recover_and_rotate(sw, data, tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "keys"))
    assert oct(env.password.stat().st_mode & 0o777) == "0o600"
    assert env.cli("backup", "--target", "logs").returncode == 0
    priv, pub = _recovery_keypair(tmp_path)
    esc = env.cli("keys", "escrow", "--recovery-public-key", str(pub), "--json")
    assert esc.returncode == 0, esc.stdout + esc.stderr
    assert json.loads(esc.stdout)["results"][0]["mirrored"] is True
    secret = env.password.read_text().strip()
    assert secret not in (tmp_path / "state" / "escrow" / "worm.json").read_text()
    (tmp_path / "state" / "escrow" / "worm.json").unlink()  # the host is lost: the bucket copy must do
    rec = env.cli("keys", "recover", "--private-key", str(priv), "--out", str(tmp_path / "out"), "--json")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert json.loads(rec.stdout)["results"][0]["source"].startswith("bucket version")
    assert json.loads(rec.stdout)["results"][0]["opens"] is True
    assert (tmp_path / "out" / "worm.password").read_text().strip() == secret
    rot = env.cli("keys", "rotate", "--json")
    assert rot.returncode == 0, rot.stdout + rot.stderr
    assert env.password.read_text().strip() != secret
    assert env.cli("restore", "--target", "logs", "--to", str(tmp_path / "r")).returncode == 0
    stale = env.cli("keys", "recover", "--private-key", str(priv), "--json")  # escrow still holds the old key
    assert stale.returncode == 1 and json.loads(stale.stdout)["results"][0]["opens"] is False


def test_keys_recover_gets_past_a_garbage_version_and_a_delete_marker_the_writer_put_on_the_escrow(sw, data,
                                                                                                  tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "keys-poisoned"))
    assert env.cli("backup", "--target", "logs").returncode == 0
    priv, pub = _recovery_keypair(tmp_path)
    writer, key = sw.client("writer"), "keys-poisoned/.backupd-escrow/worm.json"
    # planted before the escrow (so older, and locked by the bucket's default like the real one) ...
    writer.put_object(Bucket="worm-ok", Key=key, Body=b'{"format": "garbage"}')
    writer.put_object(Bucket="worm-ok", Key=key, Body=b"\x00" * 100)
    assert env.cli("keys", "escrow", "--recovery-public-key", str(pub)).returncode == 0
    secret = env.password.read_text().strip()
    (tmp_path / "state" / "escrow" / "worm.json").unlink()  # the host is lost
    writer.put_object(Bucket="worm-ok", Key=key, Body=b"{}")  # ... and after it, with a delete marker on top
    writer.delete_object(Bucket="worm-ok", Key=key)
    rec = env.cli("keys", "recover", "--private-key", str(priv), "--out", str(tmp_path / "out"), "--json")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    result = json.loads(rec.stdout)["results"][0]
    assert result["opens"] is True and result["source"].endswith("(locked)")
    assert (tmp_path / "out" / "worm.password").read_text().strip() == secret
    unusable = " ".join(result["unusable"])
    assert "delete marker" in unusable and "not JSON" in unusable and "unknown escrow format" in unusable


def test_bad_input_is_a_clear_usage_error(sw, data, tmp_path):
    env = _env(sw, data, tmp_path, worm=_dest(sw, "worm-ok", "badinput"))
    for args in (("recover-repo", "--destination", "worm", "--as-of", "last tuesday", "--to", "x"),
                 ("recover-repo", "--destination", "nope", "--as-of", "2026-01-01", "--to", "x"),
                 ("recover-repo", "--destination", "worm", "--as-of", "2026-01-01", "--to", "badinput/inner"),
                 ("keys", "recover", "--private-key", str(data / "logs" / "f0.bin")),
                 ("keys", "escrow", "--recovery-public-key", str(tmp_path / "missing.pub"))):
        done = env.cli(*args, "--json")
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert json.loads(done.stdout)["error"]
